// Retrieval query in KV-group form. With grouped-query attention, query head h reads KV head
// g = floor(h / (numHeads / numKvHeads)) (transformers' repeat_kv order). The reference scores a
// chunk by the dot of the mean query (all heads) with the GQA-expanded mean key; since the expanded
// key repeats k_g for every h in group g, that dot equals sum_g (sum_{h in g} qbar_h) . k_g. Summing
// the heads first lets the index store numKvHeads*headDim values per chunk instead of numHeads*headDim.

/**
 * [tokens, numHeads * headDim] query rows (heads concatenated per token) -> [numKvHeads * headDim]:
 * the mean over tokens, then per KV group the sum of its query heads. Sums run in float64 and are
 * divided once, so the result does not depend on the token count's rounding.
 */
export function groupQueryHeads(
  src: Float32Array,
  tokens: number,
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  out?: Float32Array,
): Float32Array {
  if (!Number.isInteger(tokens) || tokens < 1) throw new RangeError(`groupQueryHeads: tokens must be an integer >= 1, got ${tokens}`);
  if (!Number.isInteger(headDim) || headDim < 1) throw new RangeError(`groupQueryHeads: headDim must be an integer >= 1, got ${headDim}`);
  if (!Number.isInteger(numKvHeads) || numKvHeads < 1 || !Number.isInteger(numHeads) || numHeads % numKvHeads !== 0) {
    throw new RangeError(`groupQueryHeads: numHeads ${numHeads} must be a positive multiple of numKvHeads ${numKvHeads}`);
  }
  const rowLength = numHeads * headDim;
  if (src.length !== tokens * rowLength) {
    throw new RangeError(`groupQueryHeads: src length ${src.length} != ${tokens}*${numHeads}*${headDim}`);
  }
  const size = numKvHeads * headDim;
  const dst = out ?? new Float32Array(size);
  if (dst.length < size) throw new RangeError(`groupQueryHeads: out length ${dst.length} < ${size}`);
  const groupSize = numHeads / numKvHeads;
  const acc = new Float64Array(size);
  for (let t = 0; t < tokens; t++) {
    const row = t * rowLength;
    for (let h = 0; h < numHeads; h++) {
      const from = row + h * headDim;
      // Heads of one group are consecutive, so the group's slot is (h / groupSize) rounded down.
      const to = Math.floor(h / groupSize) * headDim;
      for (let d = 0; d < headDim; d++) acc[to + d]! += src[from + d]!;
    }
  }
  for (let i = 0; i < size; i++) dst[i] = acc[i]! / tokens;
  return dst;
}
