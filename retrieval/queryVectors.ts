// Pass-1 query taps -> one retrieval query per layer, in the same KV-group form as the chunk
// representatives (see kernels/groupHeads.ts for why the dot products agree with the reference's
// GQA-expanded ones).
import { groupQueryHeads } from '../kernels/groupHeads.js';
import { VigilError } from '../common/errors.js';

export interface QueryHeadGeometry {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/**
 * taps[layer] = pre-RoPE queries of the S question tokens, [S, numHeads * headDim] (batch 1) ->
 * per layer [numKvHeads * headDim]: mean over the tokens, query heads summed per KV group.
 */
export function retrievalQueries(taps: readonly Float32Array[], geometry: QueryHeadGeometry): Float32Array[] {
  const { numHeads, numKvHeads, headDim } = geometry;
  if (!Number.isInteger(numHeads) || !Number.isInteger(numKvHeads) || !Number.isInteger(headDim) || numKvHeads < 1 || headDim < 1 || numHeads < 1 || numHeads % numKvHeads !== 0) {
    throw new VigilError('BAD_CONFIG', `query geometry: ${numHeads} heads must be a positive multiple of ${numKvHeads} KV heads, headDim ${headDim}`);
  }
  const row = numHeads * headDim;
  return taps.map((tap, layer) => {
    const tokens = tap.length / row;
    if (!Number.isInteger(tokens) || tokens < 1) {
      throw new VigilError('SHAPE_MISMATCH', `query tap of layer ${layer} has ${tap.length} values, not a positive multiple of ${numHeads}*${headDim}`);
    }
    return groupQueryHeads(tap, tokens, numHeads, numKvHeads, headDim);
  });
}
