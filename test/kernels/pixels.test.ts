import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rgbToPlanar } from '../../kernels/pixels.js';

test('rgbToPlanar maps each channel through its own table into its plane (reference loop, offsets)', () => {
  const pixels = 7;
  const rgb = Uint8Array.from({ length: pixels * 3 }, (_, i) => (i * 53 + 11) % 256);
  const lut = Float32Array.from({ length: 768 }, (_, i) => (i % 256) * 0.5 - Math.floor(i / 256) * 100);
  const plane = 10;
  const out = new Float32Array(3 * plane).fill(-1);
  rgbToPlanar(rgb, 2, 4, lut, out, plane, 3);
  const expected = new Float32Array(3 * plane).fill(-1);
  for (let p = 0; p < 4; p++) for (let c = 0; c < 3; c++) expected[c * plane + 3 + p] = lut[c * 256 + rgb[(2 + p) * 3 + c]!]!;
  assert.deepEqual(out, expected);
  assert.throws(() => rgbToPlanar(rgb, 5, 4, lut, out, plane, 0), /outside the 7-pixel image/);
  assert.throws(() => rgbToPlanar(rgb, 0, 4, lut, out, plane, 8), /outside a plane/);
  assert.throws(() => rgbToPlanar(rgb, 0, 4, lut.subarray(0, 10), out, plane, 0), /lut/);
});
