/**
 * Stream ownership as leases (docs/scale-out.md, "Leases"): one key per stream, `stream.<id>` in
 * the leases bucket, holding `{owner, epoch, expiresAt}`. Every change is a compare-and-set on the
 * entry's revision, so of two nodes racing for a lease exactly one wins:
 *   - a free lease (no entry, released, or expired for longer than `skewMs`) is taken with
 *     create() or update(key, value, revision), with epoch + 1: every new tenure has a higher epoch;
 *   - the owner renews it every `renewMs` with update(key, value, revision), epoch unchanged;
 *   - a renew that fails its compare-and-set (the lease moved) or a lease whose TTL ran out before a
 *     renew landed (NATS out of reach, the process stalled) is lost: `lost` is emitted at once, so
 *     the caller stops ingest. Its write path is fenced from that moment (fencing.ts).
 *
 * Time: the owner counts its lease from when it SENT the renew, on the monotonic clock, so it stops
 * itself no later than the wall-clock `expiresAt` it wrote; other nodes wait `skewMs` more than
 * that (by their own clock) before taking over. So clocks may disagree by up to `skewMs` (which
 * also covers a commit that passed the fence just before the end) without two owners at once.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { KV } from 'nats';
import { z } from 'zod';
import { VigilError } from '../../common/errors.js';
import { decodeJson, encodeJson, isRevisionConflict } from './buckets.js';
import { EpochFence } from './fencing.js';

export const DEFAULT_LEASE_TTL_MS = 5000;
export const DEFAULT_SKEW_MS = 1000;

const valueSchema = z.object({
  /** null once released. */
  owner: z.string().nullable(),
  epoch: z.number().int().min(0),
  /** Epoch ms (the owner's clock) after which the lease is free (plus the skew grace). */
  expiresAt: z.number(),
});
export type LeaseValue = z.infer<typeof valueSchema>;
/** For readers that hold no lease (clusterAdmin.ts). */

export interface LeaseState {
  value: LeaseValue;
  revision: number;
}

export interface HeldLease {
  streamId: string;
  epoch: number;
  /** The KV revision of our last write: the next renew's compare-and-set. */
  revision: number;
  /** Wall-clock expiry we last wrote (what other nodes see). */
  expiresAt: number;
}

export type LeaseEvent =
  | { kind: 'acquired'; streamId: string; epoch: number; previousOwner: string | null }
  /** taken: the lease moved to `owner` (epoch `ownerEpoch`); expired: no renew landed within the TTL. */
  | { kind: 'lost'; streamId: string; epoch: number; reason: 'taken' | 'expired'; owner?: string | null; ownerEpoch?: number };

export interface LeaseOptions {
  nodeId: string;
  /** Lease length, ms. Default 5000. */
  ttlMs?: number;
  /** Renew period, ms. Default a third of the TTL (two renews may fail before the lease runs out). */
  renewMs?: number;
  /** Extra wait before an expired lease may be taken (clock skew between nodes, a commit in flight), ms. Default 1000. */
  skewMs?: number;
  log?: (line: string) => void;
}

interface Held extends HeldLease {
  /** performance.now() after which this node must not write under this lease. */
  deadline: number;
  expiry: NodeJS.Timeout | null;
  renewing: boolean;
}

/** A stream's lease as KV has it now, or null when it never had one; STORE_CORRUPT for a value that is not a lease. */
export async function readLease(kv: KV, streamId: string): Promise<LeaseState | null> {
  const entry = await kv.get(leaseKey(streamId));
  if (!entry || entry.operation !== 'PUT') return null;
  const parsed = valueSchema.safeParse(decodeJson(entry.value));
  if (!parsed.success) throw new VigilError('STORE_CORRUPT', `the lease of stream '${streamId}' in KV is not a lease value (revision ${entry.revision})`);
  return { value: parsed.data, revision: entry.revision };
}

/** Whether a lease may be taken now: released, or expired `skewMs` ago by this clock. */
export function leaseIsFree(value: LeaseValue, skewMs: number, now = Date.now()): boolean {
  return value.owner === null || now > value.expiresAt + skewMs;
}

export function leaseKey(streamId: string): string {
  return `stream.${streamId}`;
}

/** This node's leases; the parent closes it (which releases them). */
export class LeaseManager {
  readonly nodeId: string;
  readonly ttlMs: number;
  readonly skewMs: number;
  private readonly renewMs: number;
  private readonly held = new Map<string, Held>();
  private readonly events = new EventEmitter();
  private readonly timer: NodeJS.Timeout;
  private frozen = false;
  private closed = false;
  private failing = false;

  constructor(
    private readonly kv: KV,
    private readonly options: LeaseOptions,
  ) {
    this.nodeId = options.nodeId;
    this.ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.skewMs = options.skewMs ?? DEFAULT_SKEW_MS;
    this.renewMs = options.renewMs ?? Math.max(50, Math.floor(this.ttlMs / 3));
    if (!(this.renewMs < this.ttlMs)) throw new VigilError('BAD_CONFIG', `the lease renew period (${this.renewMs} ms) must be shorter than its TTL (${this.ttlMs} ms)`);
    this.timer = setInterval(() => this.renewAll(), this.renewMs);
  }

  /** Lease events as they happen. Returns the function that stops listening. */
  on(listener: (event: LeaseEvent) => void): () => void {
    this.events.on('lease', listener);
    return () => this.events.off('lease', listener);
  }

  /** The lease as KV has it now, or null when the stream never had one. STORE_CORRUPT for a value that is not a lease. */
  read(streamId: string): Promise<LeaseState | null> {
    return readLease(this.kv, streamId);
  }

  /** Whether a lease as read from KV may be taken now (by this node's clock). */
  isFree(value: LeaseValue, now = Date.now()): boolean {
    return leaseIsFree(value, this.skewMs, now);
  }

  /**
   * Takes the stream's lease when it is free (epoch + 1), or returns the one this node holds.
   * null when another node holds it, or won the race for it.
   */
  async acquire(streamId: string): Promise<HeldLease | null> {
    this.assertOpen();
    const mine = this.held.get(streamId);
    if (mine && performance.now() < mine.deadline) return publicLease(mine);
    const state = await this.read(streamId);
    if (state && !this.isFree(state.value)) return null;
    const epoch = (state?.value.epoch ?? 0) + 1;
    const sentAt = performance.now();
    const value: LeaseValue = { owner: this.nodeId, epoch, expiresAt: Date.now() + this.ttlMs };
    let revision: number;
    try {
      revision = state ? await this.kv.update(leaseKey(streamId), encodeJson(value), state.revision) : await this.kv.create(leaseKey(streamId), encodeJson(value));
    } catch (error) {
      if (isRevisionConflict(error)) return null;
      throw error;
    }
    if (this.closed) return null;
    const held: Held = { streamId, epoch, revision, expiresAt: value.expiresAt, deadline: sentAt + this.ttlMs, expiry: null, renewing: false };
    this.held.set(streamId, held);
    this.armExpiry(held);
    this.emit({ kind: 'acquired', streamId, epoch, previousOwner: state?.value.owner ?? null });
    return publicLease(held);
  }

  /** The lease this node holds on the stream, while its TTL has not run out. */
  holding(streamId: string): HeldLease | undefined {
    const held = this.held.get(streamId);
    return held && performance.now() < held.deadline ? publicLease(held) : undefined;
  }

  /** Streams whose leases this node holds now. */
  heldStreams(): string[] {
    return [...this.held.values()].filter((h) => performance.now() < h.deadline).map((h) => h.streamId);
  }

  /** Why this node may not write to the stream under `epoch` now, or null when it may (the fence's cheap check). */
  refusal(streamId: string, epoch: number): string | null {
    const held = this.held.get(streamId);
    if (!held) return 'this node does not hold its lease';
    if (held.epoch !== epoch) return `this node holds epoch ${held.epoch}, not ${epoch}`;
    if (performance.now() >= held.deadline) return `its lease ran out ${Math.round(performance.now() - held.deadline)} ms ago without a renew`;
    return null;
  }

  /** The fence for the write path of a stream this node holds (BAD_INPUT-free: INTERNAL when it holds none). */
  fence(streamId: string): EpochFence {
    const held = this.holding(streamId);
    if (!held) throw new VigilError('STREAM_UNAVAILABLE', `stream '${streamId}': this node does not own it`);
    return new EpochFence(this, streamId, held.epoch);
  }

  /** Gives the lease up now (others may take it at once). Nothing when this node does not hold it. */
  async release(streamId: string): Promise<void> {
    const held = this.held.get(streamId);
    if (!held) return;
    this.drop(held);
    const value: LeaseValue = { owner: null, epoch: held.epoch, expiresAt: 0 };
    try {
      await this.kv.update(leaseKey(streamId), encodeJson(value), held.revision);
    } catch (error) {
      // Moved already, or NATS unreachable: either way it ends by its TTL.
      this.log(`leases: could not release ${streamId} (${(error as Error).message}); it expires by itself`);
    }
  }

  /**
   * Test hook: a frozen process. While frozen, nothing is renewed and no expiry timer fires (as
   * under SIGSTOP); the fence still compares with the clock, which a frozen process cannot stop.
   */
  freezeForTest(frozen: boolean): void {
    this.frozen = frozen;
    for (const held of this.held.values()) {
      if (frozen && held.expiry) clearTimeout(held.expiry);
      if (frozen) held.expiry = null;
      else this.armExpiry(held);
    }
  }

  /** Stops renewing and releases every lease held (best effort). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const streamId of [...this.held.keys()]) await this.release(streamId);
    this.events.removeAllListeners();
  }

  private renewAll(): void {
    if (this.frozen || this.closed) return;
    for (const held of this.held.values()) {
      if (held.renewing) continue;
      if (performance.now() >= held.deadline) {
        this.lose(held, 'expired');
        continue;
      }
      held.renewing = true;
      this.renew(held).then(
        () => (held.renewing = false),
        (error: unknown) => {
          held.renewing = false;
          this.log(`leases: renewing ${held.streamId} failed: ${(error as Error).message}`);
        },
      );
    }
  }

  private async renew(held: Held): Promise<void> {
    const sentAt = performance.now();
    const value: LeaseValue = { owner: this.nodeId, epoch: held.epoch, expiresAt: Date.now() + this.ttlMs };
    try {
      const revision = await this.kv.update(leaseKey(held.streamId), encodeJson(value), held.revision);
      if (this.held.get(held.streamId) !== held) return;
      if (this.failing) this.log('leases: renewals go through again');
      this.failing = false;
      held.revision = revision;
      held.expiresAt = value.expiresAt;
      held.deadline = sentAt + this.ttlMs;
      this.armExpiry(held);
    } catch (error) {
      if (this.held.get(held.streamId) !== held) return;
      if (!isRevisionConflict(error)) {
        // NATS out of reach or slow: keep trying; the expiry timer ends the lease if none lands in time.
        if (!this.failing) this.log(`leases: renewing ${held.streamId} failed (${(error as Error).message}); retrying`);
        this.failing = true;
        return;
      }
      await this.afterConflict(held);
    }
  }

  /** A renew's compare-and-set failed: our own earlier write that landed late, or the lease moved. */
  private async afterConflict(held: Held): Promise<void> {
    let state: LeaseState | null;
    try {
      state = await this.read(held.streamId);
    } catch (error) {
      this.log(`leases: reading ${held.streamId} after a failed renew failed (${(error as Error).message}); retrying`);
      return;
    }
    if (this.held.get(held.streamId) !== held) return;
    if (state && state.value.owner === this.nodeId && state.value.epoch === held.epoch) {
      held.revision = state.revision;
      return;
    }
    this.lose(held, 'taken', state?.value);
  }

  private armExpiry(held: Held): void {
    if (held.expiry) clearTimeout(held.expiry);
    held.expiry = null;
    if (this.frozen) return;
    held.expiry = setTimeout(() => {
      held.expiry = null;
      if (this.held.get(held.streamId) === held && performance.now() >= held.deadline) this.lose(held, 'expired');
      else if (this.held.get(held.streamId) === held) this.armExpiry(held);
    }, Math.max(0, held.deadline - performance.now()));
  }

  private lose(held: Held, reason: 'taken' | 'expired', now?: LeaseValue): void {
    this.drop(held);
    const detail = now ? ` (now ${now.owner ?? 'nobody'}'s, epoch ${now.epoch})` : '';
    this.log(`leases: lost ${held.streamId} epoch ${held.epoch}: ${reason}${detail}`);
    this.emit({ kind: 'lost', streamId: held.streamId, epoch: held.epoch, reason, ...(now ? { owner: now.owner, ownerEpoch: now.epoch } : {}) });
  }

  private drop(held: Held): void {
    if (held.expiry) clearTimeout(held.expiry);
    held.expiry = null;
    if (this.held.get(held.streamId) === held) this.held.delete(held.streamId);
  }

  private emit(event: LeaseEvent): void {
    for (const listener of this.events.listeners('lease') as ((e: LeaseEvent) => void)[]) {
      try {
        listener(event);
      } catch (error) {
        // A listener's fault is not the lease's: the others still hear of it.
        this.log(`leases: a listener failed on ${event.kind} ${event.streamId}: ${(error as Error).message}`);
      }
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new VigilError('DISPOSED', 'the lease manager has been closed');
  }

  private log(line: string): void {
    this.options.log?.(line);
  }
}

function publicLease(held: Held): HeldLease {
  return { streamId: held.streamId, epoch: held.epoch, revision: held.revision, expiresAt: held.expiresAt };
}
