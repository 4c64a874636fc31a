// Options of one layer's index, their defaults and their checks (BAD_CONFIG on a bad value).
import { DEFAULT_HNSW_PARAMS, type HnswParams } from './hnswStore.js';
import { parseSpace, type SimilaritySpace } from './space.js';
import { checkConfigInt } from './validate.js';
import { VigilError } from '../common/errors.js';

export interface LayerIndexOptions {
  /** Vector length: numKvHeads * headDim (192 for smolvlm2-256m). */
  dim: number;
  /** 'ip' (dot product, ReKV's code; default) or 'cosine' (the paper's text). */
  space?: SimilaritySpace;
  /**
   * Chunk count at which the layer moves from exact brute force to an HNSW graph (default 20,000,
   * about 11 h at 0.5 fps). 0 starts with a graph. The move is one way: a graph is kept when
   * retention later shrinks the layer (rebuild picks the mode from the count again).
   */
  hnswThreshold?: number;
  /** Graph parameters (defaults: M 32, efConstruction 400, ef 256, seed 100; bench/index.ts measures them). */
  hnsw?: Partial<HnswParams>;
  /**
   * Older vectors copied into the new graph per add() while it is being built (default 4). Search
   * stays exact until the copy completes, so a frame's insert cost stays bounded; call backfill()
   * in idle time to finish sooner. 0: only backfill() copies.
   */
  backfillPerAdd?: number;
  /**
   * In graph mode, a filter (time range, exclusions) that lets at most this many chunks through is
   * answered by exact scoring of those chunks (default 1024): a graph search with a very selective
   * filter visits most of the graph and may still come back short.
   */
  exactFilterLimit?: number;
}

export interface ResolvedLayerOptions {
  dim: number;
  space: SimilaritySpace;
  hnswThreshold: number;
  hnsw: HnswParams;
  backfillPerAdd: number;
  exactFilterLimit: number;
}

export const DEFAULT_HNSW_THRESHOLD = 20_000;

export function resolveLayerOptions(options: LayerIndexOptions): ResolvedLayerOptions {
  if (typeof options !== 'object' || options === null) throw new VigilError('BAD_CONFIG', 'layer index options must be an object');
  checkConfigInt('dim', options.dim, 1);
  const space = parseSpace(options.space ?? 'ip');
  const hnswThreshold = options.hnswThreshold ?? DEFAULT_HNSW_THRESHOLD;
  if (hnswThreshold !== Infinity) checkConfigInt('hnswThreshold', hnswThreshold, 0);
  const hnsw: HnswParams = { ...DEFAULT_HNSW_PARAMS, ...options.hnsw };
  checkConfigInt('hnsw.m', hnsw.m, 2);
  checkConfigInt('hnsw.efConstruction', hnsw.efConstruction, 1);
  checkConfigInt('hnsw.ef', hnsw.ef, 1);
  checkConfigInt('hnsw.seed', hnsw.seed, 0);
  const backfillPerAdd = options.backfillPerAdd ?? 4;
  checkConfigInt('backfillPerAdd', backfillPerAdd, 0);
  const exactFilterLimit = options.exactFilterLimit ?? 1024;
  checkConfigInt('exactFilterLimit', exactFilterLimit, 0);
  return { dim: options.dim, space, hnswThreshold, hnsw, backfillPerAdd, exactFilterLimit };
}
