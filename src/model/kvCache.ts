import type ort from 'onnxruntime-node';
import { invariant, VigilError } from '../../common/errors.js';
import { emptyFloatTensor, type FloatType } from './tensors.js';

/** Shape facts of a decoder's KV cache, read from the graph's past_key_values inputs. */
export interface KvSpec {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  type: FloatType;
}

export interface KvLayer {
  /** [1, KV, length, D], post-RoPE as the decoder expects its past keys. */
  key: ort.Tensor;
  value: ort.Tensor;
}

/**
 * An explicit KV context for one decoder call. Every layer has the same length, because all layers
 * share one attention_mask; the caller decides what is in it (sinks, retrieved chunks, window).
 */
export class KvCache {
  readonly length: number;

  constructor(readonly layers: readonly KvLayer[]) {
    invariant(layers.length > 0, 'a KV cache needs at least one layer');
    const length = layers[0]!.key.dims[2]!;
    layers.forEach((layer, i) => {
      for (const [kind, tensor] of [['key', layer.key], ['value', layer.value]] as const) {
        if (tensor.dims.length !== 4 || tensor.dims[2] !== length) {
          throw new VigilError(
            'SHAPE_MISMATCH',
            `KV layer ${i} ${kind} has shape [${tensor.dims.join(', ')}]; every layer must be [1, KV, ${length}, D]`,
          );
        }
      }
    });
    this.length = length;
  }

  static empty(spec: KvSpec): KvCache {
    return emptyKvCache(spec, 0);
  }
}

/** A zero-filled cache of `length` tokens per layer (0 = the empty past of a first call). */
export function emptyKvCache(spec: KvSpec, length: number): KvCache {
  const dims = [1, spec.numKvHeads, length, spec.headDim];
  return new KvCache(
    Array.from({ length: spec.numLayers }, () => ({ key: emptyFloatTensor(spec.type, dims), value: emptyFloatTensor(spec.type, dims) })),
  );
}
