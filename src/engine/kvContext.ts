import ort from 'onnxruntime-node';
import type { AssembledContext } from '../../memory/contextAssembler.js';
import type { LayerKv } from '../../memory/kvSurgery.js';
import { VigilError } from '../../common/errors.js';
import type { KvSpec } from '../model/kvCache.js';
import { KvCache } from '../model/kvCache.js';
import { floatTensor } from '../model/tensors.js';

type ContextArrays = Pick<AssembledContext, 'keys' | 'values' | 'length'> & { keys16?: Uint16Array[] | undefined; values16?: Uint16Array[] | undefined };

/**
 * Wraps an assembled float32 context as the decoder's past (converted to its KV dtype). Float16
 * bits the context already carries (a WindowLayout for a float16 decoder) are used as they are.
 */
export function toKvCache(context: ContextArrays, spec: KvSpec): KvCache {
  const dims = [1, spec.numKvHeads, context.length, spec.headDim];
  const { keys16, values16 } = context;
  return new KvCache(
    context.keys.map((key, layer) =>
      spec.type === 'float16' && keys16 && values16
        ? { key: new ort.Tensor('float16', keys16[layer]!, dims), value: new ort.Tensor('float16', values16[layer]!, dims) }
        : { key: floatTensor(spec.type, key, dims), value: floatTensor(spec.type, context.values[layer]!, dims) },
    ),
  );
}

/** The decoder's past or present as typed arrays per layer: float32 values, or the float16 bits as they are. */
export function layerArrays(cache: KvCache): LayerKv[] {
  const data = (tensor: ort.Tensor): Float32Array | Uint16Array => {
    if (tensor.type === 'float32') return tensor.data as Float32Array;
    if (tensor.type === 'float16') return tensor.data as Uint16Array;
    throw new VigilError('DTYPE_MISMATCH', `expected a float KV tensor, got ${tensor.type}`);
  };
  return cache.layers.map((layer) => ({ key: data(layer.key), value: data(layer.value) }));
}
