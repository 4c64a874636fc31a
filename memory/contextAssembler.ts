import { rotateHeads } from '../kernels/rope.js';
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

/**
 * Lays out [prefix | chunks in time order] at compact positions 0..N-1 for every layer, rotating
 * each pre-RoPE key to its position. Every layer gets the same length (one shared attention mask).
 */
export function assembleContext(prefix: PrefixBlock, chunks: readonly FrameChunk[], geo: KvGeometry): AssembledContext {
  const ordered = [...chunks].sort((a, b) => a.tStart - b.tStart || a.chunkId - b.chunkId);
  const length = prefix.tokenCount + ordered.reduce((n, c) => n + c.tokenCount, 0);
  const { numLayers, numKvHeads: heads, headDim } = geo;
  for (const chunk of ordered) {
    if (chunk.numLayers !== numLayers || chunk.numKvHeads !== heads || chunk.headDim !== headDim) {
      throw new RangeError(`chunk ${chunk.chunkId} has geometry ${chunk.numLayers}x${chunk.numKvHeads}x${chunk.headDim}, expected ${numLayers}x${heads}x${headDim}`);
    }
  }
  const spans: AssembledContext['spans'] = [];
  let position = prefix.tokenCount;
  for (const chunk of ordered) {
    spans.push({ chunkId: chunk.chunkId, start: position, end: position + chunk.tokenCount });
    position += chunk.tokenCount;
  }
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  const prefixPositions = Array.from({ length: prefix.tokenCount }, (_, i) => i);
  for (let layer = 0; layer < numLayers; layer++) {
    const k = new Float32Array(heads * length * headDim);
    const v = new Float32Array(heads * length * headDim);
    if (prefix.tokenCount > 0) {
      writeTokens(k, heads, length, headDim, 0, rotateHeads(prefix.keys[layer]!, heads, prefix.tokenCount, headDim, prefixPositions, geo.invFreq, 1), prefix.tokenCount);
      writeTokens(v, heads, length, headDim, 0, prefix.values[layer]!, prefix.tokenCount);
    }
    ordered.forEach((chunk, i) => {
      const { start } = spans[i]!;
      const positions = Array.from({ length: chunk.tokenCount }, (_, t) => start + t);
      const rotated = rotateHeads(chunk.keys[layer]!, heads, chunk.tokenCount, headDim, positions, geo.invFreq, 1);
      writeTokens(k, heads, length, headDim, start, rotated, chunk.tokenCount);
      writeTokens(v, heads, length, headDim, start, chunk.values[layer]!, chunk.tokenCount);
    });
    keys.push(k);
    values.push(v);
  }
  return { keys, values, length, spans };
}
