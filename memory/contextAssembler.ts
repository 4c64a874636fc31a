import { rotateBlockInto } from '../kernels/rope.js';
import type { FrameChunk } from './frameChunk.js';
import { writeTokens } from './kvLayout.js';

/** The stream's text prefix (system prompt) KV: attention sinks at positions 0..tokenCount-1. */
export interface PrefixBlock {
  tokenCount: number;
  /** Per layer float32 [KV, tokenCount, D], pre-RoPE. */
  keys: Float32Array[];
  values: Float32Array[];
}

export interface KvGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** RoPE inverse frequencies of the decoder (kernels/rope ropeInvFreq). */
  invFreq: Float32Array;
}

export interface AssembledContext {
  /** Per layer float32 [KV, length, D]; keys rotated to their compact positions. */
  keys: Float32Array[];
  values: Float32Array[];
  length: number;
  /** Where each chunk landed: [start, end) compact positions, in context order. */
  spans: Array<{ chunkId: number; start: number; end: number }>;
}

export interface LayeredContext {
  /** Per layer float32 [KV, length, D]; keys rotated to their compact positions. */
  keys: Float32Array[];
  values: Float32Array[];
  length: number;
  /** Per layer, where each chunk landed: [start, end) compact positions, in time order. */
  spans: Array<Array<{ chunkId: number; start: number; end: number }>>;
}

export function checkChunkGeometry(chunk: FrameChunk, geo: KvGeometry): void {
  const { numLayers, numKvHeads: heads, headDim } = geo;
  if (chunk.numLayers !== numLayers || chunk.numKvHeads !== heads || chunk.headDim !== headDim) {
    throw new RangeError(`chunk ${chunk.chunkId} has geometry ${chunk.numLayers}x${chunk.numKvHeads}x${chunk.headDim}, expected ${numLayers}x${heads}x${headDim}`);
  }
}

export function timeOrder<T extends { tStart: number; chunkId: number }>(chunks: readonly T[]): T[] {
  return [...chunks].sort((a, b) => a.tStart - b.tStart || a.chunkId - b.chunkId);
}

/** One layer of one chunk, as per-layer assembly needs it (a chunk's layer in RAM, or read alone from disk). */
export interface LayerSlice {
  chunkId: number;
  tStart: number;
  tokenCount: number;
  /** float32 [numKvHeads, tokenCount, headDim], pre-RoPE. */
  key: Float32Array;
  value: Float32Array;
}

/** Layer `layer` of a whole chunk (views, no copy). */
export function layerSlice(chunk: FrameChunk, layer: number): LayerSlice {
  return { chunkId: chunk.chunkId, tStart: chunk.tStart, tokenCount: chunk.tokenCount, key: chunk.keys[layer]!, value: chunk.values[layer]! };
}

/**
 * Lays out [prefix | chunks in time order] at compact positions 0..N-1 for every layer, rotating
 * each pre-RoPE key to its position. Every layer gets the same length (one shared attention mask).
 */
export function assembleContext(prefix: PrefixBlock, chunks: readonly FrameChunk[], geo: KvGeometry): AssembledContext {
  for (const chunk of chunks) checkChunkGeometry(chunk, geo);
  const perLayer = Array.from({ length: geo.numLayers }, (_, layer) => chunks.map((c) => layerSlice(c, layer)));
  const layered = assembleLayeredContext(prefix, perLayer, geo);
  return { keys: layered.keys, values: layered.values, length: layered.length, spans: layered.spans[0] ?? [] };
}

/**
 * Like assembleContext, but each layer has its own chunks (ReKV's per-layer retrieval), given as
 * that layer's slices. The sets may differ in membership, never in total tokens: all layers share
 * one attention mask.
 */
export function assembleLayeredContext(
  prefix: PrefixBlock,
  slicesPerLayer: ReadonlyArray<readonly LayerSlice[]>,
  geo: KvGeometry,
  /** Where each layer's keys/values go (e.g. views of reused memory; every element is written); default fresh arrays. */
  allocate: (floats: number) => Float32Array = (floats) => new Float32Array(floats),
): LayeredContext {
  const { numLayers, numKvHeads: heads, headDim } = geo;
  if (slicesPerLayer.length !== numLayers) throw new RangeError(`${slicesPerLayer.length} chunk lists for ${numLayers} layers`);
  const ordered = slicesPerLayer.map(timeOrder);
  const lengths = ordered.map((list) => prefix.tokenCount + list.reduce((n, c) => n + c.tokenCount, 0));
  const length = lengths[0]!;
  lengths.forEach((l, layer) => {
    if (l !== length) throw new RangeError(`layer ${layer} context has ${l} tokens, layer 0 has ${length}: every layer must have the same length`);
  });
  ordered.forEach((list, layer) => {
    for (const slice of list) {
      const n = heads * slice.tokenCount * headDim;
      if (slice.key.length !== n || slice.value.length !== n) {
        throw new RangeError(`chunk ${slice.chunkId} layer ${layer} has ${slice.key.length}/${slice.value.length} key/value floats, expected ${heads}x${slice.tokenCount}x${headDim} = ${n}`);
      }
    }
  });
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  const spans: LayeredContext['spans'] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    const k = allocate(heads * length * headDim);
    const v = allocate(heads * length * headDim);
    if (prefix.tokenCount > 0) {
      rotateBlockInto(prefix.keys[layer]!, heads, prefix.tokenCount, headDim, 0, geo.invFreq, k, length, 0);
      writeTokens(v, heads, length, headDim, 0, prefix.values[layer]!, prefix.tokenCount);
    }
    const layerSpans: Array<{ chunkId: number; start: number; end: number }> = [];
    let position = prefix.tokenCount;
    for (const chunk of ordered[layer]!) {
      rotateBlockInto(chunk.key, heads, chunk.tokenCount, headDim, position, geo.invFreq, k, length, position);
      writeTokens(v, heads, length, headDim, position, chunk.value, chunk.tokenCount);
      layerSpans.push({ chunkId: chunk.chunkId, start: position, end: position + chunk.tokenCount });
      position += chunk.tokenCount;
    }
    keys.push(k);
    values.push(v);
    spans.push(layerSpans);
  }
  return { keys, values, length, spans };
}
