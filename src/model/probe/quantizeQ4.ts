import { float16ToFloat32, float32ToFloat16 } from '../../../kernels/fp16.js';

/** A [K, N] MatMul weight in onnxruntime's com.microsoft MatMulNBits 4-bit layout. */
export interface Q4Weight {
  /** uint8 [N, blocks, blockSize / 2]: column n's block b, two 4-bit values a byte, low nibble first. */
  packed: Uint8Array;
  /** [N * blocks] per-block scales (float32, or float16 bits when asked for). */
  scales: Float32Array | Uint16Array;
  blocks: number;
  blockSize: number;
  /** The weight MatMulNBits computes with, [K, N] float32: (q - 8) * scale (tests compare against it). */
  dequantized: Float32Array;
}

/**
 * Symmetric 4-bit block quantization as MatMulNBits reads it without zero points (zero point 8):
 * per output column and block of `blockSize` input rows, scale = max|w| / 7 and
 * q = clamp(round(w / scale) + 8, 0, 15). `halfScales` stores the scales as float16 (a q4f16 graph's
 * scales have the activations' type); q is computed from the rounded scale then.
 */
export function quantizeQ4(weight: Float32Array, K: number, N: number, blockSize = 32, halfScales = false): Q4Weight {
  if (weight.length !== K * N) throw new RangeError(`quantizeQ4: ${weight.length} values for [${K}, ${N}]`);
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new RangeError(`quantizeQ4: block size ${blockSize} must be a power of 2 >= 16`);
  const blocks = Math.ceil(K / blockSize);
  const blob = blockSize / 2;
  const packed = new Uint8Array(N * blocks * blob);
  const scales32 = new Float32Array(N * blocks);
  const dequantized = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const end = Math.min(K, start + blockSize);
      let amax = 0;
      for (let k = start; k < end; k++) amax = Math.max(amax, Math.abs(weight[k * N + n]!));
      let scale = amax > 0 ? amax / 7 : 1;
      scale = halfScales ? float16ToFloat32(float32ToFloat16(Float32Array.of(scale)))[0]! : Math.fround(scale);
      scales32[n * blocks + b] = scale;
      const base = (n * blocks + b) * blob;
      for (let i = 0; i < blockSize; i++) {
        const k = start + i;
        // Padding rows past K quantize to the zero point (they multiply nothing).
        const q = k < end ? Math.max(0, Math.min(15, Math.round(weight[k * N + n]! / scale) + 8)) : 8;
        if (k < end) dequantized[k * N + n] = Math.fround((q - 8) * scale);
        packed[base + (i >> 1)]! |= i & 1 ? q << 4 : q;
      }
    }
  }
  return { packed, scales: halfScales ? float32ToFloat16(scales32) : scales32, blocks, blockSize, dequantized };
}
