import path from 'node:path';
import type { StreamSession } from '../streamSession.js';
import { type PathRoots, publicMessage } from './publicMessage.js';
import type { StreamIngest } from './streamIngest.js';
import { type StreamRecord, writeRecord } from './streamRecord.js';
import { ThumbnailStore } from './thumbnails.js';
import type { StreamState, StreamStatus } from './types.js';

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
  answered = 0;
  /** Finite sources: the length reported by the probe (s). */
  durationS: number | null = null;
  readonly thumbnails: ThumbnailStore;

  constructor(
    readonly dir: string,
    public record: StreamRecord,
  ) {
    this.thumbnails = new ThumbnailStore(path.join(dir, 'thumbs'));
  }

  get id(): string {
    return this.record.id;
  }

  get kind(): StreamStatus['kind'] {
    return this.record.kind;
  }

  persist(): void {
    writeRecord(this.dir, this.record);
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
    const error = this.unavailable ?? this.record.lastError ?? this.sourceError(state);
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
        retention: {
          ...(record.settings.retention.maxBytes !== undefined ? { maxBytes: record.settings.retention.maxBytes } : {}),
          ...(record.settings.retention.maxStreamAgeSec !== undefined ? { maxAgeSec: record.settings.retention.maxStreamAgeSec } : {}),
        },
      },
      frames: this.ingest?.framesEncoded ?? 0,
      memory:
        session && store
          ? { chunks: session.storedChunks, bytes: session.storedBytes, firstT: store.tStart, lastT, contextFrames: session.contextFrames }
          : null,
      ingest:
        this.ingest && source
          ? {
              fps: this.ingest.encodeFps(),
              sourceFps: source.currentFps,
              lagMs: Math.round(source.lagMs),
              drops: source.framesDropped,
              gaps: source.gaps.length,
              restarts: source.restarts,
              queued: source.queued,
              lastGap: lastGap ? { startT: lastGap.startT, endT: lastGap.endT, reason: lastGap.reason } : null,
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
