// 4-bit KIVI quantization of KV tensors laid out [heads, tokens, headDim] (Liu et al., "KIVI: A
// Tuning-Free Asymmetric 2bit Quantization for KV Cache", 2024), as a candidate memory tier
// (issue 15): 4-bit codes packed two per byte, an fp16 scale and an fp16 zero per group.
//
// Grouping, as in KIVI:
//   keys   per channel: a group is G consecutive tokens of one (head, dim) channel, because key
//          outliers sit in fixed channels; groups [heads, ceil(tokens / G), headDim].
//   values per token:  a group is G consecutive dims of one (head, token), because value error is
//          mixed per token by the attention weights; groups [heads, tokens, ceil(headDim / G)].
// A last group may be shorter (74 tokens at G = 32: 32 + 32 + 10).
//
// Specification, per group with float32 elements x (all finite, |x| <= 65504, the fp16 range):
//   lo = min x, hi = max x
//   zero  = the largest fp16 value <= lo                      (stored as fp16 bits, exact)
//   scale = the smallest fp16 value >= (hi - zero) / 15 such that zero + 15 * scale >= hi
//           (in float64), so codes never need clamping; 0 when hi == zero (a constant group whose
//           value is an fp16 number comes back exactly)
//   code  = floor((x - zero) / scale + 0.5), in 0..15 (0 when scale == 0)
//   x'    = fround(zero + code * scale)
// Hence |x - x'| <= scale / 2 plus the final float32 rounding of x'. Rounding zero down and scale up
// (instead of to nearest) costs at most an fp16 ulp of the range, and keeps that bound exact.
// Codes are packed little-nibble first: element i is the low nibble of byte i >> 1 when i is even.
import { fromHalfBits, toHalfBits } from './fp16.js';

/** Highest 4-bit code. */
export const KIVI4_MAX_CODE = 15;
/** Largest finite fp16 magnitude: the scale and zero are fp16, so inputs must fit it. */
const HALF_MAX = 65504;

/** Which KIVI grouping: keys per channel (groups along tokens), values per token (groups along dims). */
export type KiviAxis = 'keys' | 'values';

/** One quantized [heads, tokens, headDim] tensor. */
export interface Kivi4Tensor {
  axis: KiviAxis;
  heads: number;
  tokens: number;
  headDim: number;
  groupSize: number;
  /** ceil(n / 2) bytes, two codes per byte (low nibble first). */
  packed: Uint8Array;
  /** fp16 bits, one per group (see kivi4Groups for the order). */
  scales: Uint16Array;
  zeros: Uint16Array;
}

function checkDims(name: string, heads: number, tokens: number, headDim: number, groupSize: number): void {
  for (const [k, v] of [['heads', heads], ['tokens', tokens], ['headDim', headDim], ['groupSize', groupSize]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name}: ${k} must be a positive integer, got ${v}`);
  }
}

/** Number of groups: keys [heads, ceil(tokens / G), headDim], values [heads, tokens, ceil(headDim / G)]. */
export function kivi4Groups(axis: KiviAxis, heads: number, tokens: number, headDim: number, groupSize: number): number {
  checkDims('kivi4Groups', heads, tokens, headDim, groupSize);
  return axis === 'keys' ? heads * Math.ceil(tokens / groupSize) * headDim : heads * tokens * Math.ceil(headDim / groupSize);
}

/** Bytes of one quantized tensor: packed codes plus an fp16 scale and zero per group. */
export function kivi4Bytes(axis: KiviAxis, heads: number, tokens: number, headDim: number, groupSize: number): number {
  return Math.ceil((heads * tokens * headDim) / 2) + 4 * kivi4Groups(axis, heads, tokens, headDim, groupSize);
}

/** Packs codes (each 0..15) two per byte, low nibble first; an odd count leaves the last high nibble 0. */
export function packNibbles(codes: Uint8Array, out?: Uint8Array): Uint8Array {
  const n = codes.length;
  const dst = out ?? new Uint8Array(Math.ceil(n / 2));
  if (dst.length < Math.ceil(n / 2)) throw new RangeError(`packNibbles: out length ${dst.length} < ${Math.ceil(n / 2)}`);
  const pairs = n >>> 1;
  for (let i = 0; i < pairs; i++) {
    const a = codes[2 * i]!;
    const b = codes[2 * i + 1]!;
    if (a > KIVI4_MAX_CODE || b > KIVI4_MAX_CODE) throw new RangeError(`packNibbles: code ${Math.max(a, b)} at ${a > KIVI4_MAX_CODE ? 2 * i : 2 * i + 1} is not 4-bit`);
    dst[i] = a | (b << 4);
  }
  if (n & 1) {
    const a = codes[n - 1]!;
    if (a > KIVI4_MAX_CODE) throw new RangeError(`packNibbles: code ${a} at ${n - 1} is not 4-bit`);
    dst[pairs] = a;
  }
  return dst;
}

/** Inverse of packNibbles: the first n codes. */
export function unpackNibbles(packed: Uint8Array, n: number, out?: Uint8Array): Uint8Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`unpackNibbles: n must be an integer >= 0, got ${n}`);
  if (packed.length < Math.ceil(n / 2)) throw new RangeError(`unpackNibbles: ${packed.length} bytes hold fewer than ${n} codes`);
  const dst = out ?? new Uint8Array(n);
  if (dst.length < n) throw new RangeError(`unpackNibbles: out length ${dst.length} < ${n}`);
  for (let i = 0; i < n; i++) dst[i] = (packed[i >>> 1]! >>> ((i & 1) << 2)) & 0xf;
  return dst;
}

/** fp16 bits of the largest fp16 value <= x (x finite, |x| <= 65504). */
export function halfBitsAtOrBelow(x: number): number {
  const h = toHalfBits(x);
  const v = fromHalfBits(h);
  if (v <= x) return h;
  // Rounded up: one fp16 step towards -Inf.
  if (v > 0) return h - 1; // positive: smaller magnitude (0x0001 - 1 is +0)
  if (v === 0) return 0x8001; // +-0 above a tiny negative x: the smallest negative subnormal
  return h + 1; // negative: larger magnitude
}

/** fp16 bits of the smallest fp16 value >= x, for x >= 0 (a scale). */
export function halfBitsAtOrAbove(x: number): number {
  let h = toHalfBits(x) & 0x7fff; // -0 -> +0
  if (fromHalfBits(h) < x) h += 1;
  return h;
}

/** The group's (zero, scale) as fp16 bits, from its float32 min and max; see the specification. */
export function kivi4Params(lo: number, hi: number): { zero: number; scale: number } {
  const zero = halfBitsAtOrBelow(lo);
  const z = fromHalfBits(zero);
  if (!(hi > z)) return { zero, scale: 0 };
  let scale = halfBitsAtOrAbove((hi - z) / KIVI4_MAX_CODE);
  while (z + KIVI4_MAX_CODE * fromHalfBits(scale) < hi) scale += 1; // float64 check; at most a step or two
  return { zero, scale };
}

function rangeError(name: string, src: Float32Array, i: number): RangeError {
  const x = src[i]!;
  return Number.isFinite(x)
    ? new RangeError(`${name}: value ${x} at index ${i} is outside the fp16 range (±${HALF_MAX}) of KIVI's scale and zero`)
    : new RangeError(`${name}: non-finite value ${x} at index ${i} cannot be quantized`);
}

/**
 * Quantizes float32 [heads, tokens, headDim] to 4-bit KIVI codes. Throws RangeError for NaN, ±Inf
 * or |x| > 65504 (naming the index), before anything is returned.
 */
export function quantizeKivi4(src: Float32Array, axis: KiviAxis, heads: number, tokens: number, headDim: number, groupSize: number): Kivi4Tensor {
  const name = `quantizeKivi4(${axis})`;
  checkDims(name, heads, tokens, headDim, groupSize);
  const n = heads * tokens * headDim;
  if (src.length < n) throw new RangeError(`${name}: values length ${src.length} < ${heads}*${tokens}*${headDim}`);
  for (let i = 0; i < n; i++) {
    const x = src[i]!;
    // Also false for NaN, so NaN/Inf/overflow are all caught here.
    if (!(x >= -HALF_MAX && x <= HALF_MAX)) throw rangeError(name, src, i);
  }
  const groups = kivi4Groups(axis, heads, tokens, headDim, groupSize);
  const scales = new Uint16Array(groups);
  const zeros = new Uint16Array(groups);
  const codes = new Uint8Array(n);
  // Each group is visited through its element indices: keys stride headDim along tokens, values are contiguous.
  forEachGroup(axis, heads, tokens, headDim, groupSize, (g, first, count, stride) => {
    let lo = src[first]!;
    let hi = lo;
    for (let j = 1, i = first + stride; j < count; j++, i += stride) {
      const x = src[i]!;
      if (x < lo) lo = x;
      else if (x > hi) hi = x;
    }
    const { zero, scale } = kivi4Params(lo, hi);
    zeros[g] = zero;
    scales[g] = scale;
    const z = fromHalfBits(zero);
    const s = fromHalfBits(scale);
    if (s === 0) return; // codes stay 0
    for (let j = 0, i = first; j < count; j++, i += stride) {
      // Divide (not multiply by 1/s) so the bound is exact; >= 0.5 before the floor, so | 0 is floor.
      const q = ((src[i]! - z) / s + 0.5) | 0;
      codes[i] = q < KIVI4_MAX_CODE ? q : KIVI4_MAX_CODE;
    }
  });
  return { axis, heads, tokens, headDim, groupSize, packed: packNibbles(codes), scales, zeros };
}

/** Inverse of quantizeKivi4: float32 [heads, tokens, headDim]. */
export function dequantizeKivi4(t: Kivi4Tensor, out?: Float32Array): Float32Array {
  const { axis, heads, tokens, headDim, groupSize } = t;
  checkDims('dequantizeKivi4', heads, tokens, headDim, groupSize);
  const n = heads * tokens * headDim;
  const groups = kivi4Groups(axis, heads, tokens, headDim, groupSize);
  if (t.scales.length < groups || t.zeros.length < groups) throw new RangeError(`dequantizeKivi4: scales/zeros need ${groups} entries, got ${t.scales.length}/${t.zeros.length}`);
  const dst = out ?? new Float32Array(n);
  if (dst.length < n) throw new RangeError(`dequantizeKivi4: out length ${dst.length} < ${n}`);
  const codes = unpackNibbles(t.packed, n);
  forEachGroup(axis, heads, tokens, headDim, groupSize, (g, first, count, stride) => {
    const z = fromHalfBits(t.zeros[g]!);
    const s = fromHalfBits(t.scales[g]!);
    for (let j = 0, i = first; j < count; j++, i += stride) dst[i] = z + codes[i]! * s;
  });
  return dst;
}

/** Calls visit(group, firstIndex, count, stride) for every group, in group order. */
function forEachGroup(
  axis: KiviAxis,
  heads: number,
  tokens: number,
  headDim: number,
  groupSize: number,
  visit: (group: number, first: number, count: number, stride: number) => void,
): void {
  let g = 0;
  if (axis === 'keys') {
    const tokenGroups = Math.ceil(tokens / groupSize);
    for (let h = 0; h < heads; h++) {
      for (let tg = 0; tg < tokenGroups; tg++) {
        const t0 = tg * groupSize;
        const count = Math.min(groupSize, tokens - t0);
        for (let d = 0; d < headDim; d++) visit(g++, (h * tokens + t0) * headDim + d, count, headDim);
      }
    }
    return;
  }
  const dimGroups = Math.ceil(headDim / groupSize);
  for (let r = 0; r < heads * tokens; r++) {
    for (let dg = 0; dg < dimGroups; dg++) {
      const d0 = dg * groupSize;
      visit(g++, r * headDim + d0, Math.min(groupSize, headDim - d0), 1);
    }
  }
}
