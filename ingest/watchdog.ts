/**
 * Stall watchdog: calls `onStall` once when `feed()` has not been called for `timeoutMs` while
 * armed. feed() is called for every decoded frame, so it only stores a time; a coarse interval timer
 * does the checking. Paused while the consumer holds ffmpeg back (block policy): a full queue is
 * not a stall.
 */
export class StallWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  private lastFeed = 0;

  constructor(
    private timeoutMs: number,
    private readonly onStall: (silentMs: number) => void,
  ) {}

  get timeout(): number {
    return this.timeoutMs;
  }

  get isArmed(): boolean {
    return this.timer !== null;
  }

  /** Starts watching (a new run), counting from now. */
  arm(timeoutMs = this.timeoutMs): void {
    this.disarm();
    this.timeoutMs = timeoutMs;
    this.paused = false;
    this.lastFeed = Date.now();
    const every = Math.max(20, Math.min(1000, Math.floor(timeoutMs / 5)));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref?.();
  }

  feed(): void {
    this.lastFeed = Date.now();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.lastFeed = Date.now();
  }

  disarm(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    if (this.paused) return;
    const silent = Date.now() - this.lastFeed;
    if (silent < this.timeoutMs) return;
    this.disarm();
    this.onStall(silent);
  }
}
