import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dotRowsInt8, INT8_ROW_MAX, quantizeRowsInt8 } from '../../kernels/int8Rows.js';
import { mulberry32 } from '../../kernels/sampling.js';

test('quantizeRowsInt8 follows the specification exactly on known rows', () => {
  const src = new Float32Array([127, -63.5, 0.4, -127, /* row 1 */ 0, 0, 0, 0, /* row 2 */ 1.27, 0.005, -0.0149, 0.635]);
  const codes = new Int8Array(12);
  const scales = new Float32Array(3);
  quantizeRowsInt8(src, 3, 4, codes, scales);
  assert.deepEqual(Array.from(scales), [1, 0, Math.fround(1.27 / 127)]);
  // Half away from zero: -63.5 -> -64; 0.4 -> 0.
  assert.deepEqual(Array.from(codes.subarray(0, 4)), [127, -64, 0, -127]);
  assert.deepEqual(Array.from(codes.subarray(4, 8)), [0, 0, 0, 0]);
  assert.equal(codes[8], INT8_ROW_MAX);
  assert.equal(codes[11], Math.round(0.635 / Math.fround(1.27 / 127)));
});

test('quantizeRowsInt8 error is at most half a step per value, on random rows', () => {
  const random = mulberry32(7);
  const rows = 50;
  const dim = 37;
  const src = new Float32Array(rows * dim).map(() => (random() - 0.5) * 10 ** (random() * 6 - 3));
  const codes = new Int8Array(rows * dim);
  const scales = new Float32Array(rows);
  quantizeRowsInt8(src, rows, dim, codes, scales);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < dim; i++) {
      const x = src[r * dim + i]!;
      assert.ok(Math.abs(x - scales[r]! * codes[r * dim + i]!) <= scales[r]! * 0.5 * (1 + 1e-6), `row ${r} value ${i}`);
    }
  }
});

test('quantizeRowsInt8 rejects non-finite values and short arrays', () => {
  assert.throws(() => quantizeRowsInt8(new Float32Array([1, NaN]), 1, 2, new Int8Array(2), new Float32Array(1)), RangeError);
  assert.throws(() => quantizeRowsInt8(new Float32Array([1, Infinity]), 1, 2, new Int8Array(2), new Float32Array(1)), RangeError);
  assert.throws(() => quantizeRowsInt8(new Float32Array(4), 2, 2, new Int8Array(3), new Float32Array(2)), RangeError);
  assert.throws(() => quantizeRowsInt8(new Float32Array(4), 2, 2, new Int8Array(4), new Float32Array(1)), RangeError);
});

test('dotRowsInt8 equals a float64 reference of scale * (query . codes)', () => {
  const random = mulberry32(11);
  const rows = 9;
  const dim = 13;
  const codes = new Int8Array(rows * dim).map(() => Math.floor(random() * 255) - 127);
  const scales = new Float32Array(rows).map(() => random());
  const query = new Float32Array(dim).map(() => random() - 0.5);
  const out = new Float64Array(4);
  dotRowsInt8(codes, scales, 3, 4, dim, query, out);
  for (let r = 0; r < 4; r++) {
    const row = 3 + r;
    const lanes = [0, 0, 0, 0];
    for (let i = 0; i < dim - (dim % 4); i++) lanes[i % 4]! += query[i]! * codes[row * dim + i]!;
    for (let i = dim - (dim % 4); i < dim; i++) lanes[0]! += query[i]! * codes[row * dim + i]!;
    assert.equal(out[r], scales[row]! * (lanes[0]! + lanes[1]! + (lanes[2]! + lanes[3]!)));
  }
  assert.throws(() => dotRowsInt8(codes, scales, 6, 4, dim, query, out), RangeError);
  assert.throws(() => dotRowsInt8(codes, scales, 0, 4, dim, new Float32Array(3), out), RangeError);
});
