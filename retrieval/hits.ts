// The ranked result of one layer's search, and the single place that decides the order: higher score
// first, equal scores by lower chunk id. Exact and HNSW paths both go through bestK, so they agree on
// ties.
import { topK } from '../kernels/topk.js';

/** Best first: scores[i] belongs to ids[i]. */
export interface Hits {
  ids: number[];
  scores: number[];
}

/**
 * The k best of (ids, scores). ids must be ascending: kernels' topK breaks ties by lower index,
 * which is then the lower chunk id.
 */
export function bestK(ids: ArrayLike<number>, scores: ArrayLike<number>, k: number): Hits {
  const { indices, values } = topK(scores, k);
  const out: Hits = { ids: new Array<number>(indices.length), scores: new Array<number>(indices.length) };
  for (let i = 0; i < indices.length; i++) {
    out.ids[i] = ids[indices[i]!]!;
    out.scores[i] = values[i]!;
  }
  return out;
}

/** Same order as bestK for ids in any order (HNSW returns them by distance). */
export function rankHits(ids: number[], scores: number[], k: number): Hits {
  const order = ids.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || ids[a]! - ids[b]!);
  const n = Math.min(k, order.length);
  return { ids: order.slice(0, n).map((i) => ids[i]!), scores: order.slice(0, n).map((i) => scores[i]!) };
}
