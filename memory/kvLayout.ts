/**
 * Per-layer KV arrays in the decoder's batch-1 layout [heads, tokens, headDim] (ONNX [1, KV, T, D]).
 * Copies between token ranges are per head, because tokens are the middle axis.
 */

/** Tokens [start, start+count) of a [heads, total, headDim] array, as a new [heads, count, headDim] array. */
export function sliceTokens<T extends Float32Array | Uint16Array>(src: T, heads: number, total: number, headDim: number, start: number, count: number): T {
  if (start < 0 || count < 0 || start + count > total) throw new RangeError(`sliceTokens: [${start}, ${start + count}) outside 0..${total}`);
  // Float16 KV travels as Uint16Array bits: slicing those first converts only the slice.
  const out = (src instanceof Uint16Array ? new Uint16Array(heads * count * headDim) : new Float32Array(heads * count * headDim)) as T;
  for (let h = 0; h < heads; h++) {
    const from = (h * total + start) * headDim;
    out.set(src.subarray(from, from + count * headDim), h * count * headDim);
  }
  return out;
}

/** Writes a [heads, count, headDim] block into tokens [offset, offset+count) of a [heads, total, headDim] array. */
export function writeTokens(dst: Float32Array, heads: number, total: number, headDim: number, offset: number, block: Float32Array, count: number): void {
  if (offset < 0 || offset + count > total) throw new RangeError(`writeTokens: [${offset}, ${offset + count}) outside 0..${total}`);
  if (block.length !== heads * count * headDim) throw new RangeError(`writeTokens: block has ${block.length} values, expected ${heads * count * headDim}`);
  for (let h = 0; h < heads; h++) {
    dst.set(block.subarray(h * count * headDim, (h + 1) * count * headDim), (h * total + offset) * headDim);
  }
}
