// Pure KV surgery on the decoder's per-layer arrays: cut a token range out of `present`, undo its
// RoPE (keys are kept pre-RoPE so a chunk can be placed anywhere later) and pool it into the
// per-layer mean key that retrieval indexes. No model, no I/O: typed arrays in, typed arrays out.
import { float16ToFloat32 } from '../kernels/fp16.js';
import { meanOverTokens } from '../kernels/pool.js';
import { rotateHeads } from '../kernels/rope.js';
import type { KvShape } from './kvShape.js';
import { sliceTokens } from './kvLayout.js';

/** One layer of a decoder's past or present: float32 values, or float16 bits (a float16 decoder). */
export interface LayerKv {
  key: Float32Array | Uint16Array;
  value: Float32Array | Uint16Array;
}

function tokensAsFloat32(src: Float32Array | Uint16Array, shape: KvShape, total: number, start: number, count: number): Float32Array {
  const { numKvHeads: heads, headDim } = shape;
  // Slicing float16 bits first converts only the slice.
  return src instanceof Uint16Array ? float16ToFloat32(sliceTokens(src, heads, total, headDim, start, count)) : sliceTokens(src, heads, total, headDim, start, count);
}

/** Keys of tokens [start, start+count) (post-RoPE at those positions in a `total`-token array), rotated back to pre-RoPE. */
export function preRopeKeys(key: Float32Array | Uint16Array, shape: KvShape, total: number, start: number, count: number, firstPosition = start): Float32Array {
  const keys = tokensAsFloat32(key, shape, total, start, count);
  const positions = Array.from({ length: count }, (_, i) => firstPosition + i);
  return rotateHeads(keys, shape.numKvHeads, count, shape.headDim, positions, shape.invFreq, -1, keys);
}

/**
 * Tokens [start, start+count) of every layer: keys un-rotated to pre-RoPE, values as they are. The
 * keys sat at positions firstPosition.. (default: their index, as in a `present`; a call's new rows
 * alone start at 0 but sit after the call's past).
 */
export function newTokensPreRope(
  layers: readonly LayerKv[],
  shape: KvShape,
  total: number,
  start: number,
  count: number,
  firstPosition = start,
): { keys: Float32Array[]; values: Float32Array[] } {
  if (layers.length !== shape.numLayers) throw new RangeError(`${layers.length} layers of KV for a ${shape.numLayers}-layer shape`);
  return {
    keys: layers.map((layer) => preRopeKeys(layer.key, shape, total, start, count, firstPosition)),
    values: layers.map((layer) => tokensAsFloat32(layer.value, shape, total, start, count)),
  };
}

/** Per layer, the mean over `tokens` tokens of [numKvHeads, tokens, headDim] keys: heads concatenated (a chunk's representative). */
export function meanKeys(keys: readonly Float32Array[], shape: KvShape, tokens: number): Float32Array[] {
  return keys.map((k) => meanOverTokens(k, shape.numKvHeads, tokens, shape.headDim));
}
