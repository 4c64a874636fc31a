import fs from 'node:fs';
import type { FrameChunk, KvStorageDtype } from '../../memory/frameChunk.js';
import { type ChunkLayers, chunkLayers, ChunkStore } from '../../memory/store/index.js';
import type { FsyncPolicy, RetentionPolicy } from '../../memory/store/types.js';
import { type ChunkTimes, oracle, StreamIndex, type TimeRange, uniform } from '../../retrieval/index.js';
import { VigilError } from '../../common/errors.js';
import { LIMITS } from '../../common/settings.js';
import type { PreprocessedImage } from '../model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { answerQuestion, type LoadedLayers, type QuestionAnswer, type QuestionMemory, type QuestionOptions } from './questionAnswerer.js';
import { sharedBufferPool } from '../model/bufferPool.js';
import { streamIndexDir, streamStoreDir } from './dataLayout.js';
import { storedChunks } from './storedChunks.js';
import { StreamEncoder } from './streamEncoder.js';

export interface StreamSessionOptions {
  /** The stream's folder: `kv/` (chunk store) and `index/` (retrieval index) live in it. */
  dir: string;
  /** First frames kept in context forever; default 1. */
  sinkFrames?: number;
  /** Recent frames kept in context; default 16. */
  windowFrames?: number;
  /** Also cap the window by tokens (e.g. ReKV's n_local); none by default. */
  windowTokens?: number;
  /** How retrieval scores chunks: 'ip' (dot product, ReKV's published numbers; default) or 'cosine' (the paper's text). */
  similarity?: 'ip' | 'cosine';
  /** Payload dtype on disk; default float32 (bit-exact). */
  storageDtype?: KvStorageDtype;
  fsync?: FsyncPolicy;
  retention?: RetentionPolicy;
  /** RAM budget of the chunk reload cache, bytes. */
  cacheBytes?: number;
  segmentBytes?: number;
  /** 'per-layer' (ReKV) or 'shared' (one chunk set for every layer). */
  retrievalMode?: 'per-layer' | 'shared';
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
}

export interface SessionAnswer extends QuestionAnswer {
  mode: AnswerMode;
}

export interface StreamSessionStats {
  framesEncoded: number;
  /** Mean milliseconds per frame and phase since open (encode phases, store write, index add). */
  meanPhaseMs: Record<string, number>;
  /** The same as totals (a caller measuring a stretch of frames takes differences). */
  phaseTotalsMs: Record<string, number>;
  nextChunkId: number;
  contextFrames: number;
  storedChunks: number;
  storedBytes: number;
  indexedChunks: number;
  lastFrameTime: number | null;
}

/**
 * One stream's memory, end to end: each frame is encoded over [prefix | sinks | window], written
 * through to the disk store (payload -> manifest) and then added to the retrieval index; questions
 * run ReKV's two passes over it. Operations are serialized (one decoder per stream). Everything
 * survives a restart: the index is reconciled with the manifest and the window refilled from disk.
 */
export class StreamSession {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pendingCommits = new Set<Promise<void>>();
  private commitError: unknown;
  private readonly phaseTotals: Record<string, number> = {};
  /** Times of every stored chunk, in id order (baselines pick from these without touching the store). */
  /** Every stored chunk's times (history-sized: replaced whole, never spread into arguments). */
  private times: ChunkTimes[] = [];
  private framesEncoded = 0;
  private lastT: number | null = null;
  private disposing: Promise<void> | null = null;
  /** Unregisters from the model (which disposes its live sessions before itself). */
  private leaveModel: () => void = () => {};

  private constructor(
    readonly encoder: StreamEncoder,
    readonly store: ChunkStore,
    private readonly indexRef: { index: StreamIndex },
    private readonly options: StreamSessionOptions,
  ) {}

  static async open(model: VisionLanguageModel, options: StreamSessionOptions): Promise<StreamSession> {
    const encoder = await StreamEncoder.create(model, {
      sinkFrames: options.sinkFrames ?? LIMITS.sinks.default,
      windowFrames: options.windowFrames ?? LIMITS.window.default,
      ...(options.windowTokens !== undefined ? { windowTokens: options.windowTokens } : {}),
    });
    const space = options.similarity ?? 'ip';
    const { numLayers, numKvHeads, headDim } = encoder.geometry;
    fs.mkdirSync(options.dir, { recursive: true });
    const indexRef: { index: StreamIndex } = { index: StreamIndex.create({ numLayers, dim: numKvHeads * headDim, space }) };
    const sessionRef: { session?: StreamSession } = {};
    const store = ChunkStore.open({
      dir: streamStoreDir(options.dir),
      geometry: { numLayers, numKvHeads, headDim },
      ...(options.storageDtype ? { dtype: options.storageDtype } : {}),
      ...(options.fsync ? { fsync: options.fsync } : {}),
      ...(options.retention ? { retention: options.retention } : {}),
      ...(options.cacheBytes !== undefined ? { cacheBytes: options.cacheBytes } : {}),
      ...(options.segmentBytes ? { segmentBytes: options.segmentBytes } : {}),
      // Retention removes manifest rows first; the index follows (it is derived data).
      onChunksRemoved: (ids) => {
        indexRef.index.removeChunks(ids);
        sessionRef.session?.forgetChunks(ids);
      },
    });
    try {
      const stored = [...storedChunks(store)].map(({ chunkId, tStart, tEnd }) => ({ chunkId, tStart, tEnd }));
      const storedIds = stored.map((c) => c.chunkId);
      indexRef.index = await loadOrRebuildIndex(store, streamIndexDir(options.dir), storedIds, numLayers, numKvHeads * headDim, space);
      const session = new StreamSession(encoder, store, indexRef, options);
      session.times = stored;
      sessionRef.session = session;
      await session.restoreWindow(storedIds);
      // The model owns its sessions: it refuses new ones once disposed, and disposes live ones first.
      session.leaveModel = model.adopt(session);
      return session;
    } catch (error) {
      await store.dispose();
      throw error;
    }
  }

  get model(): VisionLanguageModel {
    return this.encoder.model;
  }

  get index(): StreamIndex {
    return this.indexRef.index;
  }

  /** Encodes one frame at stream time t (seconds, non-decreasing) and commits it to memory. */
  addFrame(image: PreprocessedImage, t: number, wallTime = Date.now()): Promise<FrameChunk> {
    return this.serialize(async () => {
      this.checkFrameTime(t);
      this.throwCommitError();
      const { chunk, phases } = await this.encoder.encodeFrame(image, t, wallTime);
      for (const [phase, ms] of Object.entries(phases)) this.addPhase(phase, ms);
      this.commit(chunk, true);
      this.framesEncoded++;
      return chunk;
    });
  }

  /**
   * Commits a frame chunk encoded elsewhere (an import, or a benchmark fast-forwarding stream time)
   * as the next frame, through the same write-through path as addFrame, without a model call. Its
   * times are not counted in stats().meanPhaseMs, which describe encoded frames.
   */
  addEncodedChunk(chunk: Omit<FrameChunk, 'chunkId'>): Promise<FrameChunk> {
    return this.serialize(async () => {
      this.checkFrameTime(chunk.tStart);
      this.throwCommitError();
      const adopted = this.encoder.adopt(chunk).chunk;
      this.commit(adopted, false);
      return adopted;
    });
  }

  private checkFrameTime(t: number): void {
    if (!Number.isFinite(t) || t < 0) throw new VigilError('BAD_INPUT', `frame time must be a finite number >= 0, got ${t}`);
    if (this.lastT !== null && t < this.lastT) throw new VigilError('BAD_INPUT', `frame time ${t} is before the previous frame (${this.lastT})`);
  }

  /**
   * The payload is written now; the manifest row commits per the fsync policy (a group commit may
   * wait up to its interval). Only then is the chunk indexed (design.md: payload -> manifest ->
   * index), without holding up the next frame. Until then it is still in the RAM window.
   */
  private commit(chunk: FrameChunk, timed: boolean): void {
    const writeStarted = performance.now();
    // Never rejects: a failed write or index update is kept in commitError (thrown by the next
    // encode) and the promise leaves pendingCommits when it settles.
    const committed: Promise<void> = this.store
      .append(chunk)
      .then(() => {
        const indexStarted = performance.now();
        this.times.push({ chunkId: chunk.chunkId, tStart: chunk.tStart, tEnd: chunk.tEnd });
        this.index.addChunk(chunk.chunkId, chunk.tStart, chunk.tEnd, chunk.representatives);
        if (timed) this.addPhase('indexMs', performance.now() - indexStarted);
      })
      .catch((error: unknown) => {
        this.commitError ??= error;
      })
      .finally(() => this.pendingCommits.delete(committed));
    this.pendingCommits.add(committed);
    if (timed) this.addPhase('storeWriteMs', performance.now() - writeStarted);
    this.lastT = chunk.tEnd;
  }

  /** Answers a question from this stream's memory (rekv by default; baselines by `mode`). */
  ask(options: AskOptions): Promise<SessionAnswer> {
    const mode = options.mode ?? 'rekv';
    if (!ANSWER_MODES.includes(mode)) throw new VigilError('BAD_INPUT', `unknown mode '${String(mode)}' (${ANSWER_MODES.join(', ')})`);
    const r = options.retrieve ?? LIMITS.r.default;
    return this.serialize(async () => {
      // A question sees every frame encoded before it: wait for their manifest commits (bounded by
      // the fsync policy's interval) so they are in the index.
      await Promise.all([...this.pendingCommits]);
      this.throwCommitError();
      const base = { ...options, retrieve: r };
      const memory = this.questionMemory(options);
      const inRange = (c: ChunkTimes) => !options.timeRange || (c.tEnd >= options.timeRange.start && c.tStart <= options.timeRange.end);
      let answer: QuestionAnswer;
      switch (mode) {
        case 'rekv':
          answer = await answerQuestion(this.encoder, memory, base);
          break;
        case 'window':
          answer = await answerQuestion(this.encoder, memory, { ...base, retrieve: 0, includeWindow: true });
          break;
        case 'full':
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: true, selection: this.times.filter(inRange).map((c) => c.chunkId) });
          break;
        case 'uniform':
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: false, selection: uniform(this.times.filter(inRange), r) });
          break;
        case 'oracle': {
          if (!options.oracleChunkIds && !options.oracleTimes) throw new VigilError('BAD_INPUT', 'mode oracle needs oracleTimes or oracleChunkIds');
          const ids = options.oracleChunkIds ?? oracle(this.times, options.oracleTimes!);
          answer = await answerQuestion(this.encoder, memory, { ...base, includeWindow: false, selection: ids });
          break;
        }
      }
      return { ...answer, mode };
    });
  }

  /** Drops chunks removed by retention from the baselines' catalog. */
  private forgetChunks(ids: readonly number[]): void {
    const gone = new Set(ids);
    this.times = this.times.filter((c) => !gone.has(c.chunkId));
  }

  private addPhase(phase: string, ms: number): void {
    this.phaseTotals[phase] = (this.phaseTotals[phase] ?? 0) + ms;
  }

  stats(): StreamSessionStats {
    const store = this.store.stats();
    const frames = Math.max(1, this.framesEncoded);
    return {
      framesEncoded: this.framesEncoded,
      meanPhaseMs: Object.fromEntries(Object.entries(this.phaseTotals).map(([phase, total]) => [phase, total / frames])),
      phaseTotalsMs: { ...this.phaseTotals },
      nextChunkId: this.encoder.nextId,
      contextFrames: this.encoder.window.contextChunks.length,
      storedChunks: store.chunkCount,
      storedBytes: store.segmentBytes,
      indexedChunks: this.index.size,
      lastFrameTime: this.lastT ?? store.tEnd,
    };
  }

  /**
   * Commits what is pending, saves the index, disposes the store. Idempotent: every call returns
   * the same promise. Questions and frames after it fail with DISPOSED.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.queue
      .then(
        () => this.shutdown(),
        () => this.shutdown(),
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
  async flush(): Promise<void> {
    await this.store.flush();
    await Promise.all([...this.pendingCommits]);
    this.throwCommitError();
  }

  private throwCommitError(): void {
    if (this.commitError !== undefined) throw this.commitError;
  }

  private async shutdown(): Promise<void> {
    await this.store.flush();
    await Promise.all([...this.pendingCommits]);
    await this.index.save(streamIndexDir(this.options.dir));
    await this.store.dispose();
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new VigilError('DISPOSED', 'this stream session has been disposed'));
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private questionMemory(options: AskOptions): QuestionMemory {
    return {
      retrieve: async (queries, r, exclude) => {
        const result = this.index.retrieve(queries, r, {
          exclude,
          mode: this.options.retrievalMode ?? 'per-layer',
          ...(options.timeRange ? { timeRange: options.timeRange } : {}),
        });
        return { chunkIds: result.chunkIds, scores: result.scores };
      },
      loadLayers: (wanted) => this.loadLayers(wanted),
    };
  }

  /**
   * Layers of chunks by id: those still in the context window from RAM, the rest from the store,
   * which reads only the wanted layers (into pooled memory, given back by release()).
   */
  private async loadLayers(wanted: ReadonlyMap<number, readonly number[]>): Promise<LoadedLayers> {
    const inRam = new Map(this.encoder.window.contextChunks.map((c) => [c.chunkId, c]));
    const fromDisk = new Map([...wanted].filter(([id]) => !inRam.has(id)));
    const read = await this.store.readLayers(fromDisk, sharedBufferPool);
    if (read.failed.length > 0) {
      read.release();
      throw new VigilError('STORE_CORRUPT', `could not read chunks ${read.failed.map((f) => `${f.chunkId} (${f.reason})`).join(', ')} from ${this.store.dir}`);
    }
    const chunks = new Map<number, ChunkLayers>(read.chunks);
    for (const [id, layers] of wanted) {
      const chunk = inRam.get(id);
      if (chunk) chunks.set(id, chunkLayers(chunk, layers));
    }
    return { chunks, release: read.release };
  }

  private async restoreWindow(storedIds: number[]): Promise<void> {
    if (storedIds.length === 0) return;
    const { sinkFrames, windowFrames } = this.encoder.window.options;
    const sinkIds = storedIds.slice(0, sinkFrames);
    const recentIds = storedIds.slice(sinkFrames).slice(-windowFrames);
    const { chunks, failed } = await this.store.readChunks([...sinkIds, ...recentIds]);
    if (failed.length > 0) throw new VigilError('STORE_CORRUPT', `could not restore the context window of ${this.options.dir}: chunks ${failed.map((f) => f.chunkId).join(', ')} are damaged`);
    const byId = (ids: number[]) => ids.map((id) => chunks.get(id)!);
    this.encoder.restore(byId(sinkIds), byId(recentIds), storedIds.at(-1)! + 1);
    this.lastT = chunks.get(storedIds.at(-1)!)?.tEnd ?? null;
  }
}

/**
 * The saved index if it loads, reconciled with the manifest (the source of truth): ids the manifest
 * lost are removed, committed chunks the index missed (a crash before the index was saved) added.
 * Anything unreadable is rebuilt from the manifest's stored representative vectors.
 */
async function loadOrRebuildIndex(
  store: ChunkStore,
  dir: string,
  storedIds: number[],
  numLayers: number,
  dim: number,
  space: 'ip' | 'cosine',
): Promise<StreamIndex> {
  let index: StreamIndex | undefined;
  if (fs.existsSync(dir)) {
    try {
      // A saved index of another similarity (the option changed) fails this check and is rebuilt.
      index = await StreamIndex.load(dir, { numLayers, dim, space });
    } catch {
      index = undefined;
    }
  }
  if (!index) index = StreamIndex.create({ numLayers, dim, space });
  const stored = new Set(storedIds);
  const stale = index.chunkIds().filter((id) => !stored.has(id));
  if (stale.length > 0) index.removeChunks(stale);
  for (const meta of storedChunks(store)) {
    if (!index.has(meta.chunkId)) index.addChunk(meta.chunkId, meta.tStart, meta.tEnd, meta.representatives);
  }
  return index;
}
