/** How many scales a weight gets: one for the whole tensor (quantize_dynamic's default) or one per output column. */
export type Int8Granularity = 'tensor' | 'column';

/** A [K, N] MatMul weight quantized the way onnxruntime's quantize_dynamic writes it (symmetric int8). */
export interface Int8Weight {
  /** int8 [K, N], the MatMulInteger B input. */
  values: Int8Array;
  /** float32 scales: [1] per tensor, [N] per column. */
  scales: Float32Array;
  granularity: Int8Granularity;
  /** The weight MatMulInteger computes with, [K, N] float32: q * scale (tests compare against it). */
  dequantized: Float32Array;
}

/** Round half to even, as numpy's rint and onnxruntime's QuantizeLinear (std::nearbyint) round. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds halves up; a half whose upward neighbour is odd goes down instead.
  const even = Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return even === 0 ? 0 : even; // no -0

}

/**
 * Symmetric int8 weight quantization as onnxruntime's quantize_dynamic does by default (weight type
 * QInt8, symmetric, zero point 0): scale = max|w| / 127 over the tensor or each column (float32),
 * q = clamp(rint(w / scale), -127, 127). An all-zero tensor or column gets scale 1 (q all 0).
 */
export function quantizeInt8(weight: Float32Array, K: number, N: number, granularity: Int8Granularity = 'tensor'): Int8Weight {
  if (weight.length !== K * N) throw new RangeError(`quantizeInt8: ${weight.length} values for [${K}, ${N}]`);
  const columns = granularity === 'column' ? N : 1;
  const amax = new Float32Array(columns);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const c = granularity === 'column' ? n : 0;
      amax[c] = Math.max(amax[c]!, Math.abs(weight[k * N + n]!));
    }
  }
  const scales = amax.map((a) => (a > 0 ? Math.fround(a / 127) : 1));
  const values = new Int8Array(K * N);
  const dequantized = new Float32Array(K * N);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const i = k * N + n;
      const scale = scales[granularity === 'column' ? n : 0]!;
      const q = Math.max(-127, Math.min(127, roundHalfEven(Math.fround(weight[i]! / scale))));
      values[i] = q;
      dequantized[i] = Math.fround(q * scale);
    }
  }
  return { values, scales, granularity, dequantized };
}

/** onnxruntime's DynamicQuantizeLinear of a float32 tensor: uint8 values, their scale and zero point. */
export interface DynamicQuantized {
  values: Uint8Array;
  scale: number;
  zeroPoint: number;
}

/**
 * DynamicQuantizeLinear (ONNX spec): range [min(0, min x), max(0, max x)] over the whole tensor,
 * scale = range / 255, zero point = clamp(rint(-min / scale), 0, 255), q = clamp(rint(x / scale) + zp, 0, 255).
 * The reference the int8 graphs' activations are checked against (float32 arithmetic throughout).
 */
export function dynamicQuantizeLinear(x: Float32Array): DynamicQuantized {
  let lo = 0;
  let hi = 0;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = Math.fround(Math.fround(hi - lo) / 255);
  if (scale === 0) return { values: new Uint8Array(x.length), scale, zeroPoint: 0 };
  const zeroPoint = Math.max(0, Math.min(255, roundHalfEven(Math.fround(-lo / scale))));
  const values = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) values[i] = Math.max(0, Math.min(255, roundHalfEven(Math.fround(x[i]! / scale)) + zeroPoint));
  return { values, scale, zeroPoint };
}
