/**
 * A stream's alerts, bounded: at most `max` (MAX_ALERTS_PER_STREAM) in memory, the oldest dropped
 * first, and alerts.ndjson compacted to the same newest `max` (WatchStore.rewriteAlerts: temp file,
 * fsync, rename) once it holds `max * ALERT_COMPACT_MARGIN` lines more, so a camera running for
 * weeks keeps a bounded file and a bounded list. Between compactions the file only grows by appends
 * (one fsynced line per alert): a crash at any point leaves either the old file or the compacted one.
 */
import { ALERT_COMPACT_MARGIN, type Alert, MAX_ALERTS_PER_STREAM } from './types.js';
import type { WatchStore } from './watchStore.js';

export interface AlertHistoryStats {
  /** Alerts held (at most `max`). */
  alerts: number;
  /** Lines in alerts.ndjson (at most `max` plus the margin, once loaded). */
  fileLines: number;
  /** Alerts dropped from memory since open (the oldest). */
  dropped: number;
  compactions: number;
}

export class AlertHistory {
  private readonly list: Alert[] = [];
  private fileLines = 0;
  private dropped = 0;
  private compactions = 0;
  /** Compaction is tried again only after this many lines (a failed one is not retried at every alert). */
  private compactAt: number;

  constructor(
    private readonly store: WatchStore | undefined,
    readonly max = MAX_ALERTS_PER_STREAM,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`AlertHistory: max must be an integer >= 1, got ${max}`);
    this.compactAt = max + this.margin;
  }

  /** Lines beyond the bound the file may hold before it is compacted (at least 1). */
  get margin(): number {
    return Math.max(1, Math.ceil(this.max * ALERT_COMPACT_MARGIN));
  }

  /**
   * Reads the newest `max` persisted alerts; a file over the bound and its margin (written before
   * the bound, or with a larger one) is compacted now. Throws STORE_IO when the file cannot be read.
   */
  load(): void {
    if (!this.store) return;
    const { alerts, lines } = this.store.readAlertTail(this.max);
    // One by one: a spread of a history-sized array into push() throws past ~150k.
    for (const alert of alerts) this.list.push(alert);
    this.fileLines = lines;
    this.dropped += lines - alerts.length;
    this.compactIfDue();
  }

  /** Persists an alert (appended, fsynced) and keeps it; the oldest goes past the bound. Throws when the append fails (nothing kept then). */
  append(alert: Alert): void {
    this.store?.appendAlert(alert);
    this.fileLines++;
    this.list.push(alert);
    if (this.list.length > this.max) {
      const excess = this.list.length - this.max;
      this.list.splice(0, excess);
      this.dropped += excess;
    }
    this.compactIfDue();
  }

  /** Alerts in the order they were raised; `since`: wall time (ms) they must be at or after. */
  filter(filter: { since?: number; watchId?: string } = {}): Alert[] {
    return this.list.filter((a) => (filter.since === undefined || a.wallTime >= filter.since) && (filter.watchId === undefined || a.watchId === filter.watchId));
  }

  /** The newest alert of a watch, if any is still held. */
  lastOf(watchId: string): Alert | undefined {
    for (let i = this.list.length - 1; i >= 0; i--) if (this.list[i]!.watchId === watchId) return this.list[i];
    return undefined;
  }

  get size(): number {
    return this.list.length;
  }

  stats(): AlertHistoryStats {
    return { alerts: this.list.length, fileLines: this.fileLines, dropped: this.dropped, compactions: this.compactions };
  }

  private compactIfDue(): void {
    if (!this.store || this.fileLines <= this.compactAt) return;
    try {
      this.store.rewriteAlerts(this.list);
      this.fileLines = this.list.length;
      this.compactions++;
      this.compactAt = this.max + this.margin;
    } catch (error) {
      // The appends went through: nothing is lost, the file is only longer. Tried again a margin later.
      this.compactAt = this.fileLines + this.margin;
      process.emitWarning(`${this.store.folder}: alerts.ndjson not compacted (${(error as Error).message}); tried again after ${this.margin} more alerts`);
    }
  }
}
