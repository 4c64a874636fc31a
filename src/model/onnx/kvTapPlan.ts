import type { GraphStructure } from './onnxStructure.js';

/** One layer's new key / value rows: the values its attention appends to the past to make `present`. */
export interface KvTapLayer {
  key: string;
  value: string;
}

/**
 * Where each layer's new key/value rows live in a decoder graph, so a call can fetch only those (S
 * rows) instead of `present` (the whole context: onnxruntime-node copies every fetched output into
 * a fresh JavaScript buffer, ~230 MB a step at a 5k context, docs/PERFORMANCE.md "Decode in place").
 */
export interface KvTaps {
  /** Per layer, the values to expose; every one of them is made a graph output. */
  layers: KvTapLayer[];
  /** 'bsh': [batch, S, KV * D] (GroupQueryAttention's key/value inputs); 'bhsd': [batch, KV, S, D] (a Concat's). */
  layout: 'bsh' | 'bhsd';
  /** The keys are before RoPE (the attention op rotates them itself: do_rotary); Vigil rotates them to their positions. */
  keysPreRope: boolean;
  /**
   * Every layer's attention is GroupQueryAttention, which reads the valid lengths from the mask
   * (seqlens_k) and treats the rest of its past input as buffer: a past tensor with more rows than
   * the mask's past can be fed, so decoding can append rows to one buffer instead of re-laying it out.
   */
  lengthsFromMask: boolean;
}

export type KvTapPlan = ({ complete: true } & KvTaps) | { complete: false; reason: string };

/**
 * Finds each layer's new key/value rows from the producers of `present.N.key` / `present.N.value`:
 * a com.microsoft GroupQueryAttention (its key and value inputs, [B, S, KV*D]; pre-RoPE when
 * do_rotary = 1) or a Concat of `past_key_values.N.*` with the new rows on the sequence axis
 * ([B, KV, S, D], post-RoPE). Anything else (packed QKV into GroupQueryAttention, attention ops that
 * take the past themselves in other layouts) is not planned: the caller keeps fetching `present`.
 */
export function planKvTaps(g: GraphStructure): KvTapPlan {
  const numLayers = [...g.inputs.keys()].filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  if (numLayers === 0) return { complete: false, reason: 'no past_key_values.N.key inputs' };
  const layers: KvTapLayer[] = [];
  const layouts = new Set<KvTaps['layout']>();
  const preRope = new Set<boolean>();
  let gqaLayers = 0;
  // Exports name their outputs through Identity nodes: look past them.
  const source = (name: string): string => {
    let current = name;
    for (let node = g.producer.get(current); node?.opType === 'Identity' && node.domain === '' && node.inputs[0]; node = g.producer.get(current)) current = node.inputs[0];
    return current;
  };
  for (let i = 0; i < numLayers; i++) {
    const keySource = source(`present.${i}.key`);
    const valueSource = source(`present.${i}.value`);
    const keyNode = g.producer.get(keySource);
    const valueNode = g.producer.get(valueSource);
    if (!keyNode || !valueNode) return { complete: false, reason: `layer ${i}: present.${i}.key/value are not produced by a node` };
    if (keyNode.opType === 'GroupQueryAttention' && keyNode.domain === 'com.microsoft') {
      if (valueNode !== keyNode || keyNode.outputs[1] !== keySource || keyNode.outputs[2] !== valueSource) {
        return { complete: false, reason: `layer ${i}: GroupQueryAttention '${keyNode.name}' does not output present.${i}.key/value as its outputs 1/2` };
      }
      const [, key, value] = keyNode.inputs;
      if (!key || !value) return { complete: false, reason: `layer ${i}: GroupQueryAttention '${keyNode.name}' takes packed QKV (no separate key/value input)` };
      layers.push({ key, value });
      layouts.add('bsh');
      preRope.add(Number(keyNode.attributes.get('do_rotary') ?? 0) === 1);
      gqaLayers++;
      continue;
    }
    const concat = (node: typeof keyNode, kind: 'key' | 'value'): string | undefined => {
      const axis = Number(node.attributes.get('axis'));
      const pastName = `past_key_values.${i}.${kind}`;
      if (node.opType !== 'Concat' || node.domain !== '' || node.inputs.length !== 2 || source(node.inputs[0]!) !== pastName || (axis !== 2 && axis !== -2)) return undefined;
      return node.inputs[1];
    };
    const key = concat(keyNode, 'key');
    const value = concat(valueNode, 'value');
    if (!key || !value) return { complete: false, reason: `layer ${i}: present.${i}.key comes from ${keyNode.opType} '${keyNode.name}', not a GroupQueryAttention or a Concat of the past` };
    layers.push({ key, value });
    layouts.add('bhsd');
    preRope.add(false);
  }
  if (layouts.size !== 1 || preRope.size !== 1) return { complete: false, reason: 'layers differ in how their new key/value rows are laid out or rotated' };
  return { complete: true, layers, layout: [...layouts][0]!, keysPreRope: [...preRope][0]!, lengthsFromMask: gqaLayers === numLayers };
}
