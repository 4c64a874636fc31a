/**
 * Compact representatives (issue 15): what the manifest row's representatives cost per chunk and
 * what storing them smaller does to retrieval. The index is rebuilt from the manifest's
 * representatives (src/engine/indexReconcile.ts), so a rebuilt index searches the decoded vectors:
 * this compares exact top-r over float32 with exact top-r over the same rows after the manifest's
 * int8 round trip (memory/store/representatives.ts) and after a float16 round trip (the
 * alternative), on camera-like scene data (test/retrieval/syntheticFrames.ts), one layer (every
 * layer is searched alone on its own vectors).
 *
 *   node --import tsx bench/representatives.ts [--count 10000,100000,604800] [--dim 192] [--layers 30]
 *        [--queries 100] [--r 64] [--data moving,static,outliers]
 *
 * 604,800 chunks = 7 days at 1 frame/s. `outliers` is `moving` plus 4 channels with a large
 * constant (+-16, the massive activations real keys carry): every score shifts by the same amount
 * per query, so float32 ranks the same, but the int8 step (maxabs / 127) grows about 3x.
 * Recall@r is |top-r(compact) n top-r(float32)| / r per query; "identical" counts queries whose
 * top-r sets are equal; "worst float32 rank" is the lowest float32 rank of any chunk int8 picked
 * (r: only the float32 top-r; a little above r: only near-ties at the cut swapped). "re-encode same" is the share of rows whose decoded int8 row quantizes to
 * the same bytes again (the sealed index re-quantizes the rows it is given the same way).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { float16ToFloat32, float32ToFloat16 } from '../kernels/fp16.js';
import { dotRows } from '../kernels/similarity.js';
import { topK } from '../kernels/topk.js';
import { packRepresentatives, representativesBytes, unpackRepresentatives } from '../memory/store/representatives.js';
import { syntheticFrames } from '../test/retrieval/syntheticFrames.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000,100000,604800' },
    dim: { type: 'string', default: '192' },
    layers: { type: 'string', default: '30' },
    queries: { type: 'string', default: '100' },
    r: { type: 'string', default: '64' },
    data: { type: 'string', default: 'moving,static,outliers' },
  },
});
const counts = values.count!.split(',').map(Number).sort((a, b) => a - b);
const dim = Number(values.dim);
const layers = Number(values.layers);
const queryCount = Number(values.queries);
const r = Number(values.r);
const KINDS: Record<string, { motion: number; outliers: number }> = {
  moving: { motion: 0.5, outliers: 0 },
  static: { motion: 0.1, outliers: 0 },
  outliers: { motion: 0.5, outliers: 4 },
};
const OUTLIER_VALUE = 16;

/** Every row through the manifest's pack/unpack (one layer per row, as each layer is packed alone). */
function int8RoundTrip(vectors: Float32Array, rows: number): { decoded: Float32Array; reencodedSame: number } {
  const decoded = new Float32Array(rows * dim);
  let reencodedSame = 0;
  for (let i = 0; i < rows; i++) {
    const blob = packRepresentatives([vectors.subarray(i * dim, (i + 1) * dim)]);
    const row = unpackRepresentatives(blob, 1, dim)[0]!;
    decoded.set(row, i * dim);
    if (packRepresentatives([row]).equals(blob)) reencodedSame++;
  }
  return { decoded, reencodedSame };
}

function topSets(vectors: Float32Array, rows: number, queries: Float32Array[]): Set<number>[] {
  const scores = new Float64Array(rows);
  return queries.map((q) => {
    dotRows(vectors, rows, dim, q, scores);
    return new Set(topK(scores, r).indices);
  });
}

/**
 * Worst float32 rank (1-based) of any chunk a compact top-r picked, over every query: r means the
 * picks are the float32 top-r; a little above r means only near-ties at the cut were swapped.
 */
function worstFloat32Rank(vectors: Float32Array, rows: number, queries: Float32Array[], picks: Set<number>[]): number {
  const scores = new Float64Array(rows);
  let worst = 0;
  queries.forEach((q, i) => {
    dotRows(vectors, rows, dim, q, scores);
    for (const id of picks[i]!) {
      let above = 0;
      for (let j = 0; j < rows; j++) if (scores[j]! > scores[id]!) above++;
      worst = Math.max(worst, above + 1);
    }
  });
  return worst;
}

function recall(truth: Set<number>[], got: Set<number>[]): { mean: number; min: number; identical: number } {
  let sum = 0;
  let min = 1;
  let identical = 0;
  truth.forEach((want, i) => {
    let hit = 0;
    for (const id of got[i]!) if (want.has(id)) hit++;
    sum += hit / r;
    min = Math.min(min, hit / r);
    if (hit === r) identical++;
  });
  return { mean: sum / truth.length, min, identical };
}

/** Largest |error| over a row, relative to that row's max |x| (int8's bound is 1/254). */
function maxRelativeError(want: Float32Array, got: Float32Array, rows: number): number {
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    let maxAbs = 0;
    let maxErr = 0;
    for (let d = i * dim; d < (i + 1) * dim; d++) {
      maxAbs = Math.max(maxAbs, Math.abs(want[d]!));
      maxErr = Math.max(maxErr, Math.abs(want[d]! - got[d]!));
    }
    if (maxAbs > 0) worst = Math.max(worst, maxErr / maxAbs);
  }
  return worst;
}

const f32Bytes = representativesBytes(layers, dim, 'float32');
const int8Bytes = representativesBytes(layers, dim, 'int8');
const fp16Bytes = layers * dim * 2;
console.log(`# compact representatives: ${layers} layers x ${dim}, r=${r}, ${queryCount} queries, exact search, node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}`);
console.log(`bytes per chunk: float32 ${f32Bytes} | float16 ${fp16Bytes} (${(fp16Bytes / f32Bytes).toFixed(3)}) | int8 + scale ${int8Bytes} (${(int8Bytes / f32Bytes).toFixed(3)})`);
console.log('| data | chunks | recall@r int8 mean | int8 min | int8 identical | recall@r fp16 mean | fp16 min | fp16 identical | int8 worst float32 rank | int8 max err / maxabs | int8 re-encode same |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const kind of values.data!.split(',')) {
  const spec = KINDS[kind];
  if (!spec) throw new Error(`unknown --data ${kind}: use ${Object.keys(KINDS).join(', ')}`);
  const max = counts.at(-1)!;
  const frames = syntheticFrames({ count: max, dim, seed: 7, motion: spec.motion });
  for (let o = 0; o < spec.outliers; o++) {
    const channel = Math.floor((o * dim) / spec.outliers);
    const value = o % 2 === 0 ? OUTLIER_VALUE : -OUTLIER_VALUE;
    for (let i = 0; i < max; i++) frames.vectors[i * dim + channel] = frames.vectors[i * dim + channel]! + value;
  }
  const queries = Array.from({ length: queryCount }, (_, i) => frames.query(1000 + i));
  const int8 = int8RoundTrip(frames.vectors, max);
  const fp16 = float16ToFloat32(float32ToFloat16(frames.vectors));
  for (const count of counts) {
    const truth = topSets(frames.vectors, count, queries);
    const int8Picks = topSets(int8.decoded, count, queries);
    const a = recall(truth, int8Picks);
    const h = recall(truth, topSets(fp16, count, queries));
    console.log(
      `| ${kind} | ${count.toLocaleString('en-US')} | ${a.mean.toFixed(4)} | ${a.min.toFixed(3)} | ${a.identical}/${queryCount} | ${h.mean.toFixed(4)} | ${h.min.toFixed(3)} | ${h.identical}/${queryCount} | ${worstFloat32Rank(frames.vectors, count, queries, int8Picks)} | ` +
        `${maxRelativeError(frames.vectors, int8.decoded, count).toExponential(2)} | ${count === max ? `${((100 * int8.reencodedSame) / max).toFixed(2)}%` : ''} |`,
    );
  }
}
