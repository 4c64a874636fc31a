import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, topK } from '../../kernels/topk.js';

// Reference: full sort with the documented order.
function refTopK(scores: ArrayLike<number>, k: number): { indices: number[]; values: number[] } {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((i, j) => {
    const a = scores[i]!;
    const b = scores[j]!;
    const an = Number.isNaN(a);
    const bn = Number.isNaN(b);
    if (an !== bn) return an ? 1 : -1;
    if (!an && a !== b) return b - a;
    return i - j;
  });
  const top = idx.slice(0, Math.max(0, Math.min(k, scores.length)));
  return { indices: top, values: top.map((i) => scores[i]!) };
}

function check(scores: ArrayLike<number>, k: number): void {
  const got = topK(scores, k);
  const ref = refTopK(scores, k);
  assert.deepEqual([...got.indices], ref.indices, `k=${k}`);
  assert.deepEqual([...got.values], ref.values);
}

test('small example with ties', () => {
  const r = topK([1, 5, 3, 5, 2, 5], 4);
  assert.deepEqual([...r.indices], [1, 3, 5, 2]);
  assert.deepEqual([...r.values], [5, 5, 5, 3]);
  assert.ok(r.indices instanceof Int32Array && r.values instanceof Float64Array);
});

test('matches a full-sort reference on random data with many ties', () => {
  let s = 99;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  for (let trial = 0; trial < 200; trial++) {
    const n = rnd() % 200;
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) scores[i] = (rnd() % 17) - 8 + (trial % 2 ? (rnd() % 1000) / 1000 : 0);
    for (const k of [0, 1, 2, 5, 17, n - 1, n, n + 3]) check(scores, k);
  }
});

test('NaN is never selected over a number; infinities order correctly', () => {
  const scores = [NaN, -Infinity, 3, NaN, Infinity, -0, 0];
  check(scores, 3);
  check(scores, 5);
  check(scores, 7);
  const r = topK(scores, 5);
  assert.deepEqual([...r.indices], [4, 2, 5, 6, 1]);
  const all = topK(scores, 99);
  assert.equal(all.indices.length, 7);
  assert.deepEqual([...all.indices].slice(5), [0, 3]);
  assert.deepEqual([...topK([NaN, NaN], 1).indices], [0]);
});

test('k is clamped', () => {
  assert.equal(topK([1, 2, 3], -1).indices.length, 0);
  assert.equal(topK([1, 2, 3], 0).indices.length, 0);
  assert.equal(topK([], 4).indices.length, 0);
  assert.deepEqual([...topK([1, 2, 3], 2.7).indices], [2, 1]);
});

test('large input', () => {
  const n = 200000;
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) scores[i] = Math.sin(i * 12.9898) * 43758.5453 % 1;
  check(scores, 64);
});

test('argmax: first max wins, NaN never wins, offsets are relative', () => {
  assert.equal(argmax([1, 3, 2, 3]), 1);
  assert.equal(argmax([NaN, 1, NaN, 4, 4]), 3);
  assert.equal(argmax([-Infinity, -Infinity]), 0);
  assert.equal(argmax([NaN, NaN]), 0);
  assert.equal(argmax([]), -1);
  const row = new Float32Array([9, 9, 1, 7, 7, 2]);
  assert.equal(argmax(row, 2), 1);
  assert.equal(argmax(row, 2, 1), 0);
  assert.equal(argmax(row, 3, 3), 0);
  assert.throws(() => argmax(row, 4, 3), RangeError);
  let s = 5;
  for (let trial = 0; trial < 100; trial++) {
    const v = Array.from({ length: 1 + trial }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % 10;
    });
    assert.equal(argmax(v), v.indexOf(Math.max(...v)));
  }
});
