import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  INT8_MAX_CODE,
  dequantizeKeysPerChannel,
  dequantizeValuesPerToken,
  int8Scale,
  quantizeKeysPerChannel,
  quantizeValuesPerToken,
} from '../../kernels/quantize.js';
import { seededData as data, halfUlp } from '../helpers/seededData.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Reference scale straight from the spec, by a different route (search, not bit tricks). */
function refScale(lo: number, hi: number): number {
  const range = hi - lo;
  if (range === 0) return 0;
  let s = Math.fround(range / 255);
  while (s * 255 < range) {
    f32[0] = s;
    u32[0]! += 1;
    s = f32[0];
  }
  return s;
}

type Layout = 'keys' | 'values';

/**
 * Element indices of every group: keys group (h, d) over tokens, values group (h, t) over headDim.
 */
function groups(layout: Layout, H: number, T: number, D: number): number[][] {
  const out: number[][] = [];
  if (layout === 'keys') {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) out.push(Array.from({ length: T }, (_, t) => (h * T + t) * D + d));
    }
  } else {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) out.push(Array.from({ length: D }, (_, d) => (h * T + t) * D + d));
    }
  }
  return out;
}

function roundTrip(layout: Layout, src: Float32Array, H: number, T: number, D: number) {
  const n = H * T * D;
  const nGroups = layout === 'keys' ? H * D : H * T;
  const codes = new Uint8Array(n);
  const scales = new Float32Array(nGroups);
  const zeros = new Float32Array(nGroups);
  if (layout === 'keys') quantizeKeysPerChannel(src, H, T, D, codes, scales, zeros);
  else quantizeValuesPerToken(src, H, T, D, codes, scales, zeros);
  const back =
    layout === 'keys'
      ? dequantizeKeysPerChannel(codes, scales, zeros, H, T, D)
      : dequantizeValuesPerToken(codes, scales, zeros, H, T, D);
  return { codes, scales, zeros, back };
}

/** Checks scales, zeros and codes against the spec exactly, and the half-step bound on every element. */
function checkExact(layout: Layout, src: Float32Array, H: number, T: number, D: number): number {
  const { codes, scales, zeros, back } = roundTrip(layout, src, H, T, D);
  let worstSteps = 0;
  groups(layout, H, T, D).forEach((idx, g) => {
    const xs = idx.map((i) => src[i]!);
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    const scale = refScale(lo, hi);
    assert.equal(zeros[g], lo, `zero of group ${g}`);
    assert.equal(scales[g], scale, `scale of group ${g}`);
    for (const i of idx) {
      const want = scale === 0 ? 0 : Math.floor((src[i]! - lo) * (1 / scale) + 0.5);
      assert.equal(codes[i], want, `code ${i}`);
      assert.ok(want >= 0 && want <= INT8_MAX_CODE);
      assert.equal(back[i], Math.fround(lo + want * scale), `dequantized ${i}`);
      const err = Math.abs(back[i] - src[i]!);
      // Half a step, plus the float32 rounding of x' and the float64 rounding of (x - lo) * inv.
      const bound = (scale / 2) * (1 + 2 ** -50) + halfUlp(back[i]);
      assert.ok(err <= bound, `element ${i}: error ${err} > half step ${scale / 2}`);
      if (scale > 0) worstSteps = Math.max(worstSteps, err / scale);
    }
  });
  return worstSteps;
}

test('keys per channel: exact spec on random data, error within half a step', () => {
  const H = 3;
  const T = 74;
  const D = 64;
  const worst = checkExact('keys', data(H * T * D, 1, 3), H, T, D);
  assert.ok(worst <= 0.5 + 1e-6 && worst > 0.45, `worst error ${worst} steps`);
});

test('values per token: exact spec on random data, error within half a step', () => {
  const H = 3;
  const T = 74;
  const D = 64;
  const worst = checkExact('values', data(H * T * D, 2, 3), H, T, D);
  assert.ok(worst <= 0.5 + 1e-6 && worst > 0.45, `worst error ${worst} steps`);
});

test('groups are per channel for keys and per token for values', () => {
  // One huge key channel must not coarsen the other channels; one huge value token likewise.
  const H = 1;
  const T = 4;
  const D = 3;
  const src = new Float32Array([0, 1000, 0.5, 1, -1000, 0.25, 2, 1000, 0.75, 3, 0, 1]);
  const k = roundTrip('keys', src, H, T, D);
  assert.deepEqual(Array.from(k.scales), [refScale(0, 3), refScale(-1000, 1000), refScale(0.25, 1)]);
  const v = roundTrip('values', src, H, T, D);
  assert.deepEqual(Array.from(v.scales), [refScale(0, 1000), refScale(-1000, 1), refScale(0.75, 1000), refScale(0, 3)]);
  checkExact('keys', src, H, T, D);
  checkExact('values', src, H, T, D);
});

test('edge cases: constant channel, all zeros, negative-only, single token, tiny and huge ranges', () => {
  const cases: Array<[string, Float32Array, number, number, number]> = [
    ['constant', new Float32Array(2 * 5 * 4).fill(0.3), 2, 5, 4],
    ['zeros', new Float32Array(2 * 5 * 4), 2, 5, 4],
    ['negative-only', data(2 * 5 * 4, 9, 0.5, -2), 2, 5, 4],
    ['single token', data(3 * 1 * 8, 4), 3, 1, 8],
    ['headDim 1', data(2 * 6 * 1, 5), 2, 6, 1],
    ['subnormal range', data(1 * 4 * 4, 6, 1e-40), 1, 4, 4],
    ['huge range', data(1 * 4 * 4, 8, 3e38), 1, 4, 4],
  ];
  for (const [name, src, H, T, D] of cases) {
    for (const layout of ['keys', 'values'] as const) {
      checkExact(layout, src, H, T, D);
      const { back, scales } = roundTrip(layout, src, H, T, D);
      if (name === 'constant' || name === 'zeros') {
        assert.ok(scales.every((s) => s === 0), `${name} ${layout}: scale 0`);
        assert.deepEqual(back, src, `${name} ${layout}: exact`);
      }
      if (name === 'negative-only') assert.ok(back.every((x) => x < 0), 'stays negative');
    }
  }
});

test('int8Scale rounds up when float32 rounding would need a code above 255', () => {
  // A range whose /255 rounds down in float32 in the subnormal region.
  const hi = 2 ** -140;
  const s = int8Scale(0, hi);
  assert.ok(s * 255 >= hi);
  assert.equal(s, refScale(0, hi));
  assert.equal(int8Scale(1, 1), 0);
});

test('non-finite values and bad shapes are rejected', () => {
  const codes = new Uint8Array(4);
  const s = new Float32Array(4);
  const z = new Float32Array(4);
  assert.throws(() => quantizeKeysPerChannel(new Float32Array([0, NaN, 1, 2]), 1, 2, 2, codes, s, z), /non-finite/);
  assert.throws(() => quantizeValuesPerToken(new Float32Array([0, Infinity, 1, 2]), 1, 2, 2, codes, s, z), /non-finite/);
  assert.throws(() => quantizeValuesPerToken(new Float32Array(3), 1, 2, 2, codes, s, z), /values length/);
  assert.throws(() => quantizeKeysPerChannel(new Float32Array(4), 1, 2, 2, codes, new Float32Array(1), z), /scales/);
  assert.throws(() => quantizeKeysPerChannel(new Float32Array(4), 0, 2, 2, codes, s, z), /positive integer/);
});
