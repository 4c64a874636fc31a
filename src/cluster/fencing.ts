/**
 * The check a write path makes before it commits (docs/scale-out.md, "Fencing"): the fence holds
 * the epoch of the lease the node had when it started writing a stream, and refuses once that
 * lease is gone. Two strengths:
 *   - assertCurrent() (every commit, no I/O): this node still holds that epoch and its last renew
 *     was sent less than the TTL ago, on the monotonic clock. A process frozen past its TTL (GC
 *     pause, SIGSTOP, a VM stall) fails here on resume, before any timer of its own has run,
 *     because the clock kept going; other nodes take over only `skewMs` after that moment.
 *   - assertCurrentInKv() (one KV read): the same, and KV still names this node and epoch as the
 *     owner: the newest word, for a commit that must not depend on clocks at all.
 * A refused write is STREAM_UNAVAILABLE naming the stream, the epoch and why.
 */
import { VigilError } from '../../common/errors.js';
import type { LeaseManager } from './leases.js';

export class EpochFence {
  constructor(
    private readonly leases: LeaseManager,
    readonly streamId: string,
    readonly epoch: number,
  ) {}

  /** Whether a write may commit now (the cheap check). */
  get current(): boolean {
    return this.leases.refusal(this.streamId, this.epoch) === null;
  }

  /** Throws STREAM_UNAVAILABLE unless this node still holds the lease at this epoch, renewed within its TTL. */
  assertCurrent(): void {
    const why = this.leases.refusal(this.streamId, this.epoch);
    if (why !== null) throw this.refused(why);
  }

  /** assertCurrent(), then the lease as KV has it now must still be this node's at this epoch. */
  async assertCurrentInKv(): Promise<void> {
    this.assertCurrent();
    const state = await this.leases.read(this.streamId);
    if (!state) throw this.refused('its lease is gone from KV');
    if (state.value.owner !== this.leases.nodeId || state.value.epoch !== this.epoch) {
      throw this.refused(`KV gives it to ${state.value.owner ?? 'nobody'} at epoch ${state.value.epoch}`);
    }
    // The read took time: the lease must still be live after it.
    this.assertCurrent();
  }

  private refused(why: string): VigilError {
    return new VigilError('STREAM_UNAVAILABLE', `stream '${this.streamId}': this node (${this.leases.nodeId}) may no longer write it under epoch ${this.epoch}: ${why}`);
  }
}
