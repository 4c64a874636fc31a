// What the sealed-index benches (sealed-index.ts, sealed-profile.ts) share: the scenes' motion, the
// exact reference top-r, and percentiles.
import { dotRows } from '../kernels/similarity.js';
import { topK } from '../kernels/topk.js';

/** syntheticFrames motion per scene kind. */
export const SCENE_MOTION: Readonly<Record<string, number>> = { moving: 0.5, static: 0.1 };

/** The p-th percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Exact top-r ids over the first `count` rows of `vectors` for each query, and each query's time (ms). */
export function exactTopR(vectors: Float32Array, count: number, dim: number, queries: readonly Float32Array[], r: number): { truth: Set<number>[]; ms: number[] } {
  const scores = new Float64Array(count);
  const ms: number[] = [];
  const truth = queries.map((q) => {
    const t = performance.now();
    dotRows(vectors, count, dim, q, scores);
    const top = new Set(Array.from(topK(scores, r).indices));
    ms.push(performance.now() - t);
    return top;
  });
  return { truth, ms };
}

/** The flags both sealed benches take (parseArgs options); each bench sets its own count/probe/data defaults. */
export function sealedBenchOptions(defaults: { count: string; probe: string; data: string }) {
  return {
    count: { type: 'string', default: defaults.count },
    dim: { type: 'string', default: '192' },
    queries: { type: 'string', default: '50' },
    r: { type: 'string', default: '64' },
    probe: { type: 'string', default: defaults.probe },
    data: { type: 'string', default: defaults.data },
    block: { type: 'string', default: '2048' },
    list: { type: 'string', default: '64' },
  } as const;
}

/** Those flags as numbers. */
export function sealedBenchSettings(v: { count?: string; dim?: string; queries?: string; r?: string; probe?: string; block?: string; list?: string }) {
  return {
    counts: v.count!.split(',').map(Number).sort((a, b) => a - b),
    dim: Number(v.dim),
    queryCount: Number(v.queries),
    r: Number(v.r),
    probes: v.probe!.split(',').map(Number),
    blockChunks: Number(v.block),
    listChunks: Number(v.list),
  };
}
