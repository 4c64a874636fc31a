import path from 'node:path';
import { tiersInForce } from '../../../common/settings.js';
import { DEFAULT_GATE } from '../frameGate.js';
import type { StreamSession } from '../streamSession.js';
import { type PathRoots, publicMessage } from './publicMessage.js';
import { SourceProbeFile } from './sourceProbeFile.js';
import type { StreamIngest } from './streamIngest.js';
import { type StreamRecord, writeRecord } from './streamRecord.js';
import { ThumbnailStore } from './thumbnails.js';
import { isDiskFull } from './diskSpace.js';
import { ingestLagMs } from './ingestLag.js';
import type { StreamState, StreamStatus, TimelineGap } from './types.js';

/**
 * One stream inside the manager: its persisted record, its memory (session) once open, its ingest
 * loop while one runs, and its thumbnails. The manager drives the lifecycle; this holds the state
 * and turns it into a status.
 */
export class ManagedStream {
  session: StreamSession | null = null;
  ingest: StreamIngest | null = null;
  /** True while `ingest` is running (the object stays afterwards for its last stats). */
  ingesting = false;
  /** Why the memory could not be opened. */
  unavailable: { code: string; message: string } | null = null;
  /** Cluster mode: this node's lease on the stream (shown in its status). */
  ownership: { owner: string; epoch: number } | null = null;
  answered = 0;
  /** Finite sources: the length reported by the probe (s). */
  durationS: number | null = null;
  readonly thumbnails: ThumbnailStore;
  /** The last probe of a live source (source-probe.json), handed to its next ingest. */
  readonly sourceProbe: SourceProbeFile;
  /** The record changed but stream.json could not be written (disk full): written by the next save. */
  recordUnsaved = false;
  /**
   * The persisted outages, summarised for the status (polled every 1.5 s by the page): read from
   * the manifest once when the memory opens (and after retention), then updated as gaps are recorded.
   */
  private gapSummary: { count: number; last: TimelineGap | null } = { count: 0, last: null };
  /** The store's first chunk id when the gap summary was last read (retention moves it). */
  /** Thumbnail prunes run one after another. */
  private pruning: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    public record: StreamRecord,
  ) {
    this.thumbnails = new ThumbnailStore(path.join(dir, 'thumbs'));
    this.sourceProbe = new SourceProbeFile(dir);
  }

  get id(): string {
    return this.record.id;
  }

  get kind(): StreamStatus['kind'] {
    return this.record.kind;
  }

  /**
   * Writes stream.json (temp file + rename). On a full disk the previous file is kept and DISK_FULL
   * thrown: callers that change the record revert their change (see `update`).
   */
  persist(): void {
    writeRecord(this.dir, this.record);
    this.recordUnsaved = false;
  }

  /**
   * Applies a change to the record and saves it; on any failure (a full disk: DISK_FULL) the record
   * is left as it was, so what is in RAM never claims more than what a restart will find.
   */
  update(change: Partial<StreamRecord>): void {
    const before = this.record;
    this.record = { ...before, ...change };
    try {
      this.persist();
    } catch (error) {
      this.record = before;
      throw error;
    }
  }

  /**
   * For changes that have already happened (an ingest ended): saves now, or, on a full disk, keeps
   * the change in RAM and retries at the next save or when ingest resumes. Returns whether it saved.
   */
  persistSoon(): boolean {
    try {
      this.persist();
      return true;
    } catch (error) {
      if (!isDiskFull(error)) throw error;
      this.recordUnsaved = true;
      return false;
    }
  }

  /**
   * Retention has run: when it removed chunks, it also removed the gaps that ended before them
   * (the summary is re-read then, which is rare: retention deletes whole segments).
   */
  /** Deletes the thumbnails of chunks retention removed, one removal after another (the memory's removal event calls it). */
  removeThumbnails(chunkIds: readonly number[]): Promise<void> {
    const run = this.pruning.then(() => this.thumbnails.remove(chunkIds));
    this.pruning = run.catch(() => undefined);
    return run;
  }

  /** Reads the persisted outages' count and newest one (a manifest query: on open and after retention only). */
  loadGaps(): void {
    const gaps = this.session?.store.gaps() ?? [];
    const last = gaps.at(-1);
    this.gapSummary = { count: gaps.length, last: last ? { from: last.tStart, to: last.tEnd, reason: last.reason } : null };
  }

  /** An outage was just written to the manifest. */
  noteGap(gap: TimelineGap): void {
    const last = this.gapSummary.last;
    this.gapSummary = { count: this.gapSummary.count + 1, last: !last || gap.from >= last.from ? { ...gap } : last };
  }

  /** The status as callers see it: error messages without server paths (`roots`). */
  status(questionsQueued: number, roots: PathRoots = {}): StreamStatus {
    const { record } = this;
    const source = this.ingest?.sourceStats() ?? null;
    const session = this.session?.stats() ?? null;
    const store = this.session?.store.stats() ?? null;
    const live = source ? source.live : this.kind === 'rtsp' ? true : this.kind === 'file' || this.kind === 'upload' ? false : null;
    const lastGap = source?.gaps.at(-1) ?? null;
    const durationS = this.ingest?.source?.probe?.durationS ?? this.durationS;
    const lastT = session?.lastFrameTime ?? null;
    const state = this.state();
    const paused = state === 'paused' ? this.ingest?.paused : null;
    const error = this.unavailable ?? this.record.lastError ?? (paused ? { code: 'DISK_FULL', message: paused.message } : this.sourceError(state));
    return {
      id: record.id,
      name: record.name,
      source: record.display,
      origin: record.origin,
      kind: this.kind,
      live,
      state,
      createdAt: record.createdAt,
      settings: {
        fps: record.settings.fps,
        window: record.settings.windowFrames,
        sinks: record.settings.sinkFrames,
        storage: record.settings.storage,
        gate: this.session?.gate.settings ?? record.settings.gate ?? DEFAULT_GATE,
        retention: {
          ...(record.settings.retention.maxBytes !== undefined ? { maxBytes: record.settings.retention.maxBytes } : {}),
          ...(record.settings.retention.maxStreamAgeSec !== undefined ? { maxAgeSec: record.settings.retention.maxStreamAgeSec } : {}),
        },
        budget: record.settings.budget ?? null,
        tiers: tiersInForce(record.settings.tiers),
      },
      disk: store
        ? {
            budgetBytes: store.budgetBytes,
            usedBytes: store.diskBytes,
            percent: store.budgetBytes === null ? null : Math.round((10_000 * store.diskBytes) / store.budgetBytes) / 100,
          }
        : null,
      frames: this.ingest?.framesEncoded ?? 0,
      memory:
        session && store
          ? {
              chunks: session.storedChunks,
              bytes: session.storedBytes,
              firstT: store.tStart,
              lastT,
              contextFrames: session.contextFrames,
              gaps: this.gapSummary.count,
              lastGap: this.gapSummary.last ? { ...this.gapSummary.last } : null,
              horizon: this.session!.memory.horizon(store),
            }
          : null,
      ingest:
        this.ingest && source
          ? {
              fps: this.ingest.encodeFps(),
              sourceFps: source.currentFps,
              lagMs: Math.round(ingestLagMs(source.lagMs, this.ingest.inFlightWall, Date.now())),
              drops: source.framesDropped,
              gaps: source.gaps.length,
              restarts: source.restarts,
              queued: source.queued,
              lastGap: lastGap ? { startT: lastGap.startT, endT: lastGap.endT, reason: lastGap.reason } : null,
              gapWriteErrors: this.ingest.gapWriteErrors,
              pauses: this.ingest.pauses,
              pausedDrops: this.ingest.pausedDrops,
              gated: this.ingest.framesGated,
            }
          : null,
      // Every stream has a position in stream time; only a finite source has a length to reach.
      progress:
        live === false
          ? { t: lastT ?? 0, durationS, fraction: record.completed ? 1 : durationS ? Math.min(1, (lastT ?? 0) / durationS) : null }
          : { t: lastT ?? 0, durationS: null, fraction: null },
      questions: { queued: questionsQueued, answered: this.answered },
      latestThumbnail: this.thumbnails.newestChunkId,
      error: error ? { code: error.code, message: publicMessage(error.message, roots) } : null,
      ...(this.ownership ? { owner: this.ownership.owner, epoch: this.ownership.epoch } : {}),
    };
  }

  /** While a live source is reconnecting (backing off, or connecting again after a failure): why it went down. */
  private sourceError(state: StreamState): { code: string; message: string } | null {
    const source = this.ingesting ? this.ingest?.sourceStats() : null;
    if (!source?.lastError) return null;
    if (state === 'backing-off' || (state === 'connecting' && source.consecutiveFailures > 0)) return { code: source.lastError.code, message: source.lastError.message };
    return null;
  }

  private state(): StreamState {
    if (this.unavailable) return 'unavailable';
    if (!this.session) return 'starting';
    if (this.ingesting) {
      if (this.ingest?.paused) return 'paused';
      const source = this.ingest?.sourceStats();
      if (!source) return 'starting';
      if (source.state === 'connecting' || source.state === 'backing-off') return source.state;
      return source.live ? 'live' : 'processing';
    }
    if (this.record.completed) return 'ended';
    if (this.record.desired === 'stopped') return 'stopped';
    return this.record.lastError ? 'failed' : 'ended';
  }
}
