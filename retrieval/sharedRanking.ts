// `shared` retrieval: one chunk set for every layer, ranked by the sum of the layers' scores.
import { bestK, type Hits } from './hits.js';
import type { LayerIndex } from './layerIndex.js';
import { sortedUnique } from './sortedIds.js';

/**
 * Top-k by sum over layers of dot(query_l, representative_l). Exact while every layer still holds
 * its vectors (exact or migrating). Once layers are graphs, the candidates are the union of every
 * layer's own top-k (a chunk outside all of them cannot win), each scored on every layer: an
 * approximation, at ~20 us per score hnswlib has to copy out.
 */
export function sharedSum(layers: readonly LayerIndex[], queries: readonly Float32Array[], k: number, allowed: Uint32Array | undefined): Hits {
  if (layers.every((l) => l.mode !== 'hnsw')) {
    let ids: Uint32Array | undefined;
    let total: Float64Array | undefined;
    layers.forEach((layer, i) => {
      const rows = layer.scoreAll(queries[i]!, allowed)!;
      if (ids === undefined || total === undefined) {
        ids = rows.ids;
        total = Float64Array.from(rows.scores);
        return;
      }
      const first = ids;
      if (rows.ids.length !== first.length || rows.ids.some((id, j) => id !== first[j])) throw new Error('layers hold different chunks');
      for (let j = 0; j < total.length; j++) total[j]! += rows.scores[j]!;
    });
    return bestK(ids!, total!, k);
  }
  const own = layers.map((layer, i) => layer.search(queries[i]!, k, allowed));
  const candidates = sortedUnique(own.flatMap((h) => h.ids));
  const total = new Float64Array(candidates.length);
  layers.forEach((layer, i) => {
    const known = new Map(own[i]!.ids.map((id, j) => [id, own[i]!.scores[j]!]));
    const missing = Array.from(candidates).filter((id) => !known.has(id));
    const missingScores = missing.length > 0 ? layer.scoreIds(queries[i]!, missing) : new Float64Array(0);
    missing.forEach((id, j) => known.set(id, missingScores[j]!));
    candidates.forEach((id, j) => (total[j]! += known.get(id)!));
  });
  return bestK(candidates, total, k);
}
