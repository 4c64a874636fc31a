import { openSource, type OpenSourceOptions, type SourceInput, type SourceStats, type VideoSource } from '../../../ingest/index.js';
import { frameToModelInput, modelFrameSize } from '../../../ingest/modelAdapter.js';
import { RateMeter } from '../../../ingest/stats.js';
import { isVigilError, VigilError } from '../../../common/errors.js';
import { modelFrameSide } from '../ingestToSession.js';
import type { StreamSession } from '../streamSession.js';
import type { ModelScheduler } from './modelScheduler.js';
import type { ThumbnailStore } from './thumbnails.js';

export interface StreamIngestOptions {
  streamId: string;
  session: StreamSession;
  scheduler: ModelScheduler;
  thumbnails: ThumbnailStore;
  input: SourceInput;
  source: OpenSourceOptions;
  /** Prune thumbnails after retention every this many frames (only when the stream has retention). */
  pruneEvery: number | null;
}

export interface IngestOutcome {
  /** ended: a finite source was read to its end; stopped: stop() was called; failed: see error. */
  result: 'ended' | 'stopped' | 'failed';
  error: { code: string; message: string } | null;
}

/**
 * The ingest loop of one stream: source frames -> preprocessing -> a frame job on the shared model
 * scheduler (encode + store + index) -> thumbnail. The loop awaits each encode, so when the model is
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
  lastT: number | null = null;
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

  /** Outages that could not be written to the manifest (the disk failed); ingest goes on. */
  gapWriteErrors = 0;

  private recordGap(tStart: number, tEnd: number, reason: string): void {
    if (!(tEnd > tStart)) return;
    try {
      this.options.session.store.recordGap({ tStart, tEnd, reason });
    } catch {
      this.gapWriteErrors++;
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
    const { session, scheduler, thumbnails, streamId } = this.options;
    const signal = this.abort.signal;
    const side = modelFrameSide(session);
    // One pixel buffer for every frame: each is encoded before the next is preprocessed.
    let pixels: Float32Array | undefined;
    const stored = session.stats();
    const resumeAfter = stored.storedChunks > 0 ? stored.lastFrameTime : null;
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
    if (signal.aborted) {
      await source.dispose();
      return 'stopped';
    }
    let offset: number | null = null;
    // Every outage the source lived through is kept in the manifest (stream time), so the timeline
    // shows it after a restart too; the source's own gap list is in RAM only.
    source.on('gap', (gap) => {
      if (gap.endT !== null && offset !== null) this.recordGap(gap.startT + offset, gap.endT + offset, gap.reason);
    });
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
        const image = await frameToModelInput(frame, session.model.imageConfig, side, { out: (pixels ??= new Float32Array(3 * side * side)) });
        const chunk = await scheduler.run(streamId, 'frame', () => session.addFrame(image, t, frame.wallTime), signal);
        await thumbnails.write(chunk.chunkId, frame);
        this.framesEncoded++;
        this.lastT = t;
        this.rate.mark();
        if (this.options.pruneEvery && this.framesEncoded % this.options.pruneEvery === 0) await thumbnails.prune(session.store.stats().firstChunkId);
      }
    } catch (error) {
      if (signal.aborted) return 'stopped';
      // Resuming a file whose memory already reaches its end: ffmpeg finds nothing after startAtS.
      if (this.framesEncoded === 0 && startAtS !== undefined && nothingLeft(source, startAtS, fps)) return 'ended';
      throw error;
    } finally {
      await source.dispose();
    }
    if (this.options.pruneEvery) await thumbnails.prune(session.store.stats().firstChunkId);
    if (signal.aborted) return 'stopped';
    const stats = source.stats();
    if (stats.state === 'failed' && this.framesEncoded === 0 && startAtS !== undefined && nothingLeft(source, startAtS, fps)) return 'ended';
    if (stats.state === 'failed') throw new VigilError((stats.lastError?.code as never) ?? 'SOURCE_FAILED', stats.lastError?.message ?? 'the source failed');
    return stats.endReason === 'stopped' ? 'stopped' : 'ended';
  }
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
