import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromHalfBits } from '../../kernels/fp16.js';
import {
  dequantizeKivi4,
  halfBitsAtOrAbove,
  halfBitsAtOrBelow,
  type KiviAxis,
  kivi4Bytes,
  kivi4Groups,
  packNibbles,
  quantizeKivi4,
  unpackNibbles,
} from '../../kernels/kivi.js';
import { seededData as data, halfUlp } from '../helpers/seededData.js';

// Every finite fp16 value with its bits, ascending (the reference searches this list: a different
// route from the kernel's round-then-step).
const HALVES: Array<{ v: number; bits: number }> = [];
for (let b = 0; b < 0x10000; b++) {
  const v = fromHalfBits(b);
  if (Number.isFinite(v) && !Object.is(v, -0)) HALVES.push({ v, bits: b });
}
HALVES.sort((a, b) => a.v - b.v);
function refAtOrBelow(x: number): number {
  let best = HALVES[0]!;
  for (const h of HALVES) if (h.v <= x) best = h;
  return best.v;
}
function refAtOrAbove(x: number): number {
  for (const h of HALVES) if (h.v >= x) return h.v;
  return Infinity;
}

/** The specification, written out per element: group membership by index arithmetic, parameters by search. */
function reference(src: Float32Array, axis: KiviAxis, heads: number, tokens: number, headDim: number, G: number): { x: Float32Array; zeros: number[]; scales: number[] } {
  const groupOf = (h: number, t: number, d: number): number =>
    axis === 'keys' ? (h * Math.ceil(tokens / G) + Math.floor(t / G)) * headDim + d : (h * tokens + t) * Math.ceil(headDim / G) + Math.floor(d / G);
  const groups = kivi4Groups(axis, heads, tokens, headDim, G);
  const lo = new Array<number>(groups).fill(Infinity);
  const hi = new Array<number>(groups).fill(-Infinity);
  const at = (h: number, t: number, d: number) => (h * tokens + t) * headDim + d;
  for (let h = 0; h < heads; h++) for (let t = 0; t < tokens; t++) for (let d = 0; d < headDim; d++) {
    const g = groupOf(h, t, d);
    lo[g] = Math.min(lo[g]!, src[at(h, t, d)]!);
    hi[g] = Math.max(hi[g]!, src[at(h, t, d)]!);
  }
  const zeros = lo.map(refAtOrBelow);
  const scales = zeros.map((z, g) => {
    if (!(hi[g]! > z)) return 0;
    let s = refAtOrAbove((hi[g]! - z) / 15);
    while (z + 15 * s < hi[g]!) s = refAtOrAbove(s * (1 + 2 ** -12) + 2 ** -30);
    return s;
  });
  const x = new Float32Array(src.length);
  for (let h = 0; h < heads; h++) for (let t = 0; t < tokens; t++) for (let d = 0; d < headDim; d++) {
    const g = groupOf(h, t, d);
    const code = scales[g] === 0 ? 0 : Math.min(15, Math.floor((src[at(h, t, d)]! - zeros[g]!) / scales[g]! + 0.5));
    x[at(h, t, d)] = zeros[g]! + code * scales[g]!;
  }
  return { x, zeros, scales };
}

const SHAPES: Array<[number, number, number, number]> = [
  // heads, tokens, headDim, groupSize
  [3, 74, 64, 32], // smolvlm2-256m chunk: token groups 32 + 32 + 10
  [3, 74, 64, 64],
  [2, 17, 16, 32], // tiny / needle chunk: one short group per channel, headDim < G
  [1, 5, 7, 3], // odd sizes: an odd element count leaves half a byte
];

test('kivi4: matches the specification bit for bit (zeros, scales, dequantized values), both axes', () => {
  for (const [heads, tokens, headDim, G] of SHAPES) {
    for (const axis of ['keys', 'values'] as const) {
      // Channel offsets make key channels differ, as real keys' outlier channels do.
      const src = data(heads * tokens * headDim, 7 + G + tokens, 3);
      for (let i = 0; i < src.length; i++) src[i] = src[i]! + ((i % headDim) % 5) * 2;
      const q = quantizeKivi4(src, axis, heads, tokens, headDim, G);
      const ref = reference(src, axis, heads, tokens, headDim, G);
      assert.deepEqual(Array.from(q.zeros, fromHalfBits), ref.zeros, `${axis} ${heads}x${tokens}x${headDim} G${G} zeros`);
      assert.deepEqual(Array.from(q.scales, fromHalfBits), ref.scales, `${axis} scales`);
      assert.deepEqual(dequantizeKivi4(q), ref.x, `${axis} values`);
    }
  }
});

test('kivi4: every element comes back within half a step (plus float32 rounding), and within range/30 of the group', () => {
  let worstRelative = 0;
  for (const [heads, tokens, headDim, G] of SHAPES) {
    for (const axis of ['keys', 'values'] as const) {
      for (const [scale, offset] of [[1, 0], [40, 7], [1e-3, 0], [0.25, -100]] as const) {
        const src = data(heads * tokens * headDim, 11 + tokens, scale, offset);
        const q = quantizeKivi4(src, axis, heads, tokens, headDim, G);
        const out = dequantizeKivi4(q);
        const groups = kivi4Groups(axis, heads, tokens, headDim, G);
        assert.equal(q.scales.length, groups);
        assert.equal(q.packed.length, Math.ceil(src.length / 2));
        const step = (i: number): number => {
          const h = Math.floor(i / (tokens * headDim));
          const t = Math.floor(i / headDim) % tokens;
          const d = i % headDim;
          const g = axis === 'keys' ? (h * Math.ceil(tokens / G) + Math.floor(t / G)) * headDim + d : (h * tokens + t) * Math.ceil(headDim / G) + Math.floor(d / G);
          return fromHalfBits(q.scales[g]!);
        };
        for (let i = 0; i < src.length; i++) {
          const err = Math.abs(out[i]! - src[i]!);
          assert.ok(Number.isFinite(out[i]!), `finite at ${i}`);
          assert.ok(err <= step(i) / 2 + halfUlp(out[i]!) + 1e-12 * Math.abs(src[i]!), `${axis} G${G} scale ${scale} element ${i}: error ${err} > step ${step(i)} / 2`);
          // The step is (range + fp16 rounding of zero) / 15 rounded up: range 2*scale here.
          worstRelative = Math.max(worstRelative, err / (2 * scale));
        }
      }
    }
  }
  // Half of a 15-step grid over the range is 1/30 = 0.033; the fp16 roundings add a little.
  assert.ok(worstRelative <= 0.0345, `worst error / range ${worstRelative}`);
});

test('kivi4: nibble packing is exact, low nibble first, and refuses codes above 15', () => {
  assert.deepEqual(Array.from(packNibbles(Uint8Array.from([1, 2, 3]))), [0x21, 0x03]);
  assert.deepEqual(Array.from(packNibbles(Uint8Array.from([15, 0, 0, 15]))), [0x0f, 0xf0]);
  assert.deepEqual(Array.from(unpackNibbles(Uint8Array.from([0x21, 0x03]), 3)), [1, 2, 3]);
  const codes = Uint8Array.from({ length: 1001 }, (_, i) => (i * 7 + (i >> 3)) & 15);
  assert.deepEqual(unpackNibbles(packNibbles(codes), codes.length), codes);
  assert.throws(() => packNibbles(Uint8Array.from([16])), /not 4-bit/);
  assert.throws(() => packNibbles(Uint8Array.from([0, 200])), /not 4-bit/);
  assert.throws(() => unpackNibbles(new Uint8Array(1), 3), /fewer than 3/);
  assert.equal(packNibbles(new Uint8Array(0)).length, 0);
});

test('kivi4: constant groups: fp16-representable constants come back exactly, others within a step; all-zero is exact', () => {
  for (const axis of ['keys', 'values'] as const) {
    for (const c of [0, 1.5, -2, 65504, -65504]) {
      const src = new Float32Array(3 * 10 * 8).fill(c);
      const q = quantizeKivi4(src, axis, 3, 10, 8, 4);
      assert.ok(q.scales.every((s) => s === 0), `${axis} ${c}: scale 0`);
      assert.deepEqual(dequantizeKivi4(q), src, `${axis} ${c} exact`);
    }
    for (const c of [0.1, -1e-5, 3.14159, 1e-30]) {
      const src = new Float32Array(2 * 9 * 8).fill(c);
      const out = dequantizeKivi4(quantizeKivi4(src, axis, 2, 9, 8, 4));
      for (const x of out) {
        assert.ok(Number.isFinite(x));
        // zero is c rounded down to fp16 (at most one fp16 ulp below), the step covers the gap.
        assert.ok(Math.abs(x - c) <= Math.max(Math.abs(c) * 2 ** -11, 2 ** -25), `${axis} constant ${c} -> ${x}`);
      }
    }
  }
});

test('kivi4: extremes stay finite; NaN, Inf and values beyond the fp16 range are refused with their index', () => {
  for (const axis of ['keys', 'values'] as const) {
    const src = Float32Array.from({ length: 2 * 8 * 8 }, (_, i) => (i % 3 === 0 ? 65504 : i % 3 === 1 ? -65504 : 1e-40));
    const q = quantizeKivi4(src, axis, 2, 8, 8, 8);
    const out = dequantizeKivi4(q);
    assert.ok(out.every(Number.isFinite), `${axis}: finite`);
    // Tiny values (subnormal floats, subnormal fp16 scales) also stay finite and bounded.
    const tiny = data(64, 3, 1e-7);
    const outTiny = dequantizeKivi4(quantizeKivi4(tiny, axis, 1, 8, 8, 8));
    for (let i = 0; i < tiny.length; i++) assert.ok(Math.abs(outTiny[i]! - tiny[i]!) <= 2e-7 / 30 + 2 ** -24, `tiny ${i}`);
    for (const [bad, label] of [[NaN, 'non-finite value NaN'], [Infinity, 'non-finite value Infinity'], [-70000, 'outside the fp16 range']] as const) {
      const s = new Float32Array(16);
      s[9] = bad;
      assert.throws(() => quantizeKivi4(s, axis, 1, 4, 4, 2), (e: Error) => e instanceof RangeError && e.message.includes(label) && e.message.includes('index 9'));
    }
  }
  assert.throws(() => quantizeKivi4(new Float32Array(8), 'keys', 1, 2, 4, 0), /groupSize must be a positive integer/);
  assert.throws(() => quantizeKivi4(new Float32Array(7), 'keys', 1, 2, 4, 2), /length 7/);
});

test('kivi4: fp16 directed rounding helpers', () => {
  for (const x of [0.1, -0.1, 1, -1, 1e-9, -1e-9, 0, 65504, -65504, 1234.567, 2 ** -24, -(2 ** -25)]) {
    const below = fromHalfBits(halfBitsAtOrBelow(x));
    assert.ok(below <= x, `below(${x}) = ${below}`);
    assert.equal(below, refAtOrBelow(x), `below(${x}) is the largest fp16 <= x`);
    if (x >= 0) {
      const above = fromHalfBits(halfBitsAtOrAbove(x));
      assert.equal(above, refAtOrAbove(x), `above(${x})`);
    }
  }
});

test('kivi4: bytes per tensor at the probe geometries', () => {
  // smolvlm2-256m chunk (3 KV heads, 74 tokens, head_dim 64), G = 32: codes 7104 B + groups.
  assert.equal(kivi4Bytes('keys', 3, 74, 64, 32), 7104 + 4 * 3 * 3 * 64);
  assert.equal(kivi4Bytes('values', 3, 74, 64, 32), 7104 + 4 * 3 * 74 * 2);
  assert.equal(kivi4Bytes('keys', 3, 74, 64, 64), 7104 + 4 * 3 * 2 * 64);
  assert.equal(kivi4Bytes('values', 2, 17, 16, 32), 272 + 4 * 2 * 17);
});
