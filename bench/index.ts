/**
 * The retrieval index (hnswlib) vs exact top-r on one layer's chunk representatives at stream
 * scale: 10k / 100k / 1M chunks of 192-d (smolvlm2-256m: 3 KV heads x 64), camera-like scene data
 * (test/retrieval/syntheticFrames.ts). At 1 frame/s, 1M chunks are 11.6 days of one camera.
 *
 *   node --import tsx bench/index.ts [--count 10000,100000,1000000] [--queries 200] [--ef 128,256,512,1024]
 *                                    [--m 32] [--ef-construction 400] [--data moving,static] [--r 64]
 *
 * For each size and data kind: graph build time and rate, per-add cost on the built graph (what
 * one evicted frame costs per layer), then for each ef: recall@r against exact search, median / p99
 * query latency, and the ratio to exact brute force measured in the same run. Design targets
 * (design.md section 7): recall@64 >= 0.99 and query < 2 ms at 100k chunks.
 */
import { parseArgs } from 'node:util';
import { LayerIndex } from '../retrieval/layerIndex.js';
import { syntheticFrames } from '../test/retrieval/syntheticFrames.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000,100000,1000000' },
    dim: { type: 'string', default: '192' },
    queries: { type: 'string', default: '200' },
    ef: { type: 'string', default: '128,256,512,1024' },
    m: { type: 'string', default: '32' },
    'ef-construction': { type: 'string', default: '400' },
    data: { type: 'string', default: 'moving,static' },
    r: { type: 'string', default: '64' },
  },
});
const counts = values.count!.split(',').map(Number);
const dim = Number(values.dim);
const queryCount = Number(values.queries);
const efs = values.ef!.split(',').map(Number);
const m = Number(values.m);
const efConstruction = Number(values['ef-construction']);
const r = Number(values.r);
/** motion: content change per frame inside a scene (see syntheticFrames.ts). */
const KINDS: Record<string, { motion: number; what: string }> = {
  moving: { motion: 0.5, what: 'scenes with motion' },
  static: { motion: 0.1, what: 'near-static scenes (frames of a scene are near copies)' },
};

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function timeEach<T>(items: T[], fn: (item: T) => void): { median: number; p99: number } {
  const times = items.map((item) => {
    const t = performance.now();
    fn(item);
    return performance.now() - t;
  });
  times.sort((a, b) => a - b);
  return { median: percentile(times, 50), p99: percentile(times, 99) };
}

const fmt = (x: number, digits = 3): string => x.toFixed(digits);

console.log(`# HNSW vs exact: ${counts.join(' / ')} chunks x ${dim}-d, r=${r}, ${queryCount} queries, M=${m}, efConstruction=${efConstruction}, node ${process.version}`);
for (const count of counts) for (const kind of values.data!.split(',')) {
  const spec = KINDS[kind];
  if (!spec) throw new Error(`unknown --data ${kind}: use ${Object.keys(KINDS).join(', ')}`);
  const frames = syntheticFrames({ count, dim, seed: 1, motion: spec.motion });
  const entries = Array.from({ length: count }, (_, i) => ({ id: i, vector: frames.vectors.subarray(i * dim, (i + 1) * dim) }));
  const queries = Array.from({ length: queryCount }, (_, i) => frames.query(10_000 + i));

  const exact = LayerIndex.rebuild({ dim, hnswThreshold: Infinity }, entries);
  const rssBefore = process.memoryUsage().rss;
  let t = performance.now();
  const graph = LayerIndex.rebuild({ dim, hnswThreshold: 0, hnsw: { m, efConstruction, ef: efs[0]! } }, entries);
  const buildS = (performance.now() - t) / 1000;
  const graphMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;

  // One evicted frame costs one insert per layer once the layer is a graph.
  const extra = syntheticFrames({ count: 500, dim, seed: 2, motion: spec.motion });
  let next = count;
  const add = timeEach(Array.from({ length: 500 }, (_, i) => extra.vectors.subarray(i * dim, (i + 1) * dim)), (v) => graph.add(next++, v));
  graph.remove(Array.from({ length: 500 }, (_, i) => count + i));

  // Warm up both paths (JIT), then measure.
  for (const q of queries.slice(0, 10)) {
    exact.search(q, r);
    graph.search(q, r);
  }
  const truth: number[][] = [];
  const exactTime = timeEach(queries, (q) => truth.push(exact.search(q, r).ids));

  console.log(`\n## ${count} chunks, ${kind}: ${spec.what}`);
  console.log(`graph build ${fmt(buildS, 1)} s (${Math.round(count / buildS)} inserts/s), RSS +${Math.round(graphMiB)} MiB; add on the built graph: median ${fmt(add.median)} ms, p99 ${fmt(add.p99)} ms`);
  console.log(`exact brute force: median ${fmt(exactTime.median)} ms, p99 ${fmt(exactTime.p99)} ms`);
  console.log('');
  console.log(`| ef | recall@${r} | misses from a returned view | median ms | p99 ms | exact/HNSW (median) | exact/HNSW (p99) |`);
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const ef of efs) {
    graph.setEf(ef);
    for (const q of queries.slice(0, 10)) graph.search(q, r);
    const results: number[][] = new Array(queries.length);
    let i = 0;
    const time = timeEach(queries, (q) => {
      results[i++] = graph.search(q, r).ids;
    });
    let found = 0;
    let misses = 0;
    let missesInScene = 0;
    results.forEach((ids, qi) => {
      const want = new Set(truth[qi]);
      const views = new Set(ids.map((id) => frames.view[id]!));
      for (const id of ids) if (want.has(id)) found++;
      for (const id of truth[qi]!) {
        if (ids.includes(id)) continue;
        misses++;
        // A miss from a view the result already shows (same scene, or a revisit of it) is a
        // near-duplicate frame rather than lost content.
        if (views.has(frames.view[id]!)) missesInScene++;
      }
    });
    const recall = found / (queries.length * r);
    const inScene = misses === 0 ? '-' : `${Math.round((100 * missesInScene) / misses)}%`;
    console.log(
      `| ${ef} | ${fmt(recall, 4)} | ${inScene} | ${fmt(time.median)} | ${fmt(time.p99)} | ${fmt(exactTime.median / time.median, 0)}x | ${fmt(exactTime.p99 / time.p99, 0)}x |`,
    );
  }
}
