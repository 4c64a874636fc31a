import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cosine, dot, l2Norm } from '../../kernels/similarity.js';

const close = (a: number, b: number, tol = 1e-12): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('dot on small known vectors', () => {
  assert.equal(dot([1, 2, 3], [4, 5, 6]), 32);
  assert.equal(dot(new Float32Array([1, -2]), [3, 4]), -5);
  assert.equal(dot([], []), 0);
});

test('offsets and lengths address rows of a packed matrix', () => {
  const m = new Float32Array([1, 2, 3, /* row1 */ 4, 5, 6, /* row2 */ 7, 8, 9]);
  assert.equal(dot(m, m, 3, 3, 6), 4 * 7 + 5 * 8 + 6 * 9);
  assert.equal(dot(m, [1, 1], 2, 7), 8 + 9);
  assert.equal(l2Norm(m, 2, 3), Math.sqrt(16 + 25));
  assert.equal(l2Norm(m, undefined, 6), Math.sqrt(49 + 64 + 81));
  assert.ok(close(cosine(m, m, 3, 0, 3), 32 / (Math.sqrt(14) * Math.sqrt(77))));
  assert.throws(() => dot(m, m, 4, 6, 0), RangeError);
  assert.throws(() => cosine(m, [1, 2], 3), RangeError);
});

test('l2Norm and cosine basics', () => {
  assert.equal(l2Norm([3, 4]), 5);
  assert.equal(cosine([1, 0], [0, 1]), 0);
  assert.equal(cosine([2, 0], [5, 0]), 1);
  assert.equal(cosine([1, 1], [-3, -3]), -1);
  assert.equal(cosine([0, 0], [1, 2]), 0);
  assert.equal(cosine([1, 2], [0, 0]), 0);
});

test('cosine matches dot / (norm * norm) on random data and stays in [-1, 1]', () => {
  let s = 7;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  for (let trial = 0; trial < 50; trial++) {
    const n = 1 + (trial * 13) % 300;
    const a = Float32Array.from({ length: n }, rnd);
    const b = Float32Array.from({ length: n }, rnd);
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = 0; i < n; i++) {
      ab += a[i]! * b[i]!;
      aa += a[i]! * a[i]!;
      bb += b[i]! * b[i]!;
    }
    assert.ok(close(dot(a, b), ab));
    assert.ok(close(l2Norm(a), Math.sqrt(aa)));
    assert.ok(close(cosine(a, b), ab / Math.sqrt(aa * bb), 1e-10));
    const self = cosine(a, a);
    assert.ok(self <= 1 && self > 1 - 1e-12);
  }
});
