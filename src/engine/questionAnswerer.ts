import { meanOverTokens } from '../../kernels/pool.js';
import { rotateHeads } from '../../kernels/rope.js';
import { assembleLayeredContext, type KvGeometry, type LayeredContext, type LayerSlice, layerSlice } from '../../memory/contextAssembler.js';
import type { ChunkLayers } from '../../memory/store/index.js';
import { sliceTokens } from '../../memory/kvLayout.js';
import { retrievalQueries } from '../../retrieval/queryVectors.js';
import type { KvCache } from '../model/kvCache.js';
import { toFloat32 } from '../model/tensors.js';
import { VigilError } from '../../common/errors.js';
import { MAX_QUESTION_CHARS } from '../../common/settings.js';
import { sharedBufferPool } from '../model/bufferPool.js';
import { generate, type GenerationResult, type SamplingOptions } from '../model/generate.js';
import { PresentBuffers } from '../model/presentBuffers.js';
import { toKvCache } from './kvContext.js';
import type { StreamEncoder } from './streamEncoder.js';

/** Longer questions are refused: they would crowd the retrieved frames out of the context (common/settings.ts). */
export { MAX_QUESTION_CHARS };

/** Per-layer chunk choice for one question: the same count on every layer. */
export interface LayerRetrieval {
  /** chunkIds[layer] = retrieved chunk ids (any order). */
  chunkIds: number[][];
  /** scores[layer][i] = score of chunkIds[layer][i]. */
  scores: number[][];
}

/** Where retrieval and chunk payloads come from; the stream session provides both. */
export interface QuestionMemory {
  /**
   * Chooses r chunks per layer, never one in `exclude`, from per-layer query vectors in the chunk
   * representatives' form ([numKvHeads * headDim]: mean pre-RoPE query, heads summed per KV group).
   */
  retrieve(queries: Float32Array[], r: number, exclude: ReadonlySet<number>): Promise<LayerRetrieval>;
  /**
   * Loads the given layers of chunks (chunk id -> layer indices): RAM first, then disk, where only
   * those layers are read. The layers are valid until release().
   */
  loadLayers(wanted: ReadonlyMap<number, readonly number[]>): Promise<LoadedLayers>;
}

export interface LoadedLayers {
  chunks: ReadonlyMap<number, ChunkLayers>;
  release(): void;
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

export interface Evidence {
  chunkId: number;
  tStart: number;
  tEnd: number;
  /** Layers that retrieved this chunk, and the mean score over them. */
  layers: number;
  meanScore: number;
}

export interface QuestionAnswer extends GenerationResult {
  evidence: Evidence[];
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
  const sinks = [...encoder.window.sinkChunks];
  const window = [...encoder.window.windowChunks];
  const numLayers = encoder.geometry.numLayers;

  let retrieval: LayerRetrieval = { chunkIds: Array.from({ length: numLayers }, () => []), scores: [] };
  let queryKind: QuestionAnswer['queryKind'] = 'none';
  let pass1Ms = 0;
  if (options.selection) {
    const inContext = new Set([...sinks, ...(options.includeWindow ? window : [])].map((c) => c.chunkId));
    const ids = [...new Set(options.selection)].filter((id) => !inContext.has(id));
    retrieval = { chunkIds: Array.from({ length: numLayers }, () => ids), scores: Array.from({ length: numLayers }, () => ids.map(() => 0)) };
  } else if (options.retrieve > 0) {
    const rawIds = model.tokenizer.encode(options.question);
    // Pass 1 attends to exactly what the next frame would: the encoder's laid-out [prefix | sinks | window].
    const { context: pass1Context, past: pass1Past } = encoder.currentContext();
    const info = model.decoder.info;
    queryKind = info.queryTapNames ? 'taps' : 'keys';
    // Its present (past + question, tens of MB) goes into pooled memory, needed only for the key fallback.
    const presents = new PresentBuffers(info, pass1Context.length + rawIds.length, sharedBufferPool, 1);
    let queries: Float32Array[];
    try {
      const pass1 = await model.decoder.step({
        inputsEmbeds: await model.embed(rawIds),
        past: pass1Past,
        logits: 'none',
        queries: queryKind === 'taps',
        presentInto: presents.take(pass1Context.length + rawIds.length),
      });
      queries =
        queryKind === 'taps'
          ? retrievalQueries(pass1.queries!, { numHeads: info.numHeads, numKvHeads: info.numKvHeads, headDim: info.headDim })
          : questionKeyMeans(pass1.present, pass1Context.length, rawIds.length, encoder.geometry);
    } finally {
      presents.release();
    }
    const exclude = new Set(sinks.map((c) => c.chunkId));
    if (options.includeWindow) for (const c of window) exclude.add(c.chunkId);
    pass1Ms = performance.now() - started;
    retrieval = await memory.retrieve(queries, options.retrieve, exclude);
  }

  const retrievalMs = performance.now() - started;
  const wanted = new Map<number, number[]>();
  retrieval.chunkIds.forEach((ids, layer) => {
    for (const id of ids) {
      const layers = wanted.get(id) ?? [];
      if (layers.at(-1) !== layer) layers.push(layer);
      wanted.set(id, layers);
    }
  });
  const loaded = await memory.loadLayers(wanted);
  const chunkLoadMs = performance.now() - started - retrievalMs;
  // The per-layer context (~200 MiB at r = 64 and smolvlm2-256m geometry) lives in pooled memory
  // for the length of the answer; the layers read for it go back to the pool once it is built.
  let contextBuffer: ArrayBuffer | undefined;
  try {
    let context: LayeredContext;
    try {
      const perLayer = retrieval.chunkIds.map((ids, layer) => [
        ...sinks.map((c) => layerSlice(c, layer)),
        ...ids.map((id): LayerSlice => {
          const chunk = loaded.chunks.get(id);
          const data = chunk?.layers.get(layer);
          if (!chunk || !data) throw new VigilError('STORE_IO', `chunk ${id} layer ${layer} could not be loaded`);
          return { chunkId: id, tStart: chunk.tStart, tokenCount: chunk.tokenCount, key: data.key, value: data.value };
        }),
        ...(options.includeWindow ? window.map((c) => layerSlice(c, layer)) : []),
      ]);
      const { numKvHeads, headDim } = encoder.geometry;
      const contextFloats = 2 * numLayers * numKvHeads * headDim * (encoder.prefix.tokenCount + perLayer[0]!.reduce((n, c) => n + c.tokenCount, 0));
      const buffer = sharedBufferPool.take(contextFloats * 4);
      contextBuffer = buffer;
      let used = 0;
      context = assembleLayeredContext(encoder.prefix, perLayer, encoder.geometry, (floats) => {
        const view = new Float32Array(buffer, used * 4, floats);
        used += floats;
        return view;
      });
    } finally {
      loaded.release();
    }
    const past = toKvCache(context, model.decoder.info);
    const loadMs = performance.now() - started - retrievalMs;
    const promptIds = model.tokenizer.encode(encoder.format.question(options.question));
    const result = await generate(model, { inputsEmbeds: await model.embed(promptIds), past }, options);
    return {
      ...result,
      evidence: collectEvidence(retrieval, loaded.chunks),
      layerChunkIds: retrieval.chunkIds,
      queryKind,
      contextTokens: context.length,
      retrievalMs,
      loadMs,
      phases: { pass1Ms, searchMs: retrievalMs - pass1Ms, chunkLoadMs, assembleMs: loadMs - chunkLoadMs },
      ttftMs: retrievalMs + loadMs + result.prefillMs,
      totalMs: performance.now() - started,
    };
  } finally {
    if (contextBuffer) sharedBufferPool.give(contextBuffer);
  }
}

/** Fallback query: the mean pre-RoPE key of the question tokens per layer (already in KV-group form). */
function questionKeyMeans(present: KvCache, start: number, count: number, geo: KvGeometry): Float32Array[] {
  const { numKvHeads: heads, headDim } = geo;
  const positions = Array.from({ length: count }, (_, i) => start + i);
  return present.layers.map((layer) => {
    const keys = sliceTokens(toFloat32(layer.key), heads, present.length, headDim, start, count);
    rotateHeads(keys, heads, count, headDim, positions, geo.invFreq, -1, keys);
    return meanOverTokens(keys, heads, count, headDim);
  });
}

function collectEvidence(retrieval: LayerRetrieval, chunks: ReadonlyMap<number, Pick<ChunkLayers, 'tStart' | 'tEnd'>>): Evidence[] {
  const byId = new Map<number, { layers: number; total: number }>();
  retrieval.chunkIds.forEach((ids, layer) =>
    ids.forEach((id, i) => {
      const entry = byId.get(id) ?? { layers: 0, total: 0 };
      entry.layers += 1;
      entry.total += retrieval.scores[layer]?.[i] ?? 0;
      byId.set(id, entry);
    }),
  );
  return [...byId.entries()]
    .map(([chunkId, { layers, total }]) => {
      const chunk = chunks.get(chunkId)!;
      return { chunkId, tStart: chunk.tStart, tEnd: chunk.tEnd, layers, meanScore: total / layers };
    })
    .sort((a, b) => a.tStart - b.tStart || a.chunkId - b.chunkId);
}
