import { fnv1a32 } from '../../../kernels/hash.js';
import { mulberry32 } from '../../../kernels/sampling.js';
import type { WeightRole, WeightSource } from './weightSource.js';

/** Uniform values with the standard deviation of HF's default init (0.02), in [-a, a] with a = std*sqrt(3). */
const STD_BY_ROLE: Record<Exclude<WeightRole, 'query_key'>, number> = {
  linear: 0.02,
  embedding: 0.02,
  position: 0.02,
  bias: 0.01,
  norm: 0.05,
};

/**
 * q/k projections get std gain/sqrt(in) so that attention scores have std ~gain^2 (~1.4): with
 * 0.02 everywhere, attention would be near uniform and positions (RoPE) would barely move the
 * logits, which would let RoPE or mask bugs pass the conformance tests.
 */
const QUERY_KEY_GAIN = 1.2;

/**
 * Seeded random weights. Norm weights are 1 + small noise (so a wrong norm shows in the logits);
 * everything else is zero-mean uniform. Deterministic for a given seed and tensor name.
 */
export function randomWeightSource(seed: number): WeightSource {
  return (name, dims, role) => {
    const count = dims.reduce((a, b) => a * b, 1);
    const values = new Float32Array(count);
    // FNV-1a of the name: each tensor's stream depends only on (seed, name), not build order.
    const random = mulberry32((fnv1a32(name) ^ Math.imul(seed, 0x9e3779b1)) >>> 0);
    const std = role === 'query_key' ? QUERY_KEY_GAIN / Math.sqrt(dims[0]!) : STD_BY_ROLE[role];
    const amplitude = std * Math.sqrt(3);
    const offset = role === 'norm' ? 1 : 0;
    for (let i = 0; i < count; i++) values[i] = offset + (2 * random() - 1) * amplitude;
    return values;
  };
}
