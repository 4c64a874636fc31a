import type { FrameChunk, UnnumberedChunk } from '../../memory/frameChunk.js';
import type { ChunkStore } from '../../memory/store/index.js';
import { oracle, type StreamIndex, type TimeRange, uniform } from '../../retrieval/index.js';
import { VigilError } from '../../common/errors.js';
import { LIMITS } from '../../common/settings.js';
import type { PreprocessedImage } from '../model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { answerQuestion, type QuestionAnswer, type QuestionMemory, type QuestionOptions } from './questionAnswerer.js';
import { DEFAULT_GATE, FrameGate, type GateSetting, type GateVerdict, type RgbImage } from './frameGate.js';
import { StreamEncoder } from './streamEncoder.js';
import { type MemoryOpenReport, StreamMemory, type StreamMemoryOptions, type StreamMemoryStats } from './streamMemory.js';
import { type MemoryCoverage, memoryCoverage, type MemoryHorizon } from './memoryHorizon.js';
import { ArchiveRecall, type ArchiveReport, DEFAULT_MAX_REENCODE, type ReencodeProgress } from './archiveRecall.js';
import { encodeStill } from './stills.js';
import { modelFrameSide } from './ingestToSession.js';
import path from 'node:path';
import { questionQueries } from './questionAnswerer.js';
import { WatchEngine } from './watches/watchEngine.js';
import { WatchStore } from './watches/watchStore.js';
import { parseWatchSpec } from './watches/parseWatchSpec.js';
import { type Alert, type AnyWatch, CHECK_MAX_NEW_TOKENS, MAX_WATCHES, type Watch } from './watches/types.js';

export interface StreamSessionOptions extends StreamMemoryOptions {
  /** First frames kept in context forever; default 1. */
  sinkFrames?: number;
  /** Recent frames kept in context; default 16. */
  windowFrames?: number;
  /** Also cap the window by tokens (e.g. ReKV's n_local); none by default. */
  windowTokens?: number;
  /** Frame gating (see checkGate); default DEFAULT_GATE, 'off' encodes every frame. */
  gate?: GateSetting;
  /**
   * Runs the session's own model work that no caller submits (watch checks) through the owner's
   * model gate (the manager's scheduler, shared by every stream); default: run it at once.
   */
  runModelTask?: <T>(task: () => Promise<T>) => Promise<T>;
}

/**
 * How the answer context is chosen (design.md section 4):
 * - rekv: per-layer top-r retrieval by the question's pre-RoPE queries (default);
 * - window: sinks + the recent window only (StreamingLLM), nothing retrieved;
 * - full: every frame seen (short streams only: the context grows with the stream);
 * - uniform: r frames spread evenly over the stream (offline Video-LLM sampling, from stored KV);
 * - oracle: the frames given as ground truth (`oracleTimes` or `oracleChunkIds`).
 */
export type AnswerMode = 'rekv' | 'window' | 'full' | 'uniform' | 'oracle';
export const ANSWER_MODES: readonly AnswerMode[] = ['rekv', 'window', 'full', 'uniform', 'oracle'];

export interface AskOptions extends Omit<QuestionOptions, 'retrieve' | 'selection'> {
  mode?: AnswerMode;
  /** Chunks per layer for rekv, frames for uniform; default 64 (ReKV). */
  retrieve?: number;
  /** Only chunks overlapping this stream-time range are candidates (rekv, uniform, full). */
  timeRange?: TimeRange;
  /** oracle: the ground-truth stream-time intervals... */
  oracleTimes?: TimeRange[];
  /** ...or the ground-truth chunk ids. */
  oracleChunkIds?: number[];
  /** rekv: archived chunks (no KV) re-encoded at most, the best scored; default DEFAULT_MAX_REENCODE (0: the archive is left out). */
  maxReencode?: number;
  /** Progress of re-encoding archived frames (each costs a frame's encode). */
  onProgress?: (progress: ReencodeProgress) => void;
}

export interface SessionAnswer extends QuestionAnswer {
  mode: AnswerMode;
  /** The memory the question was answered over: its span, tiers, outages, what was forgotten. */
  horizon: MemoryHorizon;
  /**
   * With a time range: the parts of it memory does not hold (before the horizon, in an outage,
   * not seen yet) and a note saying so. When it holds none of it (`outOfMemory`), `text` is that
   * statement and no model call was made. null without a time range.
   */
  coverage: MemoryCoverage | null;
  /** Archived chunks retrieval chose, re-encoded and left out (all 0 when none was chosen). */
  archive: ArchiveReport;
}

export interface StreamSessionStats extends StreamMemoryStats {
  framesEncoded: number;
  /** Frames the gate turned away since open (never encoded; the previous chunk's span covers them). */
  framesGated: number;
  /** Mean milliseconds per frame and phase since open (encode phases, store write, index add). */
  meanPhaseMs: Record<string, number>;
  /** The same as totals (a caller measuring a stretch of frames takes differences). */
  phaseTotalsMs: Record<string, number>;
}

/**
 * One stream, end to end: the encoder (model calls) and the stream's memory (StreamMemory: window,
 * store, index), with ReKV's question path over them. Operations are serialized (one decoder per
 * stream). Everything survives a restart: see StreamMemory.open.
 */
export class StreamSession {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly phaseTotals: Record<string, number> = {};
  private framesEncoded = 0;
  private framesGated = 0;
  private disposing: Promise<void> | null = null;
  /** Unregisters from the model (which disposes its live sessions before itself). */
  private leaveModel: () => void = () => {};
  /**
   * Standing questions (watches/): scored after every encoded frame (the prefilter, synchronous,
   * microseconds), model checks queued behind the frame on this session's queue, never awaited by
   * addFrame. The public API is addWatch / removeWatch / listWatches / alerts; this is for idle(),
   * onCheck() and stats().
   */
  readonly watches: WatchEngine;

  private constructor(
    readonly encoder: StreamEncoder,
    readonly memory: StreamMemory,
    readonly gate: FrameGate,
    dir: string,
    private readonly runModelTask: <T>(task: () => Promise<T>) => Promise<T> = (task) => task(),
  ) {
    const info = encoder.model.decoder.info;
    this.watches = new WatchEngine(
      {
        stream: path.basename(dir),
        numLayers: info.numLayers,
        dim: info.numKvHeads * info.headDim,
        check: (question, started) => this.watchCheck(question, started),
        contextChunkIds: () => new Set([...memory.window.sinkChunks, ...memory.window.windowChunks].map((c) => c.chunkId)),
      },
      { store: new WatchStore(dir) },
    );
  }

  static async open(model: VisionLanguageModel, options: StreamSessionOptions): Promise<StreamSession> {
    const encoder = await StreamEncoder.create(model);
    const window = encoder.newWindow({
      sinkFrames: options.sinkFrames ?? LIMITS.sinks.default,
      windowFrames: options.windowFrames ?? LIMITS.window.default,
      ...(options.windowTokens !== undefined ? { windowTokens: options.windowTokens } : {}),
    });
    const memory = await StreamMemory.open(window, options);
    // The folder's name is the stream id: its max-hold phase (frameGate.ts) survives restarts.
    const session = new StreamSession(encoder, memory, new FrameGate(options.gate ?? DEFAULT_GATE, path.basename(options.dir)), options.dir, options.runModelTask);
    // The model owns its sessions: it refuses new ones once disposed, and disposes live ones first.
    session.leaveModel = model.adopt(session);
    // Persisted watches: their queries again (one pass 1 each; the model may have changed since).
    for (const watch of session.watches.restoring()) {
      try {
        session.watches.activate(watch, (await questionQueries(encoder, memory.window, watch.question)).queries, false);
      } catch (error) {
        process.emitWarning(`stream ${options.dir}: watch ${watch.id} stays inactive: ${(error as Error).message}`);
      }
    }
    return session;
  }

  get model(): VisionLanguageModel {
    return this.encoder.model;
  }

  get store(): ChunkStore {
    return this.memory.store;
  }

  get index(): StreamIndex {
    return this.memory.index;
  }

  /** What the last open found (index reconciled or rebuilt, unindexable rows, time taken). */
  get openReport(): MemoryOpenReport {
    return this.memory.openReport;
  }

  /**
   * Encodes one frame at stream time t (seconds, non-decreasing) and commits it to memory. `frame`
   * is the RGB frame `image` was made from: when the memory keeps an archive, its still (WebP) is
   * encoded alongside the model's work and stored with the chunk.
   */
  addFrame(image: PreprocessedImage, t: number, wallTime = Date.now(), frame?: RgbImage): Promise<FrameChunk> {
    return this.serialize(async () => {
      this.checkFrameTime(t);
      // A source faster than demotion waits for it rather than make retention delete what it would shrink.
      await this.memory.demotionRoom();
      // On libvips' threads while the model encodes; awaited (and its error seen) either way.
      const still = frame && this.memory.keepsStills ? encodeStill(frame) : undefined;
      let encoded;
      try {
        encoded = await this.encoder.encodeFrame(image, t, this.memory.window, wallTime);
      } finally {
        await still?.catch(() => undefined);
      }
      const { chunk, phases } = encoded;
      if (still) chunk.still = await still;
      for (const [phase, ms] of Object.entries(phases)) this.addPhase(phase, ms);
      const writeStarted = performance.now();
      const numbered = this.memory.append(chunk);
      this.addPhase('storeWriteMs', performance.now() - writeStarted);
      this.framesEncoded++;
      if (this.watches.size > 0) {
        // Never throws; the checks it asks for queue behind this frame.
        const watchStarted = performance.now();
        this.watches.onFrame(numbered);
        this.addPhase('watchPrefilterMs', performance.now() - watchStarted);
      }
      // The reference of the next gate check: this frame, when checkGate() looked at it.
      this.gate.accept(t);
      return numbered;
    });
  }

  /**
   * Frame gating, before any model work: whether the decoded frame at stream time t differs enough
   * from the last encoded frame to be encoded (addFrame), or may be turned away (skipFrame). Cheap
   * (a 64x64 luminance thumbnail, ~1 ms for 512x512); changes nothing the stream remembers.
   */
  checkGate(frame: RgbImage, t: number): GateVerdict {
    return this.gate.check(frame, t);
  }

  /**
   * A frame the gate turned away at stream time t: never encoded; the newest chunk's span is
   * extended to t instead (StreamMemory.extendLast), and it counts in stats().framesGated.
   */
  skipFrame(t: number): Promise<void> {
    return this.serialize(() => {
      this.checkFrameTime(t);
      this.memory.extendLast(t);
      this.framesGated++;
      return Promise.resolve();
    });
  }

  /**
   * Commits a frame chunk encoded elsewhere (an import, or a benchmark fast-forwarding stream time)
   * as the next frame, through the same write-through path as addFrame, without a model call. Its
   * times are not counted in stats().meanPhaseMs, which describe encoded frames.
   */
  addEncodedChunk(chunk: UnnumberedChunk): Promise<FrameChunk> {
    return this.serialize(() => Promise.resolve(this.memory.append(chunk)));
  }

  /**
   * Imports a chunk of old history straight into the archive tier (StreamMemory.appendArchived):
   * its representatives and still (keys and values are not stored and may be empty). Only before
   * the stream's first frame; the way to bring in, or fast-forward, history older than the live part.
   */
  addArchivedChunk(chunk: UnnumberedChunk): Promise<FrameChunk> {
    return this.serialize(() => this.memory.appendArchived(chunk));
  }

  /** addArchivedChunk for consecutive chunks, their stills coded together (StreamMemory.appendArchivedRun). */
  addArchivedChunks(chunks: readonly UnnumberedChunk[]): Promise<FrameChunk[]> {
    return this.serialize(() => this.memory.appendArchivedRun(chunks));
  }

  private checkFrameTime(t: number): void {
    if (!Number.isFinite(t) || t < 0) throw new VigilError('BAD_INPUT', `frame time must be a finite number >= 0, got ${t}`);
    const last = this.memory.lastFrameTime;
    if (last !== null && t < last) throw new VigilError('BAD_INPUT', `frame time ${t} is before the previous frame (${last})`);
  }

  /** Answers a question from this stream's memory (rekv by default; baselines by `mode`). */
  ask(options: AskOptions): Promise<SessionAnswer> {
    const mode = options.mode ?? 'rekv';
    if (!ANSWER_MODES.includes(mode)) throw new VigilError('BAD_INPUT', `unknown mode '${String(mode)}' (${ANSWER_MODES.join(', ')})`);
    const r = options.retrieve ?? LIMITS.r.default;
    return this.serialize(async () => {
      // A question sees every frame encoded before it: wait for their manifest commits (bounded by
      // the fsync policy's interval) so they are in the index. A frame a full disk kept out is the
      // ingest's to hear of (it pauses); the question answers from what is stored.
      await this.memory.settle({ diskFull: false });
      const horizon = this.memory.horizon();
      const coverage = options.timeRange ? memoryCoverage(horizon, options.timeRange, this.store.gaps({ from: options.timeRange.start, to: options.timeRange.end })) : null;
      // Memory holds nothing of the asked time: say so rather than let the model guess from other frames.
      if (coverage?.outOfMemory) return outOfMemoryAnswer(mode, horizon, coverage, options.onText);
      const base = { ...options, retrieve: r };
      const recall = this.archiveRecall(options);
      const memory = mode === 'rekv' ? recall : this.questionMemory(options.timeRange);
      const candidates = () => this.memory.chunkTimes(options.timeRange);
      let answer: QuestionAnswer;
      switch (mode) {
        case 'rekv':
          answer = await answerQuestion(this.encoder, memory, base);
          break;
        case 'window':
          answer = await answerQuestion(this.encoder, memory, { ...base, retrieve: 0, includeWindow: true });
          break;
        case 'full':
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: true, selection: candidates().map((c) => c.chunkId) });
          break;
        case 'uniform':
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: false, selection: uniform(candidates(), r) });
          break;
        case 'oracle': {
          if (!options.oracleChunkIds && !options.oracleTimes) throw new VigilError('BAD_INPUT', 'mode oracle needs oracleTimes or oracleChunkIds');
          const ids = options.oracleChunkIds ?? oracle(this.memory.chunkTimes(), options.oracleTimes!);
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: false, selection: ids });
          break;
        }
      }
      return { ...answer, mode, horizon, coverage, archive: { ...recall.report } };
    });
  }

  /** rekv's memory for one question: archived chunks it retrieves are re-encoded (archiveRecall.ts). */
  private archiveRecall(options: AskOptions): ArchiveRecall {
    const maxReencode = options.maxReencode ?? DEFAULT_MAX_REENCODE;
    if (!Number.isInteger(maxReencode) || maxReencode < 0) throw new VigilError('BAD_INPUT', `maxReencode must be an integer >= 0, got ${maxReencode}`);
    const memory = this.memory;
    return new ArchiveRecall(
      {
        store: memory.store,
        encoder: this.encoder,
        memory: this.questionMemory(options.timeRange),
        selectIn: (queries, r, exclude, range) => memory.select(queries, r, exclude, range),
        loadWith: (selection, includeWindow, recalled) => memory.load(selection, includeWindow, recalled),
        range: options.timeRange,
        frameSide: modelFrameSide(this),
      },
      { maxReencode, ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
    );
  }

  /**
   * Adds a watch (a standing question, watches/types.ts): validated (BAD_INPUT: empty or long
   * question, unknown trigger, malformed pattern, more than MAX_WATCHES), its question turned into
   * per-layer queries once (pass 1 over the current window), persisted with the stream.
   */
  addWatch(spec: unknown): Promise<Watch> {
    let watch: Watch;
    try {
      watch = parseWatchSpec(spec);
      this.checkWatchRoom();
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.serialize(async () => {
      this.checkWatchRoom();
      const { queries } = await questionQueries(this.encoder, this.memory.window, watch.question);
      this.watches.activate(watch, queries, true);
      return watch;
    });
  }

  private checkWatchRoom(): void {
    if (this.watches.size >= MAX_WATCHES) throw new VigilError('BAD_INPUT', `a stream has at most ${MAX_WATCHES} watches`);
  }

  /** Removes a watch (its alerts are kept); false when there is none with that id. */
  removeWatch(id: string): boolean {
    return this.watches.remove(id);
  }

  /** Both kinds (health watches are evaluated by the service's manager: watches/healthMonitor.ts). */
  listWatches(): AnyWatch[] {
    return this.watches.list();
  }

  /** Alerts raised by this stream's watches, oldest first; `since`: wall time in ms since the epoch. */
  alerts(filter: { since?: number; watchId?: string } = {}): Alert[] {
    return this.watches.alerts(filter);
  }

  /**
   * A watch's model check: the question over the current window ([prefix | sinks | window], nothing
   * retrieved, window mode) with a short answer, queued like any other operation of the stream.
   */
  private watchCheck(question: string, started: () => void): Promise<{ answer: string; checkMs: number }> {
    // The model gate first, then this stream's queue (the other order would deadlock: a frame job
    // holding the gate waits on the queue, where the check would wait for the gate).
    return this.runModelTask(() =>
      this.serialize(async () => {
        started();
        const answer = await answerQuestion(this.encoder, this.questionMemory(undefined), { question, retrieve: 0, includeWindow: true, maxNewTokens: CHECK_MAX_NEW_TOKENS });
        return { answer: answer.text.trim(), checkMs: answer.totalMs };
      }),
    );
  }

  /** How far back this stream's memory reaches (StreamMemory.horizon). */
  horizon(): MemoryHorizon {
    return this.memory.horizon();
  }

  private addPhase(phase: string, ms: number): void {
    this.phaseTotals[phase] = (this.phaseTotals[phase] ?? 0) + ms;
  }

  stats(): StreamSessionStats {
    const frames = Math.max(1, this.framesEncoded);
    return {
      framesEncoded: this.framesEncoded,
      framesGated: this.framesGated,
      meanPhaseMs: Object.fromEntries(Object.entries(this.phaseTotals).map(([phase, total]) => [phase, total / frames])),
      phaseTotalsMs: { ...this.phaseTotals },
      ...this.memory.stats(),
    };
  }

  /**
   * Commits what is pending, saves the index, disposes the store. Idempotent: every call returns
   * the same promise. Questions and frames after it fail with DISPOSED.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.queue
      .then(
        () => this.memory.dispose(),
        () => this.memory.dispose(),
      )
      .finally(() => this.leaveModel());
    return this.disposing;
  }

  get disposed(): boolean {
    return this.disposing !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /** Waits until every encoded frame is committed and indexed. */
  flush(): Promise<void> {
    return this.memory.flush();
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new VigilError('DISPOSED', 'this stream session has been disposed'));
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The memory as the question path sees it, with the question's time range applied to retrieval. */
  private questionMemory(timeRange: TimeRange | undefined): QuestionMemory {
    const memory = this.memory;
    return {
      window: memory.window,
      select: (queries, r, exclude) => memory.select(queries, r, exclude, timeRange),
      fixed: (ids) => memory.fixed(ids),
      load: (selection, includeWindow) => memory.load(selection, includeWindow),
    };
  }
}

/** The answer to a question about a time memory does not hold: the coverage note, made without any model call. */
function outOfMemoryAnswer(mode: AnswerMode, horizon: MemoryHorizon, coverage: MemoryCoverage, onText?: (piece: string) => void): SessionAnswer {
  const text = coverage.note!;
  onText?.(text);
  return {
    mode,
    horizon,
    coverage,
    text,
    tokenIds: [],
    stopReason: 'eos',
    promptTokens: 0,
    prefillMs: 0,
    decodeMs: 0,
    decodeTokensPerSecond: 0,
    evidence: [],
    skipped: [],
    layerChunkIds: [],
    queryKind: 'none',
    contextTokens: 0,
    retrievalMs: 0,
    phases: { pass1Ms: 0, searchMs: 0, chunkLoadMs: 0, assembleMs: 0 },
    loadMs: 0,
    ttftMs: 0,
    totalMs: 0,
    archive: { retrieved: 0, reencoded: 0, skipped: 0, reencodeMs: 0 },
  };
}
