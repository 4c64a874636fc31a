import ort from 'onnxruntime-node';
import { rotateHeads } from '../../kernels/rope.js';
import { KvCache, type KvSpec } from './kvCache.js';
import type { KvTaps } from './onnx/kvTapPlan.js';
import { floatTensor, toFloat32 } from './tensors.js';

/**
 * This call's new key/value rows, fetched from the kv taps (src/model/onnx/kvTapPlan.ts), as a
 * [1, KV, S, D] cache with post-RoPE keys, the form `present` would have held them in: transposed
 * from GroupQueryAttention's [1, S, KV * D], and rotated to `positions` when the graph rotates them
 * itself (do_rotary; Decoder.verifyImplicitRope has checked that its rotation is this one).
 */
export function newRowsAsCache(
  out: Record<string, ort.Tensor>,
  taps: KvTaps,
  spec: KvSpec,
  rows: number,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
): KvCache {
  const { numKvHeads, headDim, type } = spec;
  const dims = [1, numKvHeads, rows, headDim];
  const toHeadMajor = (tensor: ort.Tensor): ort.Tensor => {
    if (taps.layout === 'bhsd') return tensor;
    const src = tensor.data as Float32Array | Uint16Array;
    const dst = type === 'float16' ? new Uint16Array(src.length) : new Float32Array(src.length);
    for (let s = 0; s < rows; s++) {
      for (let h = 0; h < numKvHeads; h++) dst.set(src.subarray((s * numKvHeads + h) * headDim, (s * numKvHeads + h + 1) * headDim), (h * rows + s) * headDim);
    }
    return type === 'float16' ? new ort.Tensor('float16', dst as Uint16Array, dims) : new ort.Tensor('float32', dst as Float32Array, dims);
  };
  const layers = taps.layers.map((names) => {
    let key = toHeadMajor(out[names.key]!);
    if (taps.keysPreRope) key = floatTensor(type, rotateHeads(toFloat32(key), numKvHeads, rows, headDim, positions, invFreq, 1), dims);
    return { key, value: toHeadMajor(out[names.value]!) };
  });
  return new KvCache(layers);
}
