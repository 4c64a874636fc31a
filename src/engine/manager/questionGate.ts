import { VigilError } from '../../../common/errors.js';

/** Too many questions waiting: try again after `retryAfterS` seconds (HTTP 429 + Retry-After). */
export class OverloadedError extends VigilError {
  constructor(
    message: string,
    readonly retryAfterS: number,
  ) {
    super('OVERLOADED', message);
  }
}

/**
 * Bounded question queues: at most `perStream` questions queued or running per stream and `total`
 * in all. Past that a question is refused at once rather than queued, so callers get a fast 429 with
 * a retry hint (the queue length times the recent mean answer time) instead of a timeout.
 */
export class QuestionGate {
  private readonly counts = new Map<string, number>();
  private total = 0;
  /** Recent mean time a question holds its slot (ms), for the retry hint. */
  private meanMs = 250;

  constructor(
    private readonly perStream: number,
    private readonly maxTotal: number,
  ) {}

  /** Takes a slot for a question on `streamId`; returns the function that gives it back. */
  admit(streamId: string): () => void {
    const mine = this.counts.get(streamId) ?? 0;
    if (mine >= this.perStream) {
      throw new OverloadedError(`stream '${streamId}' already has ${mine} questions waiting (limit ${this.perStream}); try again shortly`, this.retryAfterS(mine));
    }
    if (this.total >= this.maxTotal) {
      throw new OverloadedError(`the server already has ${this.total} questions waiting (limit ${this.maxTotal}); try again shortly`, this.retryAfterS(this.total));
    }
    this.counts.set(streamId, mine + 1);
    this.total++;
    const started = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.counts.get(streamId) ?? 1) - 1;
      if (left > 0) this.counts.set(streamId, left);
      else this.counts.delete(streamId);
      this.meanMs = 0.8 * this.meanMs + 0.2 * (performance.now() - started);
    };
  }

  pending(streamId?: string): number {
    return streamId === undefined ? this.total : (this.counts.get(streamId) ?? 0);
  }

  private retryAfterS(queued: number): number {
    return Math.min(60, Math.max(1, Math.ceil((queued * this.meanMs) / 1000)));
  }
}
