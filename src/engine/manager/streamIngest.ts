import { setTimeout as sleep } from 'node:timers/promises';
import { type Frame, openSource, type OpenSourceOptions, type ProbeInfo, type SourceInput, type SourceStats, type VideoSource } from '../../../ingest/index.js';
import { frameToModelInput, modelFrameSize } from '../../../ingest/modelAdapter.js';
import { RateMeter } from '../../../ingest/stats.js';
import { isVigilError, VigilError } from '../../../common/errors.js';
import { modelFrameSide } from '../ingestToSession.js';
import type { StreamSession } from '../streamSession.js';
import { freeBytes, formatBytes, isDiskFull } from './diskSpace.js';
import type { ModelScheduler } from './modelScheduler.js';
import type { ThumbnailStore } from './thumbnails.js';
import type { TimelineGap } from './types.js';

export interface StreamIngestOptions {
  streamId: string;
  session: StreamSession;
  scheduler: ModelScheduler;
  thumbnails: ThumbnailStore;
  input: SourceInput;
  source: OpenSourceOptions;
  /** Folders whose free space is measured while ingest is paused for a full disk (the stream's memory, index, thumbnails). */
  spaceDirs: readonly string[];
  /** Called after an outage was written to the timeline (the stream keeps a summary for its status). */
  onGap?: (gap: TimelineGap) => void;
  /** Called when ingest resumes after a full disk (the stream retries writes it had to defer). */
  onResumed?: () => void;
  /** Every frame taken from the source, before the gate (health watches look for a frozen image); must not throw. */
  onFrame?: (frame: Frame) => void;
  /** A live source was probed (the manager keeps the result for the next start: source-probe.json); must not throw. */
  onProbe?: (probe: ProbeInfo) => void;
  /** The source's non-fatal warnings (a saved probe that did not fit, decode errors); must not throw. */
  onWarning?: (message: string) => void;
  diskFull?: DiskFullOptions;
  /**
   * Awaited before each frame is encoded and stored: may wait (the frames meanwhile wait in the
   * source's bounded queue; a live source drops its oldest past the queue's capacity) or throw to
   * end the ingest. A cluster node waits here while it takes a lapsed lease back.
   */
  beforeStore?: (signal: AbortSignal) => Promise<void>;
  /**
   * Tests only: runs before each frame's addFrame and may throw. Used where no small real
   * filesystem can be mounted, to stand in for the DISK_FULL a full disk makes the store throw.
   */
  beforeAddFrame?: () => void;
}

export interface DiskFullOptions {
  /** How often free space is measured while paused (ms). Default 2000. */
  pollMs?: number;
  /** Longest wait between write retries that keep failing although statfs shows space (ms). Default 30000. */
  maxBackoffMs?: number;
  /** Free bytes needed before a write is retried. Default: 1 MiB or 8 average chunks, whichever is more. */
  minFreeBytes?: number;
}

/** Outages whose timeline write failed, kept to retry (bounded: the oldest are given up). */
const MAX_PENDING_GAPS = 64;
const DISK_FULL_GAP_REASON = 'disk full';

export interface IngestOutcome {
  /** ended: a finite source was read to its end; stopped: stop() was called; failed: see error. */
  result: 'ended' | 'stopped' | 'failed';
  error: { code: string; message: string } | null;
}

/**
 * The ingest loop of one stream: source frames -> the frame gate (a frame that barely differs from
 * the last encoded one only extends the previous chunk's span, without waiting for the model) ->
 * preprocessing -> a frame job on the shared model scheduler (encode + store + index) -> thumbnail. The loop awaits each encode, so when the model is
 * busy with other streams the source's own queue fills and live sources drop frames by their policy
 * (counted in `framesDropped`), instead of an unbounded backlog here.
 *
 * Resuming an existing memory: a finite source restarts at the last stored time (frames up to it are
 * skipped); a live source's clock restarts at 0 on every connection, so its times are shifted to
 * continue after the last stored frame plus the wall-clock length of the outage.
 */
export class StreamIngest {
  readonly done: Promise<IngestOutcome>;
  source: VideoSource | null = null;
  framesEncoded = 0;
  /** Frames the gate turned away (never encoded; the previous chunk's span covers them). */
  framesGated = 0;
  lastT: number | null = null;
  /** When this ingest started (ms since the epoch). */
  readonly startedAt = Date.now();
  /** Wall time of the frame being handled (waiting for the model, encoding, storing); null between frames. Health watches count it as lag. */
  inFlightWall: number | null = null;
  private readonly rate = new RateMeter();
  private readonly abort = new AbortController();

  constructor(private readonly options: StreamIngestOptions) {
    this.done = this.loop().then(
      (result) => ({ result, error: null }),
      (error: unknown) => {
        if (this.abort.signal.aborted) return { result: 'stopped' as const, error: null };
        const e = isVigilError(error) ? error : new VigilError('SOURCE_FAILED', (error as Error).message, { cause: error });
        return { result: 'failed' as const, error: { code: e.code, message: e.message } };
      },
    );
  }

  /** Outage writes to the manifest that failed (the disk failed or was full); ingest goes on, and they are retried. */
  gapWriteErrors = 0;
  /** Times ingest paused because the disk was full. */
  pauses = 0;
  /** Frames of a live source dropped while paused (a finite source waits instead). */
  pausedDrops = 0;
  /** Set while ingest waits for disk space: why, and since when. */
  paused: { message: string; since: number } | null = null;
  /** The current pause: where the stored timeline stopped, frames lost, when to look for space again. */
  private pause: {
    /** The last frame ingest handed to the memory before the pause. */
    fromT: number;
    dropped: number;
    nextCheckAt: number;
    backoffMs: number;
    cause: string;
    /** The newest committed frame's time when a write was last retried (frames after it never reached the disk). */
    committedEnd: number | null;
  } | null = null;
  private pendingGaps: TimelineGap[] = [];
  /** The last stored time when this ingest started (null: an empty memory). */
  private resumeAfter: number | null = null;
  /** One pixel buffer for every frame: each is encoded before the next is preprocessed. */
  private pixels: Float32Array | undefined;

  private recordGap(tStart: number, tEnd: number, reason: string): void {
    if (!(tEnd > tStart)) return;
    this.pendingGaps.push({ from: tStart, to: tEnd, reason });
    if (this.pendingGaps.length > MAX_PENDING_GAPS) this.pendingGaps.shift();
    this.writePendingGaps();
  }

  /**
   * Writes the outages not yet in the manifest. One that finds the disk full waits (with those
   * after it) for the next stored frame; one refused for any other reason is given up, so it
   * cannot hold the others back.
   */
  private writePendingGaps(): void {
    while (this.pendingGaps.length > 0) {
      const gap = this.pendingGaps[0]!;
      try {
        this.options.session.store.recordGap({ tStart: gap.from, tEnd: gap.to, reason: gap.reason });
      } catch (error) {
        this.gapWriteErrors++;
        if (isDiskFull(error)) return;
        this.pendingGaps.shift();
        continue;
      }
      this.pendingGaps.shift();
      this.options.onGap?.(gap);
    }
  }

  /**
   * Encodes and stores one frame, then its thumbnail. A full disk pauses ingest instead of failing
   * it: a live source's frames are dropped until space returns (the time lost becomes a 'disk full'
   * gap once a write succeeds again); a finite source waits and retries the same frame, so nothing
   * is lost. Returns the chunk id, or null when the frame was dropped.
   */
  private async storeFrame(frame: Frame, t: number, live: boolean, signal: AbortSignal): Promise<number | null> {
    const { session, scheduler, thumbnails, streamId } = this.options;
    for (;;) {
      if (this.pause) {
        if (live) {
          if (!(await this.spaceToRetry())) return this.drop();
        } else {
          await this.waitForSpace(signal);
        }
      }
      if (this.pause) await this.settleBeforeRetry(this.pause);
      let chunkId: number;
      try {
        if (this.options.beforeStore) await this.options.beforeStore(signal);
        const side = modelFrameSide(session);
        const image = await frameToModelInput(frame, session.model.imageConfig, side, { out: (this.pixels ??= new Float32Array(3 * side * side)) });
        const chunk = await scheduler.run(
          streamId,
          'frame',
          () => {
            this.options.beforeAddFrame?.();
            return session.addFrame(image, t, frame.wallTime, frame);
          },
          signal,
        );
        chunkId = chunk.chunkId;
      } catch (error) {
        if (signal.aborted || !isDiskFull(error)) throw error;
        await this.enterPause(error, t);
        if (live) return this.drop();
        continue;
      }
      this.framesEncoded++;
      if (this.pause) this.leavePause(t);
      this.lastT = t;
      if (this.pendingGaps.length > 0) this.writePendingGaps();
      try {
        await thumbnails.write(chunkId, frame);
      } catch (error) {
        // The chunk is stored, only its picture is missing; the next frames wait for space.
        if (!isDiskFull(error)) throw error;
        await this.enterPause(error, t);
      }
      return chunkId;
    }
  }

  private drop(): null {
    this.pause!.dropped++;
    this.pausedDrops++;
    return null;
  }

  private get diskFullOptions(): Required<Omit<DiskFullOptions, 'minFreeBytes'>> & { minFreeBytes: number | undefined } {
    const o = this.options.diskFull ?? {};
    return { pollMs: o.pollMs ?? 2000, maxBackoffMs: o.maxBackoffMs ?? 30_000, minFreeBytes: o.minFreeBytes };
  }

  /** Free bytes wanted before writing again: room for several chunks and their manifest rows. */
  private minFreeBytes(): number {
    const fixed = this.diskFullOptions.minFreeBytes;
    if (fixed !== undefined) return fixed;
    try {
      const s = this.options.session.stats();
      const perChunk = s.storedChunks > 0 ? s.storedBytes / s.storedChunks : 0;
      return Math.max(1024 ** 2, Math.ceil(8 * perChunk));
    } catch {
      return 1024 ** 2;
    }
  }

  /** A write found the disk full: pause (first time), or back off (a retry failed although statfs showed space). */
  private async enterPause(error: unknown, t: number): Promise<void> {
    const { pollMs, maxBackoffMs } = this.diskFullOptions;
    const now = Date.now();
    const cause = error instanceof Error ? error.message : String(error);
    if (this.pause) {
      this.pause.backoffMs = Math.min(this.pause.backoffMs * 2, maxBackoffMs);
      this.pause.nextCheckAt = now + this.pause.backoffMs;
      this.pause.cause = cause;
    } else {
      this.pauses++;
      this.pause = { fromT: this.lastT ?? this.resumeAfter ?? t, dropped: 0, nextCheckAt: now + pollMs, backoffMs: pollMs, cause, committedEnd: null };
      // A status read while freeBytes() below is awaited must already say why.
      this.paused = { message: pauseMessage(null, cause), since: now };
    }
    this.paused!.message = pauseMessage(await freeBytes(this.options.spaceDirs), cause);
  }

  /**
   * A write succeeded again. The frames lost meanwhile become a 'disk full' gap: those a live
   * source dropped, and any handed over before the pause whose commit the full disk refused.
   */
  private leavePause(t: number): void {
    const pause = this.pause!;
    this.pause = null;
    this.paused = null;
    const end = pause.committedEnd;
    const uncommitted = end !== null && end < pause.fromT;
    if (pause.dropped > 0 || uncommitted) this.recordGap(uncommitted ? end : pause.fromT, t, DISK_FULL_GAP_REASON);
    this.options.onResumed?.();
  }

  /**
   * Before writing again: frames handed over just before the disk filled may have failed to commit
   * after their addFrame returned. Waiting for their commits (a DISK_FULL here is that late report,
   * taken now so the retry does not trip over it) tells where the stored timeline really stops.
   */
  private async settleBeforeRetry(pause: NonNullable<StreamIngest['pause']>): Promise<void> {
    const { session } = this.options;
    try {
      await session.flush();
    } catch (error) {
      if (!isDiskFull(error)) throw error;
    }
    try {
      pause.committedEnd = session.store.stats().tEnd;
    } catch {
      pause.committedEnd = null;
    }
  }

  /** Whether it is time to try a write again: the wait is over and statfs shows room. */
  private async spaceToRetry(): Promise<boolean> {
    const pause = this.pause!;
    const now = Date.now();
    if (now < pause.nextCheckAt) return false;
    const free = await freeBytes(this.options.spaceDirs);
    // statfs failing says nothing about space: let the write itself tell (its failure backs off).
    if (free === null || free >= this.minFreeBytes()) return true;
    pause.nextCheckAt = now + this.diskFullOptions.pollMs;
    if (this.paused) this.paused.message = pauseMessage(free, pause.cause);
    return false;
  }

  /** A finite source waits (reading nothing) until there is room to write its next frame. */
  private async waitForSpace(signal: AbortSignal): Promise<void> {
    for (;;) {
      const wait = this.pause!.nextCheckAt - Date.now();
      if (wait > 0) await sleep(wait, undefined, { signal });
      if (await this.spaceToRetry()) return;
    }
  }

  /** Frames encoded per second over the last 10 s. */
  encodeFps(): number {
    return Number(this.rate.rate().toFixed(3));
  }

  sourceStats(): SourceStats | null {
    return this.source?.stats() ?? null;
  }

  /** Stops the source (ffmpeg killed) and a frame waiting for the model; resolves when the loop has ended. */
  async stop(): Promise<IngestOutcome> {
    this.abort.abort();
    await this.source?.dispose();
    return this.done;
  }

  private async loop(): Promise<'ended' | 'stopped' | 'failed'> {
    const { session } = this.options;
    const signal = this.abort.signal;
    const side = modelFrameSide(session);
    const stored = session.stats();
    const resumeAfter = stored.storedChunks > 0 ? stored.lastFrameTime : null;
    this.resumeAfter = resumeAfter;
    const wallEnd = session.store.stats().wallEnd;
    const fps = this.options.source.fps ?? 1;
    // A finite source resumes at the sample bin after the last stored frame (live sources ignore it).
    const startAtS = resumeAfter === null ? undefined : (Math.floor(resumeAfter * fps + 1e-9) + 1) / fps;
    const source = await openSource(this.options.input, {
      ...this.options.source,
      ...(startAtS !== undefined ? { startAtS } : {}),
      size: modelFrameSize(side),
    });
    this.source = source;
    source.on('probe', (probe) => {
      if (source.stats().live) this.options.onProbe?.(probe);
    });
    if (this.options.onWarning) source.on('warning', this.options.onWarning);
    if (signal.aborted) {
      await source.dispose();
      return 'stopped';
    }
    let offset: number | null = null;
    // Every outage the source lived through is kept in the manifest (stream time), so the timeline
    // shows it after a restart too; the source's own gap list is in RAM only.
    source.on('gap', (gap) => {
      // No chunk's span may reach across an outage: the first frame after it is encoded.
      session.gate.forget();
      if (gap.endT !== null && offset !== null) this.recordGap(gap.startT + offset, gap.endT + offset, gap.reason);
    });
    // Nor across the time this stream was not ingesting (a stop, a restart of the service).
    session.gate.forget();
    try {
      for (;;) {
        const frame = await source.next();
        if (!frame || signal.aborted) break;
        if (offset === null) {
          offset = timeOffset(source.stats().live, resumeAfter, wallEnd, fps);
          // A live stream continuing a stored memory: the time Vigil was not ingesting is an outage.
          if (offset > 0 && resumeAfter !== null) this.recordGap(resumeAfter, frame.t + offset, 'not ingesting (the service was stopped or the stream restarted)');
        }
        const t = frame.t + offset;
        if (resumeAfter !== null && t <= resumeAfter) continue;
        this.options.onFrame?.(frame);
        this.inFlightWall = frame.wallTime;
        // While paused for a full disk every frame takes storeFrame's path (dropped or waiting).
        if (!this.pause && !session.checkGate(frame, t).encode) {
          await session.skipFrame(t);
          this.framesGated++;
          this.lastT = t;
          this.inFlightWall = null;
          continue;
        }
        const stored = await this.storeFrame(frame, t, source.stats().live, signal);
        this.inFlightWall = null;
        if (stored === null) continue;
        this.rate.mark();
      }
    } catch (error) {
      this.inFlightWall = null;
      if (signal.aborted) return 'stopped';
      // Resuming a file whose memory already reaches its end: ffmpeg finds nothing after startAtS.
      if (this.framesEncoded === 0 && startAtS !== undefined && nothingLeft(source, startAtS, fps)) return 'ended';
      throw error;
    } finally {
      await source.dispose();
    }
    if (signal.aborted) return 'stopped';
    const stats = source.stats();
    if (stats.state === 'failed' && this.framesEncoded === 0 && startAtS !== undefined && nothingLeft(source, startAtS, fps)) return 'ended';
    if (stats.state === 'failed') throw new VigilError((stats.lastError?.code as never) ?? 'SOURCE_FAILED', stats.lastError?.message ?? 'the source failed');
    return stats.endReason === 'stopped' ? 'stopped' : 'ended';
  }
}

/** The status message of a paused ingest: how much room there is, and the write that failed. */
function pauseMessage(free: number | null, cause: string): string {
  const room = free === null ? '' : ` (${formatBytes(free)} free)`;
  return `paused: disk full${room}; ingest resumes by itself when space returns; the write that failed: ${cause}`;
}

/** Whether a finite source has less than one sample period left after `startAtS`. */
function nothingLeft(source: VideoSource, startAtS: number, fps: number): boolean {
  const duration = source.probe?.durationS;
  return !source.stats().live && typeof duration === 'number' && startAtS > duration - 1 / fps;
}

/**
 * Shift added to a source's frame times. Finite sources: none (their times are positions in the file).
 * Live sources continuing a stored memory: after its last frame, by the wall-clock outage (at least
 * one sample period), so stream time stays monotonic and the outage shows as a gap in the timeline.
 */
function timeOffset(live: boolean, lastT: number | null, lastWall: number | null, fps: number): number {
  if (!live || lastT === null) return 0;
  const outageS = lastWall === null ? 0 : Math.max(0, (Date.now() - lastWall) / 1000);
  return lastT + Math.max(1 / fps, outageS);
}
