import { ATTRIBUTE_TYPE, ONNX_DATA_TYPE } from './onnxSchema.js';
import type { GraphStructure, StructureNode } from './onnxStructure.js';

/**
 * Split decode attention (issue 19, docs/PERFORMANCE.md "Split decode attention"): each layer's
 * com.microsoft GroupQueryAttention is replaced by the same attention written as two parts, the past
 * (read in place from its input, a buffer whose rows after the valid length are masked) and this
 * call's new rows, joined only at the scores: softmax over [past scores ++ new scores], then
 * P_past·V_past + P_new·V_new. GroupQueryAttention copies the whole past into its `present` every
 * call (~230 MB a step at a 5k context) and onnxruntime runs it even when `present` is not fetched;
 * the split form reads the past once and writes no present at all, so the rewritten graph has no
 * `present.N.*` outputs (Decoder assembles `present` from the new rows when a caller wants it).
 */

/** An ONNX NodeProto as protobufjs encodes it (src/model/onnx/onnxSchema.ts). */
export interface NodeProtoObject {
  name: string;
  op_type: string;
  domain: string;
  input: string[];
  output: string[];
  attribute?: Array<Record<string, unknown>>;
}

export interface SplitAttentionLayer {
  /** The GroupQueryAttention node to remove (its index in the graph's node list). */
  node: StructureNode;
  /** Nodes computing the node's output 0 (same name) without it, in topological order. */
  replacement: NodeProtoObject[];
  /** Identity nodes between its present outputs and the graph's `present.N.*` (exports name outputs so): removed too. */
  identities: StructureNode[];
  /**
   * For do_rotary: the replacement's rotated new keys [B, S, KV * D] (com.microsoft RotaryEmbedding
   * of the node's key input at GroupQueryAttention's positions), post-RoPE as `present` held them.
   */
  rotatedKey?: string;
}

export type SplitAttentionPlan =
  | { complete: true; layers: SplitAttentionLayer[]; removedOutputs: string[] }
  | { complete: false; reason: string };

/** onnxruntime's float32 mask value: exp() of it is 0, and two of them sum to -inf, never NaN unless a row sees nothing. */
const MASKED = -3.4028234663852886e38;
const INT64_MAX = 9223372036854775807n;

/**
 * Plans the rewrite for a decoder whose every layer's present.N.key/value is output 1/2 of a
 * GroupQueryAttention that takes separate query/key/value (RoPE outside it, do_rotary = 0), float32,
 * with no sliding window, softcap, smooth softmax or head sink, and whose present outputs feed
 * nothing but the graph's outputs. Anything else keeps GroupQueryAttention (`reason` says why).
 */
export function planSplitAttention(g: GraphStructure): SplitAttentionPlan {
  const opsetVersion = g.opsets.get('') ?? 0;
  const numLayers = [...g.inputs.keys()].filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  if (numLayers === 0) return { complete: false, reason: 'no past_key_values.N.key inputs' };
  // Reshape's allowzero (a zero-row past, before the first frame) needs opset 14.
  if (opsetVersion < 14) return { complete: false, reason: `opset ${opsetVersion} < 14` };
  const past = g.inputs.get('past_key_values.0.key');
  if (past?.elemType !== ONNX_DATA_TYPE.float32) return { complete: false, reason: 'the KV is not float32' };
  const headDim = past.dims?.[3];
  if (typeof headDim !== 'number') return { complete: false, reason: 'past_key_values.0.key has no static head size' };
  const consumers = new Map<string, number>();
  for (const node of g.nodes) for (const input of node.inputs) consumers.set(input, (consumers.get(input) ?? 0) + 1);
  const layers: SplitAttentionLayer[] = [];
  const removedOutputs: string[] = [];
  // Exports name their outputs through Identity nodes: look past them (each may feed nothing else).
  const source = (name: string, identities: StructureNode[]): string | undefined => {
    let current = name;
    for (let node = g.producer.get(current); node?.opType === 'Identity' && node.domain === ''; node = g.producer.get(current)) {
      if ((consumers.get(current) ?? 0) > 0) return undefined;
      identities.push(node);
      current = node.inputs[0]!;
    }
    return (consumers.get(current) ?? 0) > (current === name ? 0 : 1) ? undefined : current;
  };
  let shared: { key: string; terms: SharedTerms } | undefined;
  for (let i = 0; i < numLayers; i++) {
    const identities: StructureNode[] = [];
    const keySource = source(`present.${i}.key`, identities);
    const valueSource = source(`present.${i}.value`, identities);
    if (!keySource || !valueSource) return { complete: false, reason: `layer ${i}: a node reads present.${i}.*` };
    const node = g.producer.get(keySource);
    if (!node || node.opType !== 'GroupQueryAttention' || node.domain !== 'com.microsoft') return { complete: false, reason: `layer ${i}: present.${i}.key is not a GroupQueryAttention output` };
    const why = unsupported(node, i);
    if (why) return { complete: false, reason: why };
    if (node.outputs[1] !== keySource || node.outputs[2] !== valueSource) return { complete: false, reason: `layer ${i}: present outputs are not the node's outputs 1/2` };
    const numHeads = Number(node.attributes.get('num_heads'));
    const kvHeads = Number(node.attributes.get('kv_num_heads'));
    if (!(numHeads > 0 && kvHeads > 0 && numHeads % kvHeads === 0)) return { complete: false, reason: `layer ${i}: num_heads ${numHeads} / kv_num_heads ${kvHeads}` };
    const scale = Number(node.attributes.get('scale') ?? 0) || 1 / Math.sqrt(headDim);
    let rotary: Geometry['rotary'];
    if (Number(node.attributes.get('do_rotary') ?? 0) === 1) {
      const cosWidth = g.initializers.get(node.inputs[7] ?? '')?.dims?.[1];
      if (typeof cosWidth !== 'number' || !node.inputs[8]) return { complete: false, reason: `layer ${i}: do_rotary without a static cos_cache / sin_cache` };
      rotary = { cos: node.inputs[7]!, sin: node.inputs[8], dim: 2 * cosWidth, interleaved: Number(node.attributes.get('rotary_interleaved') ?? 0) };
    }
    const geo = { numHeads, kvHeads, headDim, scale, rotary };
    const w = new NodeWriter(`/vigil/split_attention/layers.${i}`);
    // Layers whose masks come from the same inputs share one computation of them, written before layer 0's attention.
    const sharingKey = JSON.stringify([node.inputs.slice(5, 9), node.inputs[10] ?? '', rotary ?? null, kvHeads, numHeads]);
    if (shared?.key !== sharingKey) shared = { key: sharingKey, terms: sharedTerms(w, node, geo) };
    const replacement = splitAttentionNodes(w, node, i, geo, shared.terms);
    const layer: SplitAttentionLayer = { node, identities, replacement };
    if (rotary) layer.rotatedKey = rotatedKeyName(i);
    layers.push(layer);
    removedOutputs.push(`present.${i}.key`, `present.${i}.value`);
  }
  return { complete: true, layers, removedOutputs };
}

function unsupported(node: StructureNode, layer: number): string | undefined {
  const attr = (name: string) => node.attributes.get(name);
  if (Number(attr('local_window_size') ?? -1) !== -1) return `layer ${layer}: sliding-window GroupQueryAttention`;
  if (Number(attr('softcap') ?? 0) !== 0) return `layer ${layer}: softcap`;
  if (Number(attr('smooth_softmax') ?? 0) !== 0) return `layer ${layer}: smooth softmax`;
  if (Number(attr('qk_output') ?? 0) !== 0) return `layer ${layer}: qk output`;
  const [query, key, value] = node.inputs;
  if (!query || !key || !value) return `layer ${layer}: packed QKV`;
  // Input 9 (explicit position_ids) and 11 (a head sink) are not rewritten.
  if (node.inputs[9] || node.inputs.slice(11).some(Boolean)) return `layer ${layer}: position_ids or head sink inputs`;
  if (Number(attr('do_rotary') ?? 0) === 0 && node.inputs.slice(7, 9).some(Boolean)) return `layer ${layer}: cos/sin caches without do_rotary`;
  if (node.outputs.length > 3 && node.outputs.slice(3).some(Boolean)) return `layer ${layer}: extra outputs`;
  return undefined;
}

interface Geometry {
  numHeads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** do_rotary: GroupQueryAttention's cos/sin caches [max positions, dim / 2] and layout. */
  rotary?: { cos: string; sin: string; dim: number; interleaved: number };
}

function rotatedKeyName(layer: number): string {
  return `/vigil/split_attention/layers.${layer}/rotated_key`;
}

/** Writes nodes under one name prefix: ops, int64 / float constants, a tensor's dim, a one-element tensor as a scalar. */
class NodeWriter {
  readonly nodes: NodeProtoObject[] = [];
  private counter = 0;

  constructor(private readonly prefix: string) {}

  op(opType: string, inputs: string[], attrs: Record<string, number | number[] | { float: number }> = {}, domain = '', output?: string): string {
    const name = `${this.prefix}/${opType}_${this.counter++}`;
    const node: NodeProtoObject = { name, op_type: opType, domain, input: inputs, output: [output ?? `${name}_output_0`] };
    const attribute = Object.entries(attrs).map(([attrName, v]) =>
      typeof v === 'number'
        ? { name: attrName, type: ATTRIBUTE_TYPE.INT, i: v }
        : Array.isArray(v)
          ? { name: attrName, type: ATTRIBUTE_TYPE.INTS, ints: v }
          : { name: attrName, type: ATTRIBUTE_TYPE.FLOAT, f: v.float },
    );
    if (attribute.length > 0) node.attribute = attribute;
    this.nodes.push(node);
    return node.output[0]!;
  }

  int64s(values: Array<number | bigint>): string {
    return this.constant(ONNX_DATA_TYPE.int64, [values.length], new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer));
  }

  float(value: number): string {
    return this.constant(ONNX_DATA_TYPE.float32, [], new Uint8Array(Float32Array.of(value).buffer));
  }

  dim(tensor: string, axis: number): string {
    return this.op('Slice', [this.op('Shape', [tensor]), this.int64s([axis]), this.int64s([axis + 1])]);
  }

  scalar(oneElement: string): string {
    return this.op('Reshape', [oneElement, this.int64s([])]);
  }

  private constant(dataType: number, dims: number[], raw: Uint8Array): string {
    const name = `${this.prefix}/Constant_${this.counter++}`;
    this.nodes.push({
      name,
      op_type: 'Constant',
      domain: '',
      input: [],
      output: [`${name}_output_0`],
      attribute: [{ name: 'value', type: ATTRIBUTE_TYPE.TENSOR, t: { dims, data_type: dataType, raw_data: raw } }],
    });
    return `${name}_output_0`;
  }
}

/** What every layer's attention needs that does not depend on the layer's own q/k/v (see sharedTerms). */
interface SharedTerms {
  /** [1] each: S and the past buffer's rows. */
  seqLen: string;
  capacity: string;
  /** [B, S] int64: the new tokens' positions (do_rotary only). */
  positions?: string;
  /** [5] shapes [B, KV, G, S, capacity] / [B, KV, G, S, S] for the scores. */
  pastShape: string;
  newShape: string;
  /** Additive masks broadcasting over those: past rows beyond the valid length, the causal new rows, attention_bias. */
  pastMask: string;
  newMask: string;
}

/**
 * The layer-independent terms, from one layer's GroupQueryAttention inputs: its query (batch, S), its
 * past (capacity), seqlens_k, total_sequence_length and attention_bias. Every layer of a decoder sees
 * the same sequence and is fed the same past capacity, so computing them once serves all layers
 * (a layer fed another capacity would fail on the mask's shape, not compute wrongly).
 */
function sharedTerms(w: NodeWriter, gqa: StructureNode, geo: Geometry): SharedTerms {
  const { kvHeads: KV } = geo;
  const G = geo.numHeads / KV;
  const [query, , , pastKey, , seqlensK, totalLength] = gqa.inputs.slice(0, 7).map((name) => name ?? '');
  const bias = gqa.inputs[10] || undefined;
  const batch = w.dim(query!, 0);
  const seqLen = w.dim(query!, 1);
  const capacity = w.dim(pastKey!, 2);
  const shape = (columns: string) => w.op('Concat', [batch, w.int64s([KV, G]), seqLen, columns], { axis: 0 });
  // Past rows valid per batch: seqlens_k + 1 - S (GroupQueryAttention's own rule); the rest of the buffer is masked.
  const pastLength = w.op('Sub', [w.op('Add', [w.op('Cast', [seqlensK!], { to: ONNX_DATA_TYPE.int64 }), w.int64s([1])]), seqLen]);
  const steps = w.op('Range', [w.scalar(w.int64s([0])), w.scalar(seqLen), w.scalar(w.int64s([1]))]);
  const columns = w.op('Range', [w.scalar(w.int64s([0])), w.scalar(capacity), w.scalar(w.int64s([1]))]);
  const validPast = w.op('Less', [columns, w.op('Reshape', [pastLength, w.int64s([-1, 1, 1, 1, 1])])]);
  let pastMask = w.op('Where', [validPast, w.float(0), w.float(MASKED)]);
  // New rows: token s sees new tokens j <= s.
  const future = w.op('Less', [w.op('Reshape', [steps, w.int64s([-1, 1])]), w.op('Reshape', [steps, w.int64s([1, -1])])]);
  let newMask = w.op('Where', [future, w.float(MASKED), w.float(0)]);
  if (bias) {
    // attention_bias [B|1, 1|N, S, T]: columns [0, T - S) are the past, the last S the new tokens.
    const biasPast = w.op('Sub', [w.op('Cast', [w.op('Reshape', [totalLength!, w.int64s([1])])], { to: ONNX_DATA_TYPE.int64 }), seqLen]);
    const heads = w.dim(bias, 1);
    const groups = w.op('Min', [heads, w.int64s([G])]);
    const biasShape = (cols: string) => w.op('Concat', [w.dim(bias, 0), w.op('Div', [heads, groups]), groups, seqLen, cols], { axis: 0 });
    const pads = w.op('Concat', [w.int64s([0, 0, 0, 0, 0, 0, 0]), w.op('Sub', [capacity, biasPast])], { axis: 0 });
    const pastBias = w.op('Pad', [w.op('Slice', [bias, w.int64s([0]), biasPast, w.int64s([3])]), pads, w.float(MASKED)]);
    const newBias = w.op('Slice', [bias, biasPast, w.int64s([INT64_MAX]), w.int64s([3])]);
    pastMask = w.op('Add', [pastMask, w.op('Reshape', [pastBias, biasShape(capacity)], { allowzero: 1 })]);
    newMask = w.op('Add', [newMask, w.op('Reshape', [newBias, biasShape(seqLen)], { allowzero: 1 })]);
  }
  // do_rotary places new token s at past length + s.
  const positions = geo.rotary ? w.op('Add', [w.op('Reshape', [pastLength, w.int64s([-1, 1])]), w.op('Reshape', [steps, w.int64s([1, -1])])]) : undefined;
  return { seqLen, capacity, pastShape: shape(capacity), newShape: shape(seqLen), pastMask, newMask, ...(positions ? { positions } : {}) };
}

/** The replacement of one GroupQueryAttention (inputs as the op defines them) by standard ops plus FusedMatMul. */
function splitAttentionNodes(w: NodeWriter, gqa: StructureNode, layer: number, geo: Geometry, shared: SharedTerms): NodeProtoObject[] {
  const { numHeads: N, kvHeads: KV, headDim: D, scale } = geo;
  const G = N / KV;
  const [rawQuery, rawKey, value, pastKey, pastValue] = gqa.inputs.slice(0, 5).map((name) => name ?? '') as [string, string, string, string, string];
  let query = rawQuery;
  let key = rawKey;
  if (geo.rotary) {
    // The same positions as do_rotary, rotated by RotaryEmbedding from the same caches.
    const { cos, sin, dim: rotaryDim, interleaved } = geo.rotary;
    const rotate = (x: string, heads: number, output?: string) =>
      w.op('RotaryEmbedding', [x, shared.positions!, cos, sin], { interleaved, num_heads: heads, rotary_embedding_dim: rotaryDim }, 'com.microsoft', output);
    query = rotate(rawQuery, N);
    key = rotate(rawKey, KV, rotatedKeyName(layer));
  }
  // q [B,S,N*D] -> [B,KV,G,S,D] -> [B,KV,G*S,D]: each KV head's G query heads in one MatMul, reading its past once.
  const queryHeads = w.op('Transpose', [w.op('Reshape', [query, w.int64s([0, 0, KV, G, D])])], { perm: [0, 2, 3, 1, 4] });
  const queryRows = w.op('Reshape', [queryHeads, w.int64s([0, KV, -1, D])]);
  const newKey = w.op('Transpose', [w.op('Reshape', [key, w.int64s([0, 0, KV, D])])], { perm: [0, 2, 1, 3] });
  const newValue = w.op('Transpose', [w.op('Reshape', [value, w.int64s([0, 0, KV, D])])], { perm: [0, 2, 1, 3] });
  const pastScores = w.op('FusedMatMul', [queryRows, pastKey], { transB: 1, alpha: { float: scale } }, 'com.microsoft');
  const newScores = w.op('FusedMatMul', [queryRows, newKey], { transB: 1, alpha: { float: scale } }, 'com.microsoft');
  // [B,KV,G*S,X] -> [B,KV,G,S,X] (X may be 0: an empty past), so the per-query-row masks broadcast.
  const pastPart = w.op('Add', [w.op('Reshape', [pastScores, shared.pastShape], { allowzero: 1 }), shared.pastMask]);
  const newPart = w.op('Add', [w.op('Reshape', [newScores, shared.newShape], { allowzero: 1 }), shared.newMask]);
  const probs = w.op('Softmax', [w.op('Concat', [pastPart, newPart], { axis: 4 })], { axis: -1 });
  const pastProbs = w.op('Reshape', [w.op('Slice', [probs, w.int64s([0]), shared.capacity, w.int64s([4])]), w.op('Shape', [pastScores])], { allowzero: 1 });
  const newProbs = w.op('Reshape', [w.op('Slice', [probs, shared.capacity, w.int64s([INT64_MAX]), w.int64s([4])]), w.op('Shape', [newScores])]);
  const context = w.op('Add', [w.op('MatMul', [pastProbs, pastValue]), w.op('MatMul', [newProbs, newValue])]);
  // [B,KV,G*S,D] -> [B,KV,G,S,D] -> [B,S,KV,G,D] -> [B,S,N*D]: query head h = kv * G + g, as GroupQueryAttention orders them.
  const perHead = w.op('Transpose', [w.op('Reshape', [context, w.int64s([0, KV, G, -1, D])])], { perm: [0, 3, 1, 2, 4] });
  w.op('Reshape', [perHead, w.int64s([0, 0, N * D])], {}, '', gqa.outputs[0]!);
  return w.nodes;
}
