/**
 * Capped exponential backoff for reconnects: initial, initial*factor, ... up to max, with a little
 * jitter; reset on the first good frame (Viseron PR #1461's rule, anchors.md §3). Unlike go2rtc it
 * also applies when the very first start fails.
 */
import type { BackoffOptions } from './types.js';

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000, factor: 2, jitter: 0.1, maxAttempts: Infinity };

export class Backoff {
  private failures = 0;

  constructor(
    readonly options: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {
    if (!(options.initialMs >= 0) || !(options.maxMs >= options.initialMs) || !(options.factor >= 1)) {
      throw new RangeError(`bad backoff options ${JSON.stringify(options)}`);
    }
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** Whether another attempt is allowed after the failures so far. */
  get exhausted(): boolean {
    return this.failures >= this.options.maxAttempts;
  }

  /** Records a failure and returns how long to wait before the next attempt (ms). */
  fail(): number {
    const base = Math.min(this.options.maxMs, this.options.initialMs * this.options.factor ** this.failures);
    this.failures++;
    const spread = base * this.options.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.min(this.options.maxMs, Math.round(base + spread)));
  }

  reset(): void {
    this.failures = 0;
  }
}
