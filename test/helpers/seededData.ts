// Deterministic test data for the kernels' reference tests, independent of any kernel (an LCG, not
// kernels/sampling.ts), so a kernel under test never generates its own inputs.

/** n values uniform in [-1, 1), times scale, plus offset, from a seeded linear congruential generator. */
export function seededData(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 31 - 1) * scale + offset;
  }
  return a;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Half an ulp of float32 at |x| (the final rounding of a dequantized value). */
export function halfUlp(x: number): number {
  f32[0] = Math.abs(x);
  const e = (u32[0]! >>> 23) & 0xff;
  return e === 0 ? 2 ** -150 : 2 ** (e - 127 - 24);
}
