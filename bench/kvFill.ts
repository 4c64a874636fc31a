import { float32ToFloat16 } from '../kernels/fp16.js';
import { mulberry32 } from '../kernels/sampling.js';
import type { KvCache } from '../src/model/kvCache.js';

/**
 * Seeded values (uniform in [-0.5, 0.5)) in the first `tokens` rows of every [1, KV, rows, D]
 * tensor of `cache`, float32 or float16: a past for decode benches, whose cost does not depend on
 * what the KV holds.
 */
export function fillKvRows(cache: KvCache, tokens: number, seed: number): void {
  const random = mulberry32(seed);
  for (const layer of cache.layers) {
    for (const tensor of [layer.key, layer.value]) {
      const [, heads, rows, dim] = tensor.dims as [number, number, number, number];
      const values = new Float32Array(tokens * dim);
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < values.length; i++) values[i] = random() - 0.5;
        if (tensor.type === 'float16') (tensor.data as Uint16Array).set(float32ToFloat16(values), h * rows * dim);
        else (tensor.data as Float32Array).set(values, h * rows * dim);
      }
    }
  }
}
