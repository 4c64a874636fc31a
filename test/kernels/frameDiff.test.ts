import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lumaChange, lumaThumbnail } from '../../kernels/index.js';

/** The definition, written the slow way: per block, the mean BT.601 luma (weights /256) of the pixels whose block it is. */
function referenceThumbnail(rgb: Uint8Array, width: number, height: number, side: number): Float32Array {
  const out = new Float32Array(side * side);
  for (let by = 0; by < side; by++) {
    for (let bx = 0; bx < side; bx++) {
      let sum = 0;
      let n = 0;
      for (let y = 0; y < height; y++) {
        if (Math.floor((y * side) / height) !== by) continue;
        for (let x = 0; x < width; x++) {
          if (Math.floor((x * side) / width) !== bx) continue;
          const p = (y * width + x) * 3;
          sum += (77 * rgb[p]! + 150 * rgb[p + 1]! + 29 * rgb[p + 2]!) / 256;
          n++;
        }
      }
      out[by * side + bx] = sum / n;
    }
  }
  return out;
}

test('lumaThumbnail is the mean luma of each block (reference loop; sizes that do and do not divide evenly)', () => {
  for (const [width, height, side] of [
    [64, 64, 8],
    [37, 23, 7],
    [320, 180, 64],
    [5, 5, 5],
  ] as const) {
    const rgb = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 131 + 17 * Math.floor(i / 7)) % 256);
    const out = new Float32Array(side * side);
    lumaThumbnail(rgb, width, height, side, out, new Uint32Array(side * side));
    const expected = referenceThumbnail(rgb, width, height, side);
    for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(out[i]! - expected[i]!) < 1e-4, `${width}x${height}->${side}: block ${i}: ${out[i]} vs ${expected[i]}`);
  }
});

test('lumaThumbnail: pure colours give their luma; a uniform image gives a uniform thumbnail', () => {
  const side = 4;
  const out = new Float32Array(side * side);
  const sums = new Uint32Array(side * side);
  const solid = (r: number, g: number, b: number) => Uint8Array.from({ length: 16 * 12 * 3 }, (_, i) => [r, g, b][i % 3]!);
  lumaThumbnail(solid(255, 255, 255), 16, 12, side, out, sums);
  assert.ok(out.every((v) => v === 255));
  lumaThumbnail(solid(255, 0, 0), 16, 12, side, out, sums);
  assert.ok(out.every((v) => v === (77 * 255) / 256));
});

test('lumaThumbnail refuses images smaller than the thumbnail and short buffers', () => {
  const out = new Float32Array(64);
  const sums = new Uint32Array(64);
  assert.throws(() => lumaThumbnail(new Uint8Array(7 * 8 * 3), 7, 8, 8, out, sums), /cannot be shrunk/);
  assert.throws(() => lumaThumbnail(new Uint8Array(10), 8, 8, 8, out, sums), /bytes/);
  assert.throws(() => lumaThumbnail(new Uint8Array(8 * 8 * 3), 8, 8, 8, new Float32Array(10), sums), /entries/);
});

test('lumaChange: mean absolute difference and the fraction of pixels past the delta', () => {
  const a = Float32Array.from([0, 10, 20, 30]);
  const b = Float32Array.from([0, 15, 50, 29]);
  const change = lumaChange(a, b, 4);
  assert.equal(change.meanAbsDiff, (0 + 5 + 30 + 1) / 4);
  assert.equal(change.changedFraction, 2 / 4);
  assert.deepEqual(lumaChange(a, a, 0), { meanAbsDiff: 0, changedFraction: 0 });
  assert.throws(() => lumaChange(a, new Float32Array(3), 1), /pixels/);
});
