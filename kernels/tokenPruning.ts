// Token pruning of a frame chunk's KV, a candidate memory tier (issue 15): keep k of a frame's image
// tokens, chosen by a score per token, and drop the rest. Tensors are [heads, tokens, headDim] (one
// layer of a chunk). The kept tokens keep their order and are packed together: keys are stored
// pre-RoPE, so assembly rotates them to whatever compact positions they land on.

/** Per token, the mean over heads of the L2 norm of its [headDim] row: a key-norm or value-norm score. */
export function tokenNorms(src: Float32Array, heads: number, tokens: number, headDim: number, out?: Float64Array): Float64Array {
  checkDims('tokenNorms', heads, tokens, headDim);
  if (src.length < heads * tokens * headDim) throw new RangeError(`tokenNorms: src length ${src.length} < ${heads}*${tokens}*${headDim}`);
  const dst = out ?? new Float64Array(tokens);
  if (dst.length < tokens) throw new RangeError(`tokenNorms: out length ${dst.length} < ${tokens}`);
  dst.fill(0, 0, tokens);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < tokens; t++) {
      const base = (h * tokens + t) * headDim;
      let sum = 0;
      for (let d = 0; d < headDim; d++) sum += src[base + d]! * src[base + d]!;
      dst[t] = dst[t]! + Math.sqrt(sum) / heads;
    }
  }
  return dst;
}

/**
 * The attention each of a block's S new tokens received while the block was prefilled: token j's
 * score is the mean, over query heads and over the block's queries that can see it (causal: query
 * i >= j), of softmax_i(q_i . k / sqrt(headDim)) at key j, the softmax taken over the whole context
 * (past + block). This is what the decoder computed at the frame's prefill, recomputed from the
 * query taps and `present` (the graph does not output attention weights).
 *
 * queries: post-RoPE [numHeads, S, headDim]; keys: post-RoPE [numKvHeads, past + S, headDim] (the
 * decoder's present); query head h reads KV head floor(h / (numHeads / numKvHeads)) (GQA).
 */
export function attentionReceived(
  queries: Float32Array,
  keys: Float32Array,
  numHeads: number,
  numKvHeads: number,
  past: number,
  blockTokens: number,
  headDim: number,
  out?: Float64Array,
): Float64Array {
  checkDims('attentionReceived', numHeads, blockTokens, headDim);
  if (!Number.isInteger(numKvHeads) || numKvHeads < 1 || numHeads % numKvHeads !== 0) throw new RangeError(`attentionReceived: ${numHeads} query heads do not group over ${numKvHeads} KV heads`);
  if (!Number.isInteger(past) || past < 0) throw new RangeError(`attentionReceived: past must be an integer >= 0, got ${past}`);
  const total = past + blockTokens;
  if (queries.length < numHeads * blockTokens * headDim) throw new RangeError(`attentionReceived: queries length ${queries.length} < ${numHeads}*${blockTokens}*${headDim}`);
  if (keys.length < numKvHeads * total * headDim) throw new RangeError(`attentionReceived: keys length ${keys.length} < ${numKvHeads}*${total}*${headDim}`);
  const dst = out ?? new Float64Array(blockTokens);
  if (dst.length < blockTokens) throw new RangeError(`attentionReceived: out length ${dst.length} < ${blockTokens}`);
  dst.fill(0, 0, blockTokens);
  const groupSize = numHeads / numKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(total);
  for (let h = 0; h < numHeads; h++) {
    const kvBase = Math.floor(h / groupSize) * total * headDim;
    for (let i = 0; i < blockTokens; i++) {
      const q = (h * blockTokens + i) * headDim;
      const visible = past + i + 1;
      let max = -Infinity;
      for (let j = 0; j < visible; j++) {
        const k = kvBase + j * headDim;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += queries[q + d]! * keys[k + d]!;
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let z = 0;
      for (let j = 0; j < visible; j++) z += Math.exp(scores[j]! - max);
      for (let j = past; j < visible; j++) dst[j - past] = dst[j - past]! + Math.exp(scores[j]! - max) / z;
    }
  }
  // Token j is seen by blockTokens - j queries of each head.
  for (let j = 0; j < blockTokens; j++) dst[j] = dst[j]! / (numHeads * (blockTokens - j));
  return dst;
}

/**
 * Indices of the tokens to keep, ascending: every token that is not a candidate, plus the k
 * candidates with the highest scores (ties: the earlier token). Throws for a NaN score of a
 * candidate or k outside 0..candidates.
 */
export function keepTopTokens(scores: ArrayLike<number>, candidates: ArrayLike<boolean>, k: number): Int32Array {
  const tokens = scores.length;
  if (candidates.length !== tokens) throw new RangeError(`keepTopTokens: ${candidates.length} candidate flags for ${tokens} scores`);
  const pool: number[] = [];
  for (let t = 0; t < tokens; t++) {
    if (!candidates[t]) continue;
    if (Number.isNaN(scores[t])) throw new RangeError(`keepTopTokens: score of token ${t} is NaN`);
    pool.push(t);
  }
  if (!Number.isInteger(k) || k < 0 || k > pool.length) throw new RangeError(`keepTopTokens: k must be an integer in 0..${pool.length}, got ${k}`);
  // Highest score first, the earlier token on ties; then the first k.
  pool.sort((a, b) => scores[b]! - scores[a]! || a - b);
  const keep = new Uint8Array(tokens);
  for (let t = 0; t < tokens; t++) if (!candidates[t]) keep[t] = 1;
  for (let i = 0; i < k; i++) keep[pool[i]!] = 1;
  const kept = new Int32Array(tokens - pool.length + k);
  let n = 0;
  for (let t = 0; t < tokens; t++) if (keep[t]) kept[n++] = t;
  return kept;
}

/** The given tokens (ascending or not: in the given order) of a [heads, tokens, headDim] tensor, as [heads, indices.length, headDim]. */
export function gatherTokens(src: Float32Array, heads: number, tokens: number, headDim: number, indices: ArrayLike<number>, out?: Float32Array): Float32Array {
  checkDims('gatherTokens', heads, tokens, headDim);
  if (src.length < heads * tokens * headDim) throw new RangeError(`gatherTokens: src length ${src.length} < ${heads}*${tokens}*${headDim}`);
  const kept = indices.length;
  const dst = out ?? new Float32Array(heads * kept * headDim);
  if (dst.length < heads * kept * headDim) throw new RangeError(`gatherTokens: out length ${dst.length} < ${heads * kept * headDim}`);
  for (let i = 0; i < kept; i++) {
    const t = indices[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= tokens) throw new RangeError(`gatherTokens: index ${t} is not a token of ${tokens}`);
  }
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < kept; i++) {
      const from = (h * tokens + indices[i]!) * headDim;
      dst.set(src.subarray(from, from + headDim), (h * kept + i) * headDim);
    }
  }
  return dst;
}

function checkDims(name: string, heads: number, tokens: number, headDim: number): void {
  for (const [k, v] of [['heads', heads], ['tokens', tokens], ['headDim', headDim]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name}: ${k} must be a positive integer, got ${v}`);
  }
}
