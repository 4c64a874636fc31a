// k-means (Lloyd's algorithm, squared Euclidean distance) over packed [rows, dim] float32 rows:
// how a sealed index block groups similar frames into lists, so a question reads only the lists
// whose centroids score high. Deterministic for a given seed (k-means++ seeding from mulberry32).
import { mulberry32 } from './sampling.js';

export interface KMeansResult {
  /** [k, dim] packed. */
  centroids: Float32Array;
  /** Row -> cluster. */
  assignment: Int32Array;
  /** Rows per cluster (every cluster holds at least one row when rows >= k). */
  sizes: Int32Array;
}

/**
 * Nearest centroid of each row: argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c), ties to the lower
 * cluster. Returns the row's squared distance in `distance` when given.
 */
export function assignNearest(data: Float32Array, rows: number, dim: number, centroids: Float32Array, k: number, assignment: Int32Array, distance?: Float64Array): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(dim) || dim < 1 || !Number.isInteger(k) || k < 1) throw new RangeError(`assignNearest: bad shape rows ${rows}, dim ${dim}, k ${k}`);
  if (data.length < rows * dim || centroids.length < k * dim || assignment.length < rows) throw new RangeError('assignNearest: array too short for the shape');
  const norms = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += centroids[c * dim + i]! * centroids[c * dim + i]!;
    norms[c] = s;
  }
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let xx = 0;
    for (let i = 0; i < dim; i++) xx += data[base + i]! * data[base + i]!;
    let best = 0;
    let bestValue = Infinity;
    for (let c = 0; c < k; c++) {
      const cb = c * dim;
      let d = 0;
      for (let i = 0; i < dim; i++) d += data[base + i]! * centroids[cb + i]!;
      const value = norms[c]! - 2 * d;
      if (value < bestValue) {
        bestValue = value;
        best = c;
      }
    }
    assignment[r] = best;
    if (distance) distance[r] = Math.max(0, bestValue + xx);
  }
}

/**
 * k clusters of `rows` rows (k is lowered to rows when larger). k-means++ seeding, then
 * `iterations` Lloyd rounds (stops early once no row moves). A cluster that empties takes the row
 * farthest from its centroid, so every cluster holds at least one row.
 */
export function kMeans(data: Float32Array, rows: number, dim: number, k: number, iterations: number, seed: number): KMeansResult {
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(dim) || dim < 1 || !Number.isInteger(k) || k < 1) throw new RangeError(`kMeans: bad shape rows ${rows}, dim ${dim}, k ${k}`);
  if (!Number.isInteger(iterations) || iterations < 0) throw new RangeError(`kMeans: bad iteration count ${iterations}`);
  if (data.length < rows * dim) throw new RangeError(`kMeans: data length ${data.length} < ${rows}*${dim}`);
  k = Math.min(k, rows);
  const random = mulberry32(seed);
  const centroids = new Float32Array(k * dim);
  // k-means++: each next seed is a row drawn with probability proportional to its squared distance.
  const nearest = new Float64Array(rows).fill(Infinity);
  let chosen = Math.floor(random() * rows);
  for (let c = 0; c < k; c++) {
    centroids.set(data.subarray(chosen * dim, (chosen + 1) * dim), c * dim);
    let total = 0;
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let i = 0; i < dim; i++) {
        const diff = data[r * dim + i]! - centroids[c * dim + i]!;
        d += diff * diff;
      }
      if (d < nearest[r]!) nearest[r] = d;
      total += nearest[r]!;
    }
    if (c + 1 === k) break;
    let target = random() * total;
    chosen = rows - 1;
    for (let r = 0; r < rows; r++) {
      target -= nearest[r]!;
      if (target < 0) {
        chosen = r;
        break;
      }
    }
  }
  const assignment = new Int32Array(rows).fill(-1);
  const next = new Int32Array(rows);
  const distance = new Float64Array(rows);
  const sizes = new Int32Array(k);
  const sums = new Float64Array(k * dim);
  for (let round = 0; round <= iterations; round++) {
    assignNearest(data, rows, dim, centroids, k, next, distance);
    let moved = 0;
    for (let r = 0; r < rows; r++) if (next[r] !== assignment[r]) moved++;
    assignment.set(next);
    sizes.fill(0);
    for (let r = 0; r < rows; r++) sizes[assignment[r]!]!++;
    fillEmptyClusters(data, dim, centroids, assignment, sizes, distance);
    if (moved === 0 || round === iterations) break;
    sums.fill(0);
    for (let r = 0; r < rows; r++) {
      const cb = assignment[r]! * dim;
      for (let i = 0; i < dim; i++) sums[cb + i]! += data[r * dim + i]!;
    }
    for (let c = 0; c < k; c++) for (let i = 0; i < dim; i++) centroids[c * dim + i] = sums[c * dim + i]! / sizes[c]!;
  }
  return { centroids, assignment, sizes };
}

/** Gives each empty cluster the row farthest from its own centroid (taken from a cluster of 2+). */
function fillEmptyClusters(data: Float32Array, dim: number, centroids: Float32Array, assignment: Int32Array, sizes: Int32Array, distance: Float64Array): void {
  for (let c = 0; c < sizes.length; c++) {
    if (sizes[c]! > 0) continue;
    let far = -1;
    for (let r = 0; r < assignment.length; r++) {
      if (sizes[assignment[r]!]! > 1 && (far < 0 || distance[r]! > distance[far]!)) far = r;
    }
    if (far < 0) return;
    sizes[assignment[far]!]!--;
    assignment[far] = c;
    sizes[c] = 1;
    distance[far] = 0;
    centroids.set(data.subarray(far * dim, (far + 1) * dim), c * dim);
  }
}
