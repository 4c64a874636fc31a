// Asymmetric 8-bit quantization of KV tensors laid out [heads, tokens, headDim],
// grouped the KIVI way: keys per channel (one group per (head, dim) across the
// tokens), because key outliers sit in fixed channels; values per token (one
// group per (head, token) across headDim), because value error is mixed per
// token by the attention weights.
//
// Specification, per group with float32 elements x:
//   lo = min x, hi = max x                       (exact float32 values)
//   zero  = lo                                   (stored as float32, exact)
//   scale = fround((hi - lo) / 255), raised to the next float32 if
//           255 * scale < hi - lo, so the codes never need clamping
//           (0 when hi == lo: a constant group)
//   inv   = 1 / scale in float64 (0 when scale == 0)
//   code  = floor((x - lo) * inv + 0.5)          (0..255; 0 when scale == 0)
//   x'    = fround(zero + code * scale)          (float64 arithmetic, one float32 rounding)
// Hence |x - x'| <= scale / 2, plus the final float32 rounding of x' and a float64 rounding
// (relative 2^-52) from multiplying by inv instead of dividing by scale.
// Non-finite inputs have no range and are rejected.
import { nativeKernels } from './native.js';

/** Highest code: codes use the full unsigned 8-bit range. */
export const INT8_MAX_CODE = 255;

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Scale for a group with range hi - lo (both float32); see the specification above. */
export function int8Scale(lo: number, hi: number): number {
  const range = hi - lo; // exact in float64 for float32 inputs
  if (!(range > 0)) return 0;
  let scale = Math.fround(range / INT8_MAX_CODE);
  if (scale * INT8_MAX_CODE < range) {
    // Rounded down (matters mostly for subnormal scales): take the next float32 up.
    F32[0] = scale;
    U32[0]! += 1;
    scale = F32[0];
  }
  return scale;
}

function checkLayout(
  name: string,
  src: ArrayLike<number>,
  codes: Uint8Array,
  heads: number,
  tokens: number,
  headDim: number,
  groups: number,
  scales: Float32Array,
  zeros: Float32Array,
): void {
  for (const [k, v] of [['heads', heads], ['tokens', tokens], ['headDim', headDim]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name}: ${k} must be a positive integer, got ${v}`);
  }
  const n = heads * tokens * headDim;
  if (src.length < n) throw new RangeError(`${name}: values length ${src.length} < ${heads}*${tokens}*${headDim}`);
  if (codes.length < n) throw new RangeError(`${name}: codes length ${codes.length} < ${n}`);
  if (scales.length < groups || zeros.length < groups) {
    throw new RangeError(`${name}: scales/zeros need ${groups} entries, got ${scales.length}/${zeros.length}`);
  }
}

/** Index and value of the first non-finite element of src[from, to) (called only when there is one). */
function nonFinite(name: string, src: Float32Array, from: number, to: number, stride: number): RangeError {
  for (let i = from; i < to; i += stride) {
    if (!Number.isFinite(src[i])) return new RangeError(`${name}: non-finite value ${src[i]} at index ${i} cannot be quantized`);
  }
  return new RangeError(`${name}: non-finite value cannot be quantized`);
}

function inverse(scale: number): number {
  return scale > 0 ? 1 / scale : 0;
}

// The code of x, written out inline in the loops below:
//   q = ((x - lo) * inv + 0.5) | 0;  code = min(q, 255)
// (x - lo) * inv + 0.5 is >= 0.5, so truncation (| 0) is floor; by construction of the scale it
// stays below 255.5, so the min() is a guard only. NaN/Inf in a group is caught before this runs.

/**
 * Keys: one group per (head, dim) over the tokens. Writes codes [heads, tokens, headDim]
 * and scales/zeros [heads, headDim].
 */
export function quantizeKeysPerChannel(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  codes: Uint8Array,
  scales: Float32Array,
  zeros: Float32Array,
): void {
  const name = 'quantizeKeysPerChannel';
  checkLayout(name, src, codes, heads, tokens, headDim, heads * headDim, scales, zeros);
  const native = nativeKernels();
  if (native) {
    const poisoned = native.quantizeKeysPerChannel(src, heads, tokens, headDim, codes, scales, zeros);
    if (poisoned >= 0) throw nonFinite(name, src, poisoned * tokens * headDim, (poisoned + 1) * tokens * headDim, 1);
    return;
  }
  // Row by row (token by token) with one range per channel in small arrays: the reads stay
  // sequential whatever the number of tokens (striding a channel at a time over a long block
  // missed the cache on every element: 19 ns per element at 87k tokens).
  const lo = new Float64Array(headDim);
  const hi = new Float64Array(headDim);
  const inv = new Float64Array(headDim);
  for (let h = 0; h < heads; h++) {
    const base = h * tokens * headDim;
    const end = base + tokens * headDim;
    for (let d = 0; d < headDim; d++) lo[d] = hi[d] = src[base + d]!;
    // x * 0 is NaN exactly for NaN and ±Inf, so one sum flags them all.
    let poison = 0;
    for (let row = base; row < end; row += headDim) {
      for (let d = 0; d < headDim; d++) {
        const x = src[row + d]!;
        poison += x * 0;
        if (x < lo[d]!) lo[d] = x;
        else if (x > hi[d]!) hi[d] = x;
      }
    }
    if (poison !== 0) throw nonFinite(name, src, base, end, 1);
    for (let d = 0; d < headDim; d++) {
      const scale = int8Scale(lo[d]!, hi[d]!);
      inv[d] = inverse(scale);
      scales[h * headDim + d] = scale;
      zeros[h * headDim + d] = lo[d]!;
    }
    for (let row = base; row < end; row += headDim) {
      for (let d = 0; d < headDim; d++) {
        const q = ((src[row + d]! - lo[d]!) * inv[d]! + 0.5) | 0; // the code, inlined: this is the hot loop
        codes[row + d] = q < INT8_MAX_CODE ? q : INT8_MAX_CODE;
      }
    }
  }
}

/** Inverse of quantizeKeysPerChannel: float32 [heads, tokens, headDim]. */
export function dequantizeKeysPerChannel(
  codes: Uint8Array,
  scales: Float32Array,
  zeros: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  out?: Float32Array,
): Float32Array {
  const dst = out ?? new Float32Array(heads * tokens * headDim);
  checkLayout('dequantizeKeysPerChannel', dst, codes, heads, tokens, headDim, heads * headDim, scales, zeros);
  const native = nativeKernels();
  if (native) {
    native.dequantizeKeysPerChannel(codes, scales, zeros, heads, tokens, headDim, dst);
    return dst;
  }
  for (let h = 0; h < heads; h++) {
    const base = h * tokens * headDim;
    const end = base + tokens * headDim;
    const g = h * headDim;
    // Row by row (as in quantizeKeysPerChannel): sequential reads and writes.
    for (let row = base; row < end; row += headDim) {
      for (let d = 0; d < headDim; d++) dst[row + d] = zeros[g + d]! + codes[row + d]! * scales[g + d]!;
    }
  }
  return dst;
}

/**
 * Values: one group per (head, token) over headDim. Writes codes [heads, tokens, headDim]
 * and scales/zeros [heads, tokens].
 */
export function quantizeValuesPerToken(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  codes: Uint8Array,
  scales: Float32Array,
  zeros: Float32Array,
): void {
  const name = 'quantizeValuesPerToken';
  checkLayout(name, src, codes, heads, tokens, headDim, heads * tokens, scales, zeros);
  const native = nativeKernels();
  if (native) {
    const poisoned = native.quantizeValuesPerToken(src, heads, tokens, headDim, codes, scales, zeros);
    if (poisoned >= 0) throw nonFinite(name, src, poisoned * headDim, (poisoned + 1) * headDim, 1);
    return;
  }
  const rows = heads * tokens;
  for (let r = 0; r < rows; r++) {
    const base = r * headDim;
    const end = base + headDim;
    let lo = src[base]!;
    let hi = lo;
    let poison = 0; // see quantizeKeysPerChannel
    for (let i = base; i < end; i++) {
      const x = src[i]!;
      poison += x * 0;
      if (x < lo) lo = x;
      else if (x > hi) hi = x;
    }
    if (poison !== 0) throw nonFinite(name, src, base, end, 1);
    const scale = int8Scale(lo, hi);
    const inv = inverse(scale);
    scales[r] = scale;
    zeros[r] = lo;
    for (let i = base; i < end; i++) {
      const q = ((src[i]! - lo) * inv + 0.5) | 0; // code(), inlined
      codes[i] = q < INT8_MAX_CODE ? q : INT8_MAX_CODE;
    }
  }
}

/** Inverse of quantizeValuesPerToken: float32 [heads, tokens, headDim]. */
export function dequantizeValuesPerToken(
  codes: Uint8Array,
  scales: Float32Array,
  zeros: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  out?: Float32Array,
): Float32Array {
  const dst = out ?? new Float32Array(heads * tokens * headDim);
  checkLayout('dequantizeValuesPerToken', dst, codes, heads, tokens, headDim, heads * tokens, scales, zeros);
  const native = nativeKernels();
  if (native) {
    native.dequantizeValuesPerToken(codes, scales, zeros, heads, tokens, headDim, dst);
    return dst;
  }
  const rows = heads * tokens;
  for (let r = 0; r < rows; r++) {
    const lo = zeros[r]!;
    const scale = scales[r]!;
    for (let i = r * headDim; i < (r + 1) * headDim; i++) dst[i] = lo + codes[i]! * scale;
  }
  return dst;
}
