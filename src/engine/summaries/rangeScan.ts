/**
 * The committed chunks of a time range, read for cutting it into scenes: each chunk's span and how
 * far its representatives (per layer, the mean pre-RoPE key) moved from the previous chunk's. The
 * range is found by binary search over chunk ids (times grow with ids), so the cost follows the
 * range, never the stream's history; a range of more than `maxChunks` chunks is sampled evenly.
 * Only the previous two chunks' representatives are held at any time.
 */
import type { ChunkMeta, ChunkStore } from '../../../memory/store/index.js';

/** What the scan reads from the chunk store. */
export type ChunkRows = Pick<ChunkStore, 'listChunks' | 'stats' | 'chunkSpan'>;

/** A chunk of the range (or, in a sampled range, the sample standing for the chunks up to the next one). */
export interface SceneUnit {
  chunkId: number;
  tStart: number;
  tEnd: number;
  /** Relative distance of its representatives from the previous unit's (0 for the first): see representativeDistance. */
  distance: number;
  /** The same from the unit before the previous one (Infinity for the first two): a one-unit blip shows as a small value here. */
  distance2: number;
  /** The last chunk this unit stands for (itself, unless the range is sampled). */
  lastChunkId: number;
}

export interface RangeScan {
  units: SceneUnit[];
  /** More chunks lay in the range than `maxChunks`: every k-th was read. */
  sampled: boolean;
}

/** Rows per page of a dense read (each carries its representatives: ~6 KB at smolvlm2-256m geometry). */
const PAGE_ROWS = 256;

/**
 * ||a - b|| / max(||a||, ||b||) over every layer's representative together: 0 for the same picture,
 * about 1 or more for an unrelated one, independent of the model's key scale. Two all-zero vectors
 * (a model whose keys ignore the picture) are at distance 0.
 */
export function representativeDistance(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let diff = 0;
  let na = 0;
  let nb = 0;
  for (let l = 0; l < a.length; l++) {
    const x = a[l]!;
    const y = b[l]!;
    for (let i = 0; i < x.length; i++) {
      const d = x[i]! - y[i]!;
      diff += d * d;
      na += x[i]! * x[i]!;
      nb += y[i]! * y[i]!;
    }
  }
  const scale = Math.sqrt(Math.max(na, nb));
  return scale < 1e-12 ? 0 : Math.sqrt(diff) / scale;
}

/** The chunks overlapping [from, to] (stream s) in time order, with their distances. */
export function scanRange(store: ChunkRows, from: number, to: number, maxChunks: number): RangeScan {
  const { firstChunkId, lastChunkId } = store.stats();
  if (firstChunkId === null || lastChunkId === null) return { units: [], sampled: false };
  const after = (id: number): ChunkMeta | null => store.listChunks({ afterId: id, limit: 1 })[0] ?? null;
  // The first chunk reaching `from` (tEnd grows with ids): the smallest x whose next chunk ends at or after it.
  const startX = searchIds(firstChunkId - 1, lastChunkId - 1, (x) => (after(x)?.tEnd ?? Infinity) >= from);
  const first = after(startX);
  if (!first || first.tEnd < from || first.tStart > to) return { units: [], sampled: false };
  // The last chunk starting by `to`: the id x where the next chunk after x starts past `to`.
  const lastId = searchIds(first.chunkId - 1, lastChunkId, (x) => {
    const next = after(x);
    return next === null || next.tStart > to;
  });
  const idSpan = lastId - first.chunkId + 1;
  const units: SceneUnit[] = [];
  let previous: readonly Float32Array[] | null = null;
  let beforePrevious: readonly Float32Array[] | null = null;
  const take = (meta: ChunkMeta) => {
    units.push({
      chunkId: meta.chunkId,
      tStart: meta.tStart,
      tEnd: meta.tEnd,
      distance: previous ? representativeDistance(previous, meta.representatives) : 0,
      distance2: beforePrevious ? representativeDistance(beforePrevious, meta.representatives) : Infinity,
      lastChunkId: meta.chunkId,
    });
    beforePrevious = previous;
    previous = meta.representatives;
  };
  if (idSpan <= maxChunks) {
    for (let cursor = first.chunkId - 1; cursor < lastId; ) {
      const page = store.listChunks({ afterId: cursor, limit: PAGE_ROWS });
      if (page.length === 0) break;
      for (const meta of page) if (meta.chunkId <= lastId) take(meta);
      cursor = page.at(-1)!.chunkId;
    }
    return { units, sampled: false };
  }
  // Sampled: the first chunk after every stride-th id (ids may have holes where chunks were removed).
  const stride = Math.ceil(idSpan / maxChunks);
  for (let x = first.chunkId - 1; x < lastId; x += stride) {
    const meta = after(x);
    if (!meta || meta.chunkId > lastId) break;
    if (units.length > 0 && units.at(-1)!.chunkId === meta.chunkId) continue;
    if (units.length > 0) units.at(-1)!.lastChunkId = meta.chunkId - 1;
    take(meta);
  }
  if (units.length > 0) units.at(-1)!.lastChunkId = lastId;
  return { units, sampled: true };
}

/** The end (stream s) of the last chunk a unit stands for: exact for a dense range; a sampled one looks it up (its own end where that id is gone). */
export function unitEnd(store: ChunkRows, unit: SceneUnit): number {
  if (unit.lastChunkId === unit.chunkId) return unit.tEnd;
  return store.chunkSpan(unit.lastChunkId)?.tEnd ?? unit.tEnd;
}

/** The smallest x in [lo, hi] where `test` holds (it holds at hi, and once it holds it holds for every larger x). */
function searchIds(lo: number, hi: number, test: (x: number) => boolean): number {
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (test(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
