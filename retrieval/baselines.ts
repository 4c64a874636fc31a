// Baseline chunk choices that every evaluation reports next to rekv (design.md section 4), as pure
// functions of chunk metadata. Each returns chunk ids in time order (tStart, then id), the order
// the context takes. `full` needs no function: it is every chunk.
import { VigilError } from '../common/errors.js';
import type { TimeRange } from './chunkCatalog.js';
import { checkCount } from './validate.js';

export interface ChunkTimes {
  chunkId: number;
  tStart: number;
  tEnd: number;
}

function byTime(chunks: readonly ChunkTimes[]): ChunkTimes[] {
  return [...chunks].sort((a, b) => a.tStart - b.tStart || a.chunkId - b.chunkId);
}

/**
 * k chunks spread evenly over the recorded time: the chunks' durations laid end to end (outages
 * between chunks skipped, so an hour offline does not draw picks to the edges of the gap) are cut
 * into k equal slices, and each slice takes the chunk under its centre. Without gaps this is plain
 * time-uniform sampling, as offline Video-LLMs sample frames (linspace). Picks are distinct and in
 * time order; all chunks when k >= their count. Chunks without duration weigh the same as others.
 */
export function uniform(chunks: readonly ChunkTimes[], k: number): number[] {
  checkCount('k', k, 0);
  const sorted = byTime(chunks);
  const n = sorted.length;
  if (k >= n) return sorted.map((c) => c.chunkId);
  if (k === 0) return [];
  const timed = sorted.every((c) => c.tEnd > c.tStart);
  const ends = new Float64Array(n); // recorded time at the end of each chunk
  let total = 0;
  for (let j = 0; j < n; j++) ends[j] = total += timed ? sorted[j]!.tEnd - sorted[j]!.tStart : 1;
  const picks: number[] = [];
  let j = 0;
  let last = -1;
  for (let i = 0; i < k; i++) {
    const centre = ((i + 0.5) / k) * total;
    while (j < n - 1 && ends[j]! <= centre) j++;
    // Distinct and ordered, leaving room for the picks still to come.
    const pick = Math.min(Math.max(j, last + 1), n - (k - i));
    picks.push(sorted[pick]!.chunkId);
    last = pick;
  }
  return picks;
}

/** The `window` baseline (StreamingLLM): sinks and the recent window only, nothing retrieved. */
export function windowOnly(): number[] {
  return [];
}

/** The `oracle` baseline: every chunk whose [tStart, tEnd] overlaps a ground-truth interval (ends included). */
export function oracle(chunks: readonly ChunkTimes[], groundTruth: readonly TimeRange[]): number[] {
  for (const g of groundTruth) {
    if (Number.isNaN(g.start) || Number.isNaN(g.end) || g.end < g.start) {
      throw new VigilError('BAD_INPUT', `ground-truth interval [${g.start}, ${g.end}] is not an interval`);
    }
  }
  return byTime(chunks)
    .filter((c) => groundTruth.some((g) => c.tEnd >= g.start && c.tStart <= g.end))
    .map((c) => c.chunkId);
}

/**
 * Share of the relevant chunks that were retrieved (ReKV's calc_recall_precision). NaN when nothing
 * is relevant: recall is undefined there, and NaN makes a forgotten case visible in an average.
 */
export function recall(retrieved: Iterable<number>, relevant: Iterable<number>): number {
  const want = new Set(relevant);
  if (want.size === 0) return NaN;
  const got = new Set(retrieved);
  let hit = 0;
  for (const id of want) if (got.has(id)) hit++;
  return hit / want.size;
}
