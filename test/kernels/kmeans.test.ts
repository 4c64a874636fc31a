import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignNearest, kMeans } from '../../kernels/kmeans.js';
import { mulberry32 } from '../../kernels/sampling.js';

test('assignNearest picks the closest centroid, ties to the lower cluster, and reports distances', () => {
  const data = new Float32Array([0, 0, /* */ 10, 10, /* */ 5, 5, /* */ 9, 11]);
  const centroids = new Float32Array([0, 0, /* */ 10, 10]);
  const assignment = new Int32Array(4);
  const distance = new Float64Array(4);
  assignNearest(data, 4, 2, centroids, 2, assignment, distance);
  assert.deepEqual(Array.from(assignment), [0, 1, 0, 1]);
  assert.deepEqual(Array.from(distance), [0, 0, 50, 2]);
});

test('kMeans recovers well separated clusters exactly, deterministically for a seed', () => {
  const random = mulberry32(3);
  const centers = [[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]];
  const rows = 400;
  const data = new Float32Array(rows * 3);
  const truth = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    truth[r] = r % 4;
    for (let i = 0; i < 3; i++) data[r * 3 + i] = centers[r % 4]![i]! + (random() - 0.5);
  }
  const a = kMeans(data, rows, 3, 4, 10, 42);
  const b = kMeans(data, rows, 3, 4, 10, 42);
  assert.deepEqual(a.assignment, b.assignment);
  assert.deepEqual(a.centroids, b.centroids);
  // Same partition as the truth (cluster numbers may differ).
  const map = new Map<number, number>();
  for (let r = 0; r < rows; r++) {
    const seen = map.get(truth[r]!);
    if (seen === undefined) map.set(truth[r]!, a.assignment[r]!);
    else assert.equal(a.assignment[r], seen, `row ${r}`);
  }
  assert.equal(new Set(map.values()).size, 4);
  assert.deepEqual(Array.from(a.sizes).sort(), [100, 100, 100, 100]);
  // Each centroid is its members' mean.
  for (let c = 0; c < 4; c++) {
    const sum = [0, 0, 0];
    for (let r = 0; r < rows; r++) if (a.assignment[r] === c) for (let i = 0; i < 3; i++) sum[i]! += data[r * 3 + i]!;
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(a.centroids[c * 3 + i]! - sum[i]! / a.sizes[c]!) < 1e-4);
  }
});

test('kMeans keeps every cluster non-empty, even with duplicate rows, and caps k at rows', () => {
  const data = new Float32Array(20).fill(1); // 10 identical 2-d rows
  const result = kMeans(data, 10, 2, 4, 5, 1);
  assert.equal(result.sizes.length, 4);
  for (const size of result.sizes) assert.ok(size >= 1);
  assert.equal(Array.from(result.sizes).reduce((s, x) => s + x, 0), 10);
  assert.equal(kMeans(new Float32Array([1, 2, 3, 4]), 2, 2, 5, 3, 1).sizes.length, 2);
  assert.throws(() => kMeans(new Float32Array(4), 0, 2, 1, 1, 1), RangeError);
});
