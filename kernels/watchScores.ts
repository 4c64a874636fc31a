// The watch prefilter's hot loop: every watch's per-layer question query against one frame's
// per-layer representatives (mean pre-RoPE keys), as one dotRows call per layer.
import { dotRows } from './similarity.js';

/**
 * Packs W watches' per-layer queries ([numLayers] of [dim] each) into one [W, dim] matrix per layer,
 * the layout watchScores reads.
 */
export function packQueries(queries: readonly (readonly Float32Array[])[], numLayers: number, dim: number): Float32Array[] {
  const packed: Float32Array[] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    const matrix = new Float32Array(queries.length * dim);
    queries.forEach((q, w) => {
      const row = q[layer];
      if (!row || row.length !== dim) throw new RangeError(`packQueries: watch ${w} layer ${layer} has ${row?.length ?? 0} values, not ${dim}`);
      matrix.set(row, w * dim);
    });
    packed.push(matrix);
  }
  return packed;
}

/**
 * out[w * numLayers + layer] = dot(queries of watch w at layer, representatives[layer]), for the
 * W watches packed by packQueries. Same arithmetic as dotRows (native when compiled).
 */
export function watchScores(packed: readonly Float32Array[], watches: number, representatives: readonly Float32Array[], out: Float64Array): Float64Array {
  const numLayers = packed.length;
  if (representatives.length !== numLayers) throw new RangeError(`watchScores: ${representatives.length} representative layers, ${numLayers} query layers`);
  if (out.length < watches * numLayers) throw new RangeError(`watchScores: out length ${out.length} < ${watches}*${numLayers}`);
  const column = new Float64Array(watches);
  for (let layer = 0; layer < numLayers; layer++) {
    const rep = representatives[layer]!;
    dotRows(packed[layer]!, watches, rep.length, rep, column);
    for (let w = 0; w < watches; w++) out[w * numLayers + layer] = column[w]!;
  }
  return out;
}
