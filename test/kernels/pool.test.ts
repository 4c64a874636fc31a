import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meanOverTokens, meanRows } from '../../kernels/pool.js';
import { seededData as data } from '../helpers/seededData.js';

test('meanOverTokens: per-head means, heads concatenated', () => {
  const H = 3;
  const T = 5;
  const D = 4;
  const src = data(H * T * D, 1);
  const got = meanOverTokens(src, H, T, D);
  assert.equal(got.length, H * D);
  for (let h = 0; h < H; h++) {
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let t = 0; t < T; t++) s += src[h * T * D + t * D + d]!;
      assert.equal(got[h * D + d], Math.fround(s / T), `h=${h} d=${d}`);
    }
  }
});

test('small hand-checked example', () => {
  // heads=2, tokens=2, headDim=2
  const src = new Float32Array([1, 2, 3, 4, 10, 20, 30, 40]);
  assert.deepEqual([...meanOverTokens(src, 2, 2, 2)], [2, 3, 20, 30]);
  assert.deepEqual([...meanRows(new Float32Array([1, 2, 3, 5, 6, 7]), 2, 3)], [3, 4, 5]);
});

test('accumulates in float64', () => {
  // 1e8 followed by many 1s: a float32 running sum would never move off 1e8.
  const T = 1001;
  const src = new Float32Array(T).fill(1);
  src[0] = 1e8;
  const got = meanRows(src, T, 1)[0];
  assert.equal(got, Math.fround((1e8 + 1000) / T));
  assert.notEqual(got, Math.fround(1e8 / T));
});

test('meanRows matches a reference and writes into out', () => {
  const R = 7;
  const D = 9;
  const src = data(R * D, 4);
  const out = new Float32Array(D);
  assert.equal(meanRows(src, R, D, out), out);
  for (let d = 0; d < D; d++) {
    let s = 0;
    for (let r = 0; r < R; r++) s += src[r * D + d]!;
    assert.equal(out[d], Math.fround(s / R));
  }
  // Reusing out must not leak the previous result into the next one.
  meanRows(new Float32Array(R * D), R, D, out);
  assert.ok(out.every((v) => v === 0));
});

test('validation', () => {
  assert.throws(() => meanOverTokens(new Float32Array(8), 1, 0, 8), RangeError);
  assert.throws(() => meanOverTokens(new Float32Array(7), 1, 1, 8), RangeError);
  assert.throws(() => meanRows(new Float32Array(8), 2, 4, new Float32Array(3)), RangeError);
});
