/**
 * Small bookkeeping pieces for SourceStats: a sliding-window rate meter (current fps) and the gap
 * log of a stream's timeline (one entry per outage, bounded).
 */
import type { VigilErrorCode } from '../common/errors.js';
import type { Gap } from './types.js';

/** Events per second over the last `windowMs` of wall time. */
export class RateMeter {
  private readonly times: number[] = [];

  constructor(private readonly windowMs = 10_000) {}

  mark(now = Date.now()): void {
    this.times.push(now);
    this.trim(now);
  }

  rate(now = Date.now()): number {
    this.trim(now);
    if (this.times.length === 0) return 0;
    const span = Math.max(1000, Math.min(this.windowMs, now - this.times[0]!));
    return (this.times.length * 1000) / span;
  }

  private trim(now: number): void {
    while (this.times.length > 0 && now - this.times[0]! > this.windowMs) this.times.shift();
  }
}

/** Outages in the timeline. The newest `max` are kept; `total` counts all. */
export class GapLog {
  private readonly list: Gap[] = [];
  private open: Gap | null = null;
  total = 0;

  constructor(private readonly max = 1000) {}

  get current(): Gap | null {
    return this.open;
  }

  /** Starts an outage, or adds an attempt to the one in progress. */
  begin(startT: number, reason: string, code: VigilErrorCode | null, now = Date.now()): Gap {
    if (this.open) {
      this.open.attempts++;
      this.open.reason = reason;
      this.open.code = code;
      return this.open;
    }
    this.open = { startT, endT: null, startWall: now, endWall: null, reason, code, attempts: 1 };
    this.list.push(this.open);
    this.total++;
    if (this.list.length > this.max) this.list.shift();
    return this.open;
  }

  /** Closes the open outage at the first frame after it. */
  end(endT: number, now = Date.now()): Gap | null {
    const gap = this.open;
    if (!gap) return null;
    gap.endT = endT;
    gap.endWall = now;
    this.open = null;
    return gap;
  }

  all(): Gap[] {
    return this.list.map((g) => ({ ...g }));
  }
}
