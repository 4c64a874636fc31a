import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dotRowsInt16, dotRowsInt8, INT16_QUERY_MAX, INT8_ROW_MAX, quantizeQueryInt16, quantizeRowsInt8 } from '../../kernels/int8Rows.js';
import { kernelBackend, nativeKernels, useKernelBackend, type KernelBackend } from '../../kernels/native.js';
import { mulberry32 } from '../../kernels/sampling.js';

/** The backends to check: the JS reference, and the native twin when it is built. */
const BACKENDS: KernelBackend[] = nativeKernels() ? ['js', 'native'] : ['js'];

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

test('dotRowsInt8 equals a float64 reference of scale * (query . codes), on both backends', (t) => {
  const initial = kernelBackend();
  t.after(() => useKernelBackend(initial));
  const random = mulberry32(11);
  for (const backend of BACKENDS) {
    useKernelBackend(backend);
    // Rows 0..13 from row 3: the native kernel's four-row groups and the rows after them; dims
    // with and without a tail of dim % 4 values; queries spanning many binades (the float64 sums round).
    for (const dim of [13, 192, 4, 1, 7]) {
      for (const take of [0, 1, 4, 5, 8, 13]) {
        const rows = 3 + take;
        const codes = new Int8Array(rows * dim).map(() => Math.floor(random() * 255) - 127);
        codes[0] = -127;
        const scales = new Float32Array(rows).map(() => random() * 2 ** Math.floor(random() * 20 - 10));
        const query = new Float32Array(dim).map(() => (random() - 0.5) * 2 ** Math.floor(random() * 40 - 20));
        const out = new Float64Array(take + 2).fill(-1);
        dotRowsInt8(codes, scales, 3, take, dim, query, out);
        for (let r = 0; r < take; r++) {
          const row = 3 + r;
          const lanes = [0, 0, 0, 0];
          for (let i = 0; i < dim - (dim % 4); i++) lanes[i % 4]! += query[i]! * codes[row * dim + i]!;
          for (let i = dim - (dim % 4); i < dim; i++) lanes[0]! += query[i]! * codes[row * dim + i]!;
          assert.equal(out[r], scales[row]! * (lanes[0]! + lanes[1]! + (lanes[2]! + lanes[3]!)), `${backend} dim ${dim} row ${r}`);
        }
        assert.equal(out[take], -1, 'nothing written past the rows');
      }
    }
    const codes = new Int8Array(9 * 13);
    const scales = new Float32Array(9);
    const out = new Float64Array(4);
    assert.throws(() => dotRowsInt8(codes, scales, 6, 4, 13, new Float32Array(13), out), RangeError);
    assert.throws(() => dotRowsInt8(codes, scales, 0, 4, 13, new Float32Array(3), out), RangeError);
  }
});

test('quantizeQueryInt16 follows its specification exactly', () => {
  const codes = new Int16Array(6).fill(9);
  // max 32767: scale 1 exactly, so the rounding shows: half away from zero.
  assert.equal(quantizeQueryInt16(new Float32Array([32767, -0.5, 2.5, 1.25, -32767, 0]), 6, codes), 1);
  assert.deepEqual(Array.from(codes), [32767, -1, 3, 1, -32767, 0]);
  const halves = new Int16Array(4);
  const scale = quantizeQueryInt16(new Float32Array([2, -1, 0.5, -2]), 4, halves);
  assert.equal(scale, 2 / INT16_QUERY_MAX);
  assert.deepEqual(Array.from(halves), [32767, -16384, 8192, -32767]);
  const zero = new Int16Array(3).fill(5);
  assert.equal(quantizeQueryInt16(new Float32Array(3), 3, zero), 0);
  assert.deepEqual(Array.from(zero), [0, 0, 0]);
  const random = mulberry32(3);
  const query = new Float32Array(192).map(() => (random() - 0.5) * 10);
  const q16 = new Int16Array(192);
  const s = quantizeQueryInt16(query, 192, q16);
  for (let i = 0; i < 192; i++) assert.ok(Math.abs(query[i]! - s * q16[i]!) <= s * 0.5 * (1 + 1e-9), `value ${i}`);
  assert.throws(() => quantizeQueryInt16(new Float32Array([1, NaN]), 2, new Int16Array(2)), RangeError);
  assert.throws(() => quantizeQueryInt16(new Float32Array(4), 4, new Int16Array(3)), RangeError);
});

test('dotRowsInt16 equals the exact integer dot product times the two scales, on both backends', (t) => {
  const initial = kernelBackend();
  t.after(() => useKernelBackend(initial));
  const random = mulberry32(12);
  for (const backend of BACKENDS) {
    useKernelBackend(backend);
    for (const dim of [192, 516, 1, 13, 33]) {
      const rows = 11;
      const codes = new Int8Array(rows * dim).map(() => Math.floor(random() * 255) - 127);
      const query = new Int16Array(dim).map(() => Math.floor(random() * 65535) - 32767);
      // The extreme row: every product 32767 * 127 with one sign (the int32 sums' worst case).
      codes.fill(127, 2 * dim, 3 * dim);
      const extreme = new Int16Array(dim).fill(INT16_QUERY_MAX);
      const scales = new Float32Array(rows).map(() => random() * 0.1);
      for (const q of [query, extreme]) {
        const out = new Float64Array(rows - 1);
        dotRowsInt16(codes, scales, 1, rows - 1, dim, q, 0.000123, out);
        for (let r = 0; r < rows - 1; r++) {
          let exact = 0n;
          for (let i = 0; i < dim; i++) exact += BigInt(q[i]!) * BigInt(codes[(1 + r) * dim + i]!);
          assert.equal(out[r], scales[1 + r]! * 0.000123 * Number(exact), `${backend} dim ${dim} row ${r}`);
        }
      }
    }
    assert.throws(() => dotRowsInt16(new Int8Array(517), new Float32Array(1), 0, 1, 517, new Int16Array(517), 1, new Float64Array(1)), RangeError);
    assert.throws(() => dotRowsInt16(new Int8Array(8), new Float32Array(2), 1, 2, 4, new Int16Array(4), 1, new Float64Array(2)), RangeError);
  }
});

