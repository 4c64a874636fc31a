import type { ContextWindow } from '../../memory/contextWindow.js';
import { meanKeys, preRopeKeys } from '../../memory/kvSurgery.js';
import { trimHeap } from '../../kernels/native.js';
import { retrievalQueries } from '../../retrieval/queryVectors.js';
import type { KvCache } from '../model/kvCache.js';
import { VigilError } from '../../common/errors.js';
import { MAX_QUESTION_CHARS } from '../../common/settings.js';
import { sharedBufferPool } from '../model/bufferPool.js';
import { generate, type GenerationResult, type SamplingOptions } from '../model/generate.js';
import { PresentBuffers } from '../model/presentBuffers.js';
import { layerArrays, toKvCache } from './kvContext.js';
import type { Evidence, LoadedContext, Selection, SkippedChunk } from './contextLoader.js';
import type { StreamEncoder } from './streamEncoder.js';

export type { Evidence, SkippedChunk } from './contextLoader.js';

/** Longer questions are refused: they would crowd the retrieved frames out of the context (common/settings.ts). */
export { MAX_QUESTION_CHARS };

/** What a question reads from: the stream's memory (StreamMemory), or a test's RAM stand-in. */
export interface QuestionMemory {
  /** [prefix | sinks | window]: pass 1 attends to it, pass 2 keeps its sinks (and window). */
  readonly window: ContextWindow;
  /**
   * Chooses r chunks per layer, never one in `exclude`, from per-layer query vectors in the chunk
   * representatives' form ([numKvHeads * headDim]: mean pre-RoPE query, heads summed per KV group).
   */
  select(queries: Float32Array[], r: number, exclude: ReadonlySet<number>): Promise<Selection>;
  /** The given chunks on every layer (baselines), without retrieval. */
  fixed(chunkIds: readonly number[]): Selection;
  /** Reads and assembles the selection (damaged chunks left out and reported); dispose() when done. */
  load(selection: Selection, includeWindow: boolean): Promise<LoadedContext>;
}

export interface QuestionOptions extends SamplingOptions {
  question: string;
  /** Chunks retrieved per layer (ReKV: 64); ignored when `selection` is given. */
  retrieve: number;
  /** A fixed chunk set for every layer instead of retrieval (baselines: full, uniform, oracle); skips pass 1. */
  selection?: readonly number[];
  /** Also keep the recent window in the answer context (ReKV leaves it out); default false. */
  includeWindow?: boolean;
  maxNewTokens: number;
  onText?: (piece: string) => void;
}

export interface QuestionAnswer extends GenerationResult {
  evidence: Evidence[];
  /** Chunks the question chose but could not read (damaged on disk): left out, the answer comes from the rest. */
  skipped: SkippedChunk[];
  /**
   * The chunks put in each layer's context besides sinks (and window): layerChunkIds[layer], as
   * retrieved (rekv) or the fixed selection (baselines). Evidence merges layers; evaluations need
   * the layer that carries the retrieval signal (V-NIAH recall, docs/EVALUATION.md).
   */
  layerChunkIds: number[][];
  /**
   * What retrieval scored with: 'taps' = the question's pre-RoPE queries (ReKV); 'keys' = the
   * question's own pre-RoPE keys, a proxy used when the decoder exposes no q projections;
   * 'none' = nothing was retrieved.
   */
  queryKind: 'taps' | 'keys' | 'none';
  contextTokens: number;
  /** Pass 1 and the index search. */
  retrievalMs: number;
  /** The same time split finer: pass 1 (question over the window), index search, chunk reads, per-layer assembly. */
  phases: { pass1Ms: number; searchMs: number; chunkLoadMs: number; assembleMs: number };
  /** Reading chunks (RAM or disk) and assembling the per-layer context. */
  loadMs: number;
  /** Time to first token: retrieval + load + prefill. */
  ttftMs: number;
  totalMs: number;
}

/**
 * ReKV's question path. Pass 1: the raw question over [prefix | sinks | window] gives each layer's
 * pre-RoPE queries; retrieval picks r chunks per layer. Pass 2: each layer's context is
 * [prefix | sink frames | its retrieved frames (| window)] in time order at compact positions; the
 * chat-formatted question is prefilled on top and the answer decoded. Nothing is written back.
 */
export async function answerQuestion(encoder: StreamEncoder, memory: QuestionMemory, options: QuestionOptions): Promise<QuestionAnswer> {
  const { model } = encoder;
  if (options.question.trim() === '') throw new VigilError('BAD_INPUT', 'the question is empty');
  if (options.question.length > MAX_QUESTION_CHARS) {
    throw new VigilError('BAD_INPUT', `the question has ${options.question.length} characters; the limit is ${MAX_QUESTION_CHARS}`);
  }
  if (!Number.isInteger(options.retrieve) || options.retrieve < 0) throw new VigilError('BAD_INPUT', `retrieve must be an integer >= 0, got ${options.retrieve}`);
  const started = performance.now();
  const { window } = memory;
  const inContext = new Set([...window.sinkChunks, ...(options.includeWindow ? window.windowChunks : [])].map((c) => c.chunkId));
  let selection: Selection;
  let queryKind: QuestionAnswer['queryKind'] = 'none';
  let pass1Ms = 0;
  if (options.selection) {
    selection = memory.fixed(options.selection.filter((id) => !inContext.has(id)));
  } else if (options.retrieve > 0) {
    const pass1 = await questionQueries(encoder, window, options.question);
    queryKind = pass1.queryKind;
    pass1Ms = performance.now() - started;
    selection = await memory.select(pass1.queries, options.retrieve, inContext);
  } else {
    selection = memory.fixed([]);
  }
  const retrievalMs = performance.now() - started;
  const loaded = await memory.load(selection, options.includeWindow ?? false);
  try {
    const past = toKvCache(loaded.context, model.decoder.info);
    const loadMs = performance.now() - started - retrievalMs;
    const promptIds = model.tokenizer.encode(encoder.format.question(options.question));
    const result = await generate(model, { inputsEmbeds: await model.embed(promptIds), past }, options);
    return {
      ...result,
      evidence: loaded.evidence,
      skipped: loaded.skipped,
      layerChunkIds: loaded.layerChunkIds,
      queryKind,
      contextTokens: loaded.context.length,
      retrievalMs,
      loadMs,
      phases: { pass1Ms, searchMs: retrievalMs - pass1Ms, chunkLoadMs: loaded.chunkLoadMs, assembleMs: loaded.assembleMs },
      ttftMs: retrievalMs + loadMs + result.prefillMs,
      totalMs: performance.now() - started,
    };
  } finally {
    loaded.dispose();
    // A question's native scratch (onnxruntime's, the re-encoded stills') is freed by now, but
    // glibc keeps it: without this, RSS stayed ~116 MiB higher after questions that re-encode.
    trimHeap();
  }
}

/**
 * Pass 1: the raw question over exactly what the next frame would attend to ([prefix | sinks |
 * window], the window's reused layout) gives each layer's retrieval query: the pre-RoPE queries
 * from the q-projection taps (ReKV), else the question's own mean pre-RoPE key (a proxy).
 */
export async function questionQueries(encoder: StreamEncoder, window: ContextWindow, question: string): Promise<{ queries: Float32Array[]; queryKind: 'taps' | 'keys' }> {
  const { model } = encoder;
  const rawIds = model.tokenizer.encode(question);
  const context = window.layout();
  const info = model.decoder.info;
  const queryKind = info.queryTapNames ? 'taps' : 'keys';
  const inputsEmbeds = await model.embed(rawIds);
  const past = toKvCache(context, info);
  if (queryKind === 'taps' || info.kvTaps) {
    // No `present` fetched (onnxruntime-node would copy the whole context out): the taps, or the
    // question's own rows for the key fallback.
    const pass1 = await model.decoder.stepRows({ inputsEmbeds, past, logits: 'none', queries: queryKind === 'taps', kv: queryKind === 'taps' ? 'none' : 'new' });
    const queries =
      queryKind === 'taps'
        ? retrievalQueries(pass1.queries!, { numHeads: info.numHeads, numKvHeads: info.numKvHeads, headDim: info.headDim })
        : questionKeyMeans(pass1.newRows!, 0, rawIds.length, window, context.length);
    return { queries, queryKind };
  }
  // Its present (past + question, tens of MB) goes into pooled memory: the key fallback's rows.
  const presents = new PresentBuffers(info, context.length + rawIds.length, sharedBufferPool, 1);
  try {
    const pass1 = await model.decoder.step({ inputsEmbeds, past, logits: 'none', presentInto: presents.take(context.length + rawIds.length) });
    return { queries: questionKeyMeans(pass1.present, context.length, rawIds.length, window), queryKind };
  } finally {
    presents.release();
  }
}

/** Fallback query: the mean pre-RoPE key of the question tokens per layer (already in KV-group form). */
function questionKeyMeans(present: KvCache, start: number, count: number, window: ContextWindow, firstPosition = start): Float32Array[] {
  const keys = layerArrays(present).map((layer) => preRopeKeys(layer.key, window.shape, present.length, start, count, firstPosition));
  return meanKeys(keys, window.shape, count);
}
