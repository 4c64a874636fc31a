import { test } from 'node:test';
import assert from 'node:assert/strict';
import { oracle, recall, uniform, windowOnly, type ChunkTimes } from '../../retrieval/baselines.js';
import { isVigil } from './helpers.js';

/** Chunks of 2 s at 0.5 fps, ids in time order. */
function stream(count: number, start = 0): ChunkTimes[] {
  return Array.from({ length: count }, (_, i) => ({ chunkId: i, tStart: start + 2 * i, tEnd: start + 2 * i + 2 }));
}

test('uniform: k chunks evenly spaced in time, in time order', () => {
  // 100 chunks over [0, 200): 4 slices of 50 s, centres 25, 75, 125, 175 -> the chunks covering
  // them, [24, 26) = 12, 37, 62, 87; one slice: centre 100 starts chunk 50.
  assert.deepEqual(uniform(stream(100), 4), [12, 37, 62, 87]);
  assert.deepEqual(uniform(stream(100), 1), [50]);
  // Every chunk when k = n - 1 leaves one out; picks stay distinct.
  assert.equal(new Set(uniform(stream(10), 9)).size, 9);
  // Input order does not matter.
  assert.deepEqual(uniform(stream(100).reverse(), 4), [12, 37, 62, 87]);
  assert.deepEqual(uniform(stream(5), 10), [0, 1, 2, 3, 4]);
  assert.deepEqual(uniform(stream(5), 0), []);
  assert.deepEqual(uniform([], 3), []);
});

test('uniform: a gap in the stream does not put two picks on one chunk', () => {
  // 10 chunks in [0, 20), then an outage, then 10 chunks in [1000, 1020).
  const chunks = [...stream(10), ...stream(10, 1000).map((c) => ({ ...c, chunkId: c.chunkId + 10 }))];
  const picks = uniform(chunks, 6);
  assert.equal(new Set(picks).size, 6);
  assert.deepEqual(picks, [...picks].sort((a, b) => a - b));
  // 40 s recorded: centres at 3.3, 10, 16.7, 23.3, 30, 36.7 s of recorded time, half the picks
  // on each side of the outage.
  assert.deepEqual(picks, [1, 5, 8, 11, 15, 18]);
  // Point-like chunks (no duration) are sampled by count.
  const points = Array.from({ length: 9 }, (_, i) => ({ chunkId: i, tStart: i, tEnd: i }));
  assert.deepEqual(uniform(points, 3), [1, 4, 7]);
});

test('windowOnly retrieves nothing', () => {
  assert.deepEqual(windowOnly(), []);
});

test('oracle: chunks overlapping the ground truth, ends included', () => {
  const chunks = stream(50);
  assert.deepEqual(oracle(chunks, [{ start: 10, end: 14 }]), [4, 5, 6, 7]);
  assert.deepEqual(oracle(chunks, [{ start: 10.5, end: 11 }, { start: 97, end: 500 }]), [5, 48, 49]);
  assert.deepEqual(oracle(chunks, []), []);
  assert.throws(() => oracle(chunks, [{ start: 5, end: 1 }]), isVigil('BAD_INPUT'));
});

test('recall: share of relevant chunks retrieved', () => {
  assert.equal(recall([1, 2, 3], [2, 3, 4, 5]), 0.5);
  assert.equal(recall([], [1]), 0);
  assert.equal(recall([1, 1, 9], [1]), 1);
  assert.ok(Number.isNaN(recall([1], [])), 'undefined without relevant chunks');
  assert.throws(() => uniform(stream(3), -1), isVigil('BAD_INPUT'));
});
