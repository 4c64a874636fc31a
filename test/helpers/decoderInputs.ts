import ort from 'onnxruntime-node';
import { mulberry32 } from '../../kernels/sampling.js';
import type { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';

/** Seeded random token ids below `limit` (ids 3..limit avoid the chat specials at 0..2). */
export function randomTokenIds(count: number, seed: number, limit = 49000): number[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => 3 + Math.floor(random() * (limit - 3)));
}

/** Rows [start, end) of a [1, S, H] embeddings tensor, as a new tensor. */
export function sliceRows(embeds: ort.Tensor, start: number, end: number): ort.Tensor {
  const hidden = embeds.dims[2]!;
  const data = (embeds.data as Float32Array | Uint16Array).slice(start * hidden, end * hidden);
  return new ort.Tensor(embeds.type as 'float32', data as Float32Array, [1, end - start, hidden]);
}

export async function embedIds(model: VisionLanguageModel, ids: number[]): Promise<ort.Tensor> {
  return model.embed(ids);
}

export function maxAbsDiff(a: Float32Array, b: Float32Array, bOffset = 0, length = a.length): number {
  let max = 0;
  for (let i = 0; i < length; i++) {
    const d = Math.abs(a[i]! - b[bOffset + i]!);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}
