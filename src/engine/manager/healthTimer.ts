/**
 * The manager's health timer: every `tickMs` (default 1 s) it judges each stream's health watches
 * (watches/healthMonitor.ts) from what its ingest knows (healthProbe.ts), with no model and no disk
 * read, so a watch fires even when no frame arrives at all. It also passes every decoded frame to the
 * stream's monitor while the stream has a frozen watch. One failing stream is logged and skipped:
 * the others are still judged.
 */
import type { Frame } from '../../../ingest/index.js';
import { HealthMonitor } from '../watches/healthMonitor.js';
import type { Alert } from '../watches/types.js';
import { healthProbe } from './healthProbe.js';
import type { ManagedStream } from './managedStream.js';
import type { PathRoots } from './publicMessage.js';

export const DEFAULT_HEALTH_TICK_MS = 1000;

export interface HealthTimerOptions {
  /** Judging interval, ms; default DEFAULT_HEALTH_TICK_MS. */
  tickMs?: number;
  streams: () => Iterable<ManagedStream>;
  /** Hands a new alert (already persisted) to the manager's subscribers. */
  dispatch: (alert: Alert) => void;
  log: (line: string) => void;
  roots: () => PathRoots;
}

export class HealthTimer {
  private readonly monitors = new Map<ManagedStream, HealthMonitor>();
  private timer: NodeJS.Timeout | null = null;
  private disposed = false;

  constructor(private readonly options: HealthTimerOptions) {}

  get tickMs(): number {
    return this.options.tickMs ?? DEFAULT_HEALTH_TICK_MS;
  }

  start(): void {
    if (this.timer || this.disposed) return;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    // The timer alone does not keep the process alive.
    this.timer.unref();
  }

  /** A frame the stream's ingest took from its source (encoded or gated). Never throws into ingest. */
  observeFrame(stream: ManagedStream, frame: Frame): void {
    try {
      const monitor = this.monitorOf(stream);
      if (monitor?.wantsFrames) monitor.observeFrame(frame, frame.wallTime);
    } catch (error) {
      this.options.log(`stream ${stream.id}: health frame check failed: ${(error as Error).message}`);
    }
  }

  /** Judges every stream's health watches now; the timer calls it. */
  tick(now = Date.now()): void {
    const seen = new Set<ManagedStream>();
    for (const stream of this.options.streams()) {
      seen.add(stream);
      try {
        const monitor = this.monitorOf(stream);
        if (!monitor || monitor.host.healthWatches().length === 0) continue;
        for (const alert of monitor.tick(healthProbe(stream, now, this.options.roots()), now)) this.options.dispatch(alert);
      } catch (error) {
        this.options.log(`stream ${stream.id}: health check failed: ${(error as Error).message}`);
      }
    }
    for (const stream of this.monitors.keys()) if (!seen.has(stream)) this.monitors.delete(stream);
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.monitors.clear();
  }

  /** The stream's monitor, made for its current memory (a reopened memory gets a new one). */
  private monitorOf(stream: ManagedStream): HealthMonitor | null {
    const engine = stream.session?.watches;
    if (!engine) return null;
    let monitor = this.monitors.get(stream);
    if (!monitor || monitor.host !== engine) {
      monitor = new HealthMonitor(engine, this.options.log);
      this.monitors.set(stream, monitor);
    }
    return monitor;
  }
}
