// IEEE 754 binary16 <-> binary32 conversion. Node 20 has no Float16Array, so
// half tensors travel as Uint16Array bit patterns.
import { nativeKernels } from './native.js';

// Decode table: every half pattern maps to its exact float32 bits. 256 KiB,
// built once; decoding is then one load per element and keeps NaN payloads.
const DECODE_BITS = new Uint32Array(65536);
const DECODE = new Float32Array(DECODE_BITS.buffer);

for (let h = 0; h < 65536; h++) {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) {
    // Inf / NaN: widen the payload; the quiet bit lands on the float32 quiet bit.
    DECODE_BITS[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
  } else if (exp !== 0) {
    // Normal: rebias exponent 15 -> 127 (add 112 << 23 to the shifted bits).
    DECODE_BITS[h] = (sign | (((h & 0x7fff) << 13) + 0x38000000)) >>> 0;
  } else {
    // Zero / subnormal: mant * 2^-24 is exact in float32.
    const v = mant * 5.9604644775390625e-8;
    DECODE[h] = sign !== 0 ? -v : v;
  }
}

/** Rounds float32 bits (as uint32) to half bits, round-to-nearest-even. */
function roundF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) {
    // Inf stays Inf; NaN keeps its top payload bits and is forced quiet.
    return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520: rounds past max half (65504)
  if (abs >= 0x38800000) {
    // Normal half range (>= 2^-14): rebias, keep 10 mantissa bits, RNE on the
    // 13 dropped bits. A carry out of the mantissa correctly bumps the exponent.
    let h = (abs - 0x38000000) >>> 13;
    const rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  if (abs <= 0x33000000) return sign; // <= 2^-25: rounds to (signed) zero, tie goes to even 0
  // Subnormal half: value in units of 2^-24 is m >>> shift, shift in [14, 24].
  const m = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - (abs >>> 23);
  let h = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rem > halfway || (rem === halfway && (h & 1) !== 0)) h++; // may carry into smallest normal: correct
  return sign | h;
}

// Scratch for scalar conversion of float64 values (read back as two uint32 words).
const F64 = new Float64Array(1);
const F64_WORDS = new Uint32Array(F64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: high word is [1]
const LO = 1 - HI;

/**
 * Half bits of a JS number, rounded directly from float64 (RNE). Going through
 * float32 first could double-round, so this works on the float64 bits.
 */
export function toHalfBits(x: number): number {
  F64[0] = x;
  const hi = F64_WORDS[HI]!;
  const lo = F64_WORDS[LO];
  const sign = (hi >>> 16) & 0x8000;
  const ahi = hi & 0x7fffffff;
  const e = ahi >>> 20; // biased float64 exponent
  if (e === 0x7ff) {
    const nan = (ahi & 0xfffff) !== 0 || lo !== 0;
    return nan ? sign | 0x7e00 | ((ahi >>> 10) & 0x3ff) : sign | 0x7c00;
  }
  if (e >= 1009) {
    // Normal half range (exponent -14..15). Overflow handled by the carry or the check.
    if (e > 1038) return sign | 0x7c00;
    let h = ((e - 1008) << 10) | ((ahi >>> 10) & 0x3ff);
    const rem = ahi & 0x3ff; // top 10 dropped bits; lo holds the rest (sticky)
    if (rem > 0x200 || (rem === 0x200 && (lo !== 0 || (h & 1) !== 0))) h++;
    return h >= 0x7c00 ? sign | 0x7c00 : sign | h;
  }
  // Subnormal half range: scale to units of 2^-24 (exact: power of two, no
  // overflow) and round to an integer with ties to even.
  const s = Math.abs(x) * 16777216;
  let f = Math.floor(s);
  const d = s - f; // exact, s < 1024
  if (d > 0.5 || (d === 0.5 && (f & 1) !== 0)) f++;
  return sign | f;
}

/** Exact float value of a half bit pattern (only the low 16 bits are used). */
export function fromHalfBits(h: number): number {
  return DECODE[h & 0xffff]!;
}

/** Converts float32 values to half bit patterns (RNE, subnormals, ±Inf on overflow, quiet NaN). */
export function float32ToFloat16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length;
  const dst = out ?? new Uint16Array(n);
  if (dst.length < n) throw new RangeError(`float32ToFloat16: out length ${dst.length} < ${n}`);
  const native = nativeKernels();
  if (native) {
    native.float32ToFloat16(src, dst);
    return dst;
  }
  // Read float32 bits directly; a Float32Array's byteOffset is always 4-aligned.
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const u = bits[i]!;
    const abs = u & 0x7fffffff;
    // Fast path for normal halves (nearly all KV values): rebias and round to nearest even in one
    // add, since dropped bits + 0xfff + the kept lsb carry exactly when RNE rounds up.
    if (abs >= 0x38800000 && abs < 0x477ff000) {
      dst[i] = ((u >>> 16) & 0x8000) | ((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13);
    } else {
      dst[i] = roundF32Bits(u);
    }
  }
  return dst;
}

/** Converts half bit patterns to float32 exactly (NaN payloads preserved). */
export function float16ToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const n = src.length;
  const dst = out ?? new Float32Array(n);
  if (dst.length < n) throw new RangeError(`float16ToFloat32: out length ${dst.length} < ${n}`);
  const native = nativeKernels();
  if (native) {
    native.float16ToFloat32(src, dst);
    return dst;
  }
  // Copy as uint32 so NaN bit patterns survive (number round-trips may canonicalize them).
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
  for (let i = 0; i < n; i++) bits[i] = DECODE_BITS[src[i]!]!;
  return dst;
}
