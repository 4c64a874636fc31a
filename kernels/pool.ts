// Mean pooling. Sums run in float64 so long token runs don't lose precision.
import { nativeKernels } from './native.js';

/**
 * Mean over tokens for each head: [heads, tokens, headDim] -> [heads * headDim]
 * (head means concatenated). Throws on tokens < 1 (the mean is undefined).
 */
export function meanOverTokens(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  out?: Float32Array,
): Float32Array {
  if (tokens < 1) throw new RangeError('meanOverTokens: tokens must be >= 1');
  if (src.length < heads * tokens * headDim) {
    throw new RangeError(`meanOverTokens: src length ${src.length} < ${heads}*${tokens}*${headDim}`);
  }
  const dst = out ?? new Float32Array(heads * headDim);
  if (dst.length < heads * headDim) throw new RangeError(`meanOverTokens: out length ${dst.length} < ${heads * headDim}`);
  const native = nativeKernels();
  if (native) {
    native.meanOverTokens(src, heads, tokens, headDim, dst);
    return dst;
  }
  const acc = new Float64Array(headDim);
  for (let h = 0; h < heads; h++) {
    acc.fill(0);
    let base = h * tokens * headDim;
    // Token rows are contiguous, so walk them in order and add into acc.
    for (let t = 0; t < tokens; t++, base += headDim) {
      for (let d = 0; d < headDim; d++) acc[d]! += src[base + d]!;
    }
    const o = h * headDim;
    for (let d = 0; d < headDim; d++) dst[o + d] = acc[d]! / tokens;
  }
  return dst;
}

/** Mean of the rows of a [rows, dim] matrix -> [dim]. Throws on rows < 1. */
export function meanRows(src: Float32Array, rows: number, dim: number, out?: Float32Array): Float32Array {
  return meanOverTokens(src, 1, rows, dim, out);
}
