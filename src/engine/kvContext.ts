import type { AssembledContext } from '../../memory/contextAssembler.js';
import type { KvSpec } from '../model/kvCache.js';
import { KvCache } from '../model/kvCache.js';
import { floatTensor } from '../model/tensors.js';

/** Wraps an assembled float32 context as the decoder's past (converted to its KV dtype). */
export function toKvCache(context: Pick<AssembledContext, 'keys' | 'values' | 'length'>, spec: KvSpec): KvCache {
  const dims = [1, spec.numKvHeads, context.length, spec.headDim];
  return new KvCache(
    context.keys.map((key, layer) => ({
      key: floatTensor(spec.type, key, dims),
      value: floatTensor(spec.type, context.values[layer]!, dims),
    })),
  );
}
