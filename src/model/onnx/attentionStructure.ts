import { ELEM_TYPE, elemTypeName, type GraphStructure, readGraphStructureFromFile, type StructureNode } from './onnxStructure.js';

/**
 * Where each decoder layer's pre-RoPE queries are, found from the graph's STRUCTURE (not its node
 * names, which differ between exporters: torch.onnx's `/model/layers.N/self_attn/q_proj/MatMul`,
 * onnxruntime-genai's model builder's `/model/layers.N/attn/q_proj/MatMul(_Quant)`, ...).
 *
 * For each layer the attention node is found: com.microsoft GroupQueryAttention, MultiHeadAttention
 * or Attention, ONNX's Attention (opset 23), or the eager pattern MatMul(Q, K^T) whose K is the
 * layer's present key (Concat(past_key_values.N.key, ...)). Its query input is walked backwards
 * through layout ops (Reshape, Transpose), scaling by constants and Casts to the rotary embedding
 * (a RotaryEmbedding op, or the rotate-half pattern x*cos + rotate_half(x)*sin, partial rotary
 * included; or none when the fused op rotates inside, GroupQueryAttention do_rotary=1), then from the
 * rotary's input back through layout ops to the earliest value in [batch, sequence, heads*head_dim]
 * memory order. That value is what the layer actually rotates: after q_norm when the model has one
 * (the walk stops at the norm), including the q bias. A packed QKV input (GroupQueryAttention with
 * empty key/value inputs) gets a Slice of its first heads*head_dim columns, added by the surgery.
 * Layers are numbered by the past_key_values.N.key each attention consumes.
 */

export type AttentionOpKind = 'GroupQueryAttention' | 'MultiHeadAttention' | 'Attention' | 'eager';

/** Where the rotary embedding of the queries happens: inside the fused op, a RotaryEmbedding op, or the rotate-half pattern. */
export type RotaryPlacement = 'inside' | 'RotaryEmbedding' | 'rotate_half';

export type TapDtype = 'float32' | 'float16';

export interface QueryTapLayerPlan {
  layer: number;
  status: 'found' | 'fallback';
  /** The value to expose as the layer's query tap (for a slice: the Slice output the surgery adds). */
  tensorName: string | null;
  dtype: TapDtype | null;
  attentionOp: AttentionOpKind | null;
  /** Name of the attention node (the scores MatMul for eager attention). */
  attentionNode: string | null;
  rotary: RotaryPlacement | null;
  /** The tap comes after a normalization of the queries (q_norm: Gemma-3, Qwen3). */
  qNorm: boolean;
  /** Already a graph output (nothing to add). */
  exposed: boolean;
  /** Packed QKV: the surgery adds Slice(source, [0], [width], [-1]) whose output is tensorName. */
  slice: { source: string; width: number } | null;
  /**
   * The query is rotated in [batch, heads, seq, dim] order with no [batch, seq, ...] value before it
   * (q_norm applied after the heads transpose, as Gemma-3's eager attention does): the surgery adds
   * Transpose(source, perm [0,2,1,3]) whose output is tensorName.
   */
  transpose: { source: string } | null;
  /** Why the layer has no tap (fallback), or how it was found. */
  reason: string;
}

export interface QueryTapPlan {
  /** Layers the decoder has (past_key_values.N.key inputs, else attention nodes found). */
  numLayers: number;
  layers: QueryTapLayerPlan[];
  /** Every layer found: retrieval can use query taps. */
  complete: boolean;
  /** Empty when complete; else why not (the first fallback layer's reason, and how many fell back). */
  reason: string;
  /** Default-domain opset of the graph (a Slice with tensor inputs needs 10 or later). */
  opset: number;
}

const PAST_KEY = /^past_key_values\.(\d+)\.key$/;
const PAST_ANY = /^past_key_values\.(\d+)\.(key|value)$/;
const MS = 'com.microsoft';
/** Ops that change only how a tensor's memory is viewed, never its element order. */
const VIEW_OPS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
const NORM_OPS = new Set(['SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'LayerNormalization', 'SkipLayerNormalization', 'RMSNormalization']);
const MAX_WALK = 64;

/** [batch, sequence, heads, dim] order (a [B,S,heads*D] view) or [batch, heads, sequence, dim]. */
type Layout = 'BSHD' | 'BHSD';

interface Candidate {
  node: StructureNode;
  kind: AttentionOpKind;
  layer: number | undefined;
}

class QueryTracer {
  /** Per value: the highest past_key_values.N it depends on (layer N's attention sees its own N). */
  private readonly pastLayer = new Map<string, number>();

  constructor(readonly g: GraphStructure) {
    for (const name of g.inputs.keys()) {
      const m = PAST_ANY.exec(name);
      if (m) this.pastLayer.set(name, Number(m[1]));
    }
    for (const node of g.nodes) {
      let max: number | undefined;
      for (const i of node.inputs) {
        const l = i ? this.pastLayer.get(i) : undefined;
        if (l !== undefined && (max === undefined || l > max)) max = l;
      }
      if (max !== undefined) for (const o of node.outputs) if (o) this.pastLayer.set(o, max);
    }
  }

  producer(name: string): StructureNode | undefined {
    return this.g.producer.get(name);
  }

  /** The one input of a node that carries data (the others are constants or shapes), if exactly one does. */
  private dataInput(node: StructureNode): string | undefined {
    const dynamic = node.inputs.filter((i) => i && this.g.isDynamic(i));
    return dynamic.length === 1 ? dynamic[0] : undefined;
  }

  /** Mul/Div by a constant, Cast, Identity: the value passes through unchanged in layout. */
  private passThrough(node: StructureNode): string | undefined {
    if (node.domain !== '') return undefined;
    if (node.opType === 'Cast' || node.opType === 'Identity') return node.inputs[0];
    if (node.opType === 'Mul' || (node.opType === 'Div' && node.inputs[1] && !this.g.isDynamic(node.inputs[1]))) return this.dataInput(node);
    return undefined;
  }

  /** The layout of a view/transpose node's input, given its output's; undefined when it scrambles the order. */
  private layoutBefore(node: StructureNode, after: Layout): Layout | undefined {
    if (VIEW_OPS.has(node.opType) && node.domain === '') return after;
    if (node.opType === 'Transpose' && node.domain === '') {
      const perm = node.attributes.get('perm');
      if (!Array.isArray(perm)) return undefined;
      const p = perm.join(',');
      if (p === '0,1,2,3' || p === '0,1,2') return after;
      if (p === '0,2,1,3') return after === 'BSHD' ? 'BHSD' : 'BSHD';
    }
    return undefined;
  }

  /** If `t` is x sliced (Slice / Split / Gather on an axis), x. */
  private sliceSource(t: string): string | undefined {
    let name = t;
    for (let step = 0; step < 4; step++) {
      const node = this.producer(name);
      if (!node) return undefined;
      if (node.opType === 'Slice' || node.opType === 'Split') return node.inputs[0];
      const through = node.opType === 'Neg' ? node.inputs[0] : this.passThrough(node);
      if (!through) return undefined;
      name = through;
    }
    return undefined;
  }

  /** If `t` is rotate_half(x) = Concat(-x2, x1) of halves sliced from x, x. */
  private rotateHalfSource(t: string): string | undefined {
    let name = t;
    for (let step = 0; step < 3; step++) {
      const node = this.producer(name);
      if (!node) return undefined;
      if (node.opType === 'Concat' && node.inputs.length >= 2) {
        const sources = node.inputs.map((i) => this.sliceSource(i));
        const first = sources[0];
        const negated = this.producer(node.inputs[0]!)?.opType === 'Neg' || this.producer(node.inputs[0]!)?.opType === 'Mul';
        return first && negated && sources.every((s) => s === first) ? first : undefined;
      }
      const through = this.passThrough(node);
      if (!through) return undefined;
      name = through;
    }
    return undefined;
  }

  /** If `node` outputs RoPE(x) (a RotaryEmbedding op, x*cos + rotate_half(x)*sin, or partial: Concat(that on x[..rot], x[rot..])), x. */
  rotarySource(node: StructureNode): { source: string; rotary: RotaryPlacement } | undefined {
    if (node.opType === 'RotaryEmbedding' && node.inputs[0]) return { source: node.inputs[0], rotary: 'RotaryEmbedding' };
    if (node.opType === 'Add' && node.inputs.length === 2 && node.domain === '') {
      const [a, b] = node.inputs.map((i) => this.producer(i));
      if (a?.opType !== 'Mul' || b?.opType !== 'Mul') return undefined;
      for (const [m1, m2] of [[a, b], [b, a]] as const) {
        for (const x of m1.inputs) {
          if (!x || !this.g.isDynamic(x)) continue;
          if (m2.inputs.some((r) => r && r !== x && this.rotateHalfSource(r) === x)) return { source: x, rotary: 'rotate_half' };
        }
      }
      return undefined;
    }
    if (node.opType === 'Concat' && node.inputs.length >= 2 && node.domain === '') {
      let source: string | undefined;
      let rotated = false;
      for (const input of node.inputs) {
        const producer = this.producer(input);
        const inner = producer ? this.rotarySource(producer) : undefined;
        const from = inner ? this.sliceSource(inner.source) : this.sliceSource(input);
        if (inner) rotated = true;
        if (!from || (source !== undefined && from !== source)) return undefined;
        source = from;
      }
      return rotated && source ? { source, rotary: 'rotate_half' } : undefined;
    }
    return undefined;
  }

  /** The layer whose present key `t` is (Concat(past_key_values.N.key, new)), through views, transposes, repeats and scales. */
  keyLayer(t: string): number | undefined {
    const seen = new Set<string>();
    const queue = [t];
    while (queue.length > 0 && seen.size < MAX_WALK) {
      const name = queue.shift()!;
      if (seen.has(name)) continue;
      seen.add(name);
      const direct = PAST_KEY.exec(name);
      if (direct) return Number(direct[1]);
      const node = this.producer(name);
      if (!node || node.domain !== '') continue;
      if (node.opType === 'Concat') {
        const past = node.inputs.map((i) => PAST_KEY.exec(i)).find((m) => m);
        if (past) return Number(past[1]);
        continue;
      }
      if (['Transpose', 'Reshape', 'Expand', 'Tile', 'Unsqueeze', 'Squeeze', 'Cast', 'Identity'].includes(node.opType)) queue.push(node.inputs[0]!);
      else if (node.opType === 'Mul' || node.opType === 'Div') {
        const data = this.dataInput(node);
        if (data) queue.push(data);
      }
    }
    return undefined;
  }

  layerOf(node: StructureNode, pastKeyInput: number | undefined): number | undefined {
    const named = pastKeyInput !== undefined ? PAST_KEY.exec(node.inputs[pastKeyInput] ?? '') : null;
    if (named) return Number(named[1]);
    let max: number | undefined;
    for (const i of node.inputs) {
      const l = i ? this.pastLayer.get(i) : undefined;
      if (l !== undefined && (max === undefined || l > max)) max = l;
    }
    return max;
  }

  /**
   * From the query value an attention consumes (in `layout`), back to the pre-RoPE query in
   * [B,S,heads*D] order. `rotaryInside`: the attention op applies RoPE itself (the input is pre-RoPE).
   */
  traceQuery(start: string, layout: Layout, rotaryInside: boolean):
    | { tensor: string; rotary: RotaryPlacement; qNorm: boolean; transpose: boolean }
    | { error: string } {
    let t = start;
    let current: Layout | undefined = layout;
    let rotary: RotaryPlacement | undefined = rotaryInside ? 'inside' : undefined;
    for (let step = 0; !rotary; step++) {
      const node = this.producer(t);
      if (!node) return { error: `the query comes from '${t}', which no node produces, before any rotary embedding` };
      if (step > MAX_WALK) return { error: 'no rotary embedding within 64 nodes before the attention' };
      const rope = this.rotarySource(node);
      if (rope) {
        t = rope.source;
        rotary = rope.rotary;
        break;
      }
      const before = this.layoutBefore(node, current!);
      if (before) {
        current = before;
        t = node.inputs[0]!;
        continue;
      }
      const through = this.passThrough(node);
      if (through) {
        t = through;
        continue;
      }
      return { error: `no rotary embedding before the attention's query (the walk stopped at ${node.opType} '${node.name}')` };
    }
    // Back through views, transposes and float casts (RoPE computed in float32 on a float16 query)
    // to the earliest value in [B,S,heads*D] order.
    const rotated = t;
    const rotatedLayout = current;
    let best = current === 'BSHD' ? t : undefined;
    for (let step = 0; step < MAX_WALK; step++) {
      const node = this.producer(t);
      if (!node) break;
      const before: Layout | undefined = this.isFloatCast(node) ? current : this.layoutBefore(node, current!);
      if (!before) break;
      current = before;
      t = node.inputs[0]!;
      if (current === 'BSHD') best = t;
    }
    if (!best) {
      // Only [batch, heads, seq, dim] values before the rotary: the value it rotates, transposed by the surgery.
      const dims = this.g.dims(rotated);
      if (rotatedLayout !== 'BHSD' || (dims && dims.length !== 4)) {
        return { error: `the pre-RoPE query '${rotated}' is not in [batch, heads, sequence, dim] or [batch, sequence, heads*dim] order` };
      }
      return { tensor: rotated, rotary, qNorm: this.isNorm(this.producer(rotated)), transpose: true };
    }
    return { tensor: best, rotary, qNorm: this.isNorm(this.producer(best)), transpose: false };
  }

  /** A Cast between float types (the values stay those of the query, up to rounding). */
  private isFloatCast(node: StructureNode): boolean {
    if (node.opType !== 'Cast' || node.domain !== '' || !node.inputs[0]) return false;
    const from = this.g.elemType(node.inputs[0]);
    return (from === ELEM_TYPE.float32 || from === ELEM_TYPE.float16) && (node.attributes.get('to') === ELEM_TYPE.float32 || node.attributes.get('to') === ELEM_TYPE.float16);
  }

  /** A normalization node: a fused norm op, or an RMSNorm/LayerNorm written out (a Mul or Add whose recent ancestry has a ReduceMean). */
  private isNorm(node: StructureNode | undefined): boolean {
    if (!node) return false;
    if (NORM_OPS.has(node.opType)) return true;
    if (node.opType !== 'Mul' && node.opType !== 'Add' && node.opType !== 'Cast') return false;
    const queue = [node];
    for (let visited = 0; queue.length > 0 && visited < 12; visited++) {
      const n = queue.shift()!;
      if (n.opType === 'ReduceMean') return true;
      if (n.opType === 'MatMul' || n.opType === 'MatMulNBits' || n.opType === 'Gemm') continue;
      for (const i of n.inputs) {
        const p = i ? this.producer(i) : undefined;
        if (p) queue.push(p);
      }
    }
    return false;
  }

  tapDtype(tensor: string): TapDtype | { error: string } {
    const type = this.g.elemType(tensor);
    if (type === ELEM_TYPE.float32) return 'float32';
    if (type === ELEM_TYPE.float16) return 'float16';
    return { error: `the query '${tensor}' has element type ${elemTypeName(type)} (Vigil reads float32 and float16 taps)` };
  }
}

function attentionCandidates(tracer: QueryTracer): Candidate[] {
  const g = tracer.g;
  const found: Candidate[] = [];
  for (const node of g.nodes) {
    if (node.domain === MS && (node.opType === 'GroupQueryAttention' || node.opType === 'MultiHeadAttention' || node.opType === 'Attention')) {
      const pastKeyInput = node.opType === 'GroupQueryAttention' ? 3 : node.opType === 'MultiHeadAttention' ? 6 : 4;
      found.push({ node, kind: node.opType, layer: tracer.layerOf(node, pastKeyInput) });
    } else if (node.domain === '' && node.opType === 'Attention') {
      found.push({ node, kind: 'Attention', layer: tracer.layerOf(node, 4) });
    } else if (node.domain === '' && node.opType === 'MatMul' && node.inputs.every((i) => g.isDynamic(i))) {
      const layer = tracer.keyLayer(node.inputs[1]!);
      if (layer !== undefined) found.push({ node, kind: 'eager', layer });
    }
  }
  return found;
}

function fallback(layer: number, reason: string, candidate?: Candidate): QueryTapLayerPlan {
  return {
    layer,
    status: 'fallback',
    tensorName: null,
    dtype: null,
    attentionOp: candidate?.kind ?? null,
    attentionNode: candidate?.node.name ?? null,
    rotary: null,
    qNorm: false,
    exposed: false,
    slice: null,
    transpose: null,
    reason,
  };
}

function planLayer(tracer: QueryTracer, layer: number, candidate: Candidate, outputs: ReadonlySet<string>): QueryTapLayerPlan {
  const { node, kind } = candidate;
  const g = tracer.g;
  const found = (
    tensor: string,
    rotary: RotaryPlacement,
    qNorm: boolean,
    slice: QueryTapLayerPlan['slice'],
    dtypeOf: string,
    transpose: QueryTapLayerPlan['transpose'] = null,
  ): QueryTapLayerPlan => {
    const dtype = tracer.tapDtype(dtypeOf);
    if (typeof dtype !== 'string') return fallback(layer, dtype.error, candidate);
    return {
      layer,
      status: 'found',
      tensorName: tensor,
      dtype,
      attentionOp: kind,
      attentionNode: node.name,
      rotary,
      qNorm,
      exposed: outputs.has(tensor),
      slice,
      transpose,
      reason: `${kind} '${node.name}', rotary ${rotary}${qNorm ? ', after q_norm' : ''}${slice ? ', packed QKV sliced' : ''}${transpose ? ', transposed to [batch, seq, heads, dim]' : ''}`,
    };
  };
  const traced = (start: string, layout: Layout, rotaryInside: boolean) => {
    const r = tracer.traceQuery(start, layout, rotaryInside);
    if ('error' in r) return fallback(layer, r.error, candidate);
    if (!r.transpose) return found(r.tensor, r.rotary, r.qNorm, null, r.tensor);
    return found(`/vigil/query_taps/layers.${layer}/q_transpose`, r.rotary, r.qNorm, null, r.tensor, { source: r.tensor });
  };
  const query = node.inputs[0];
  if (!query) return fallback(layer, `${kind} '${node.name}' has no query input`, candidate);
  switch (kind) {
    case 'GroupQueryAttention': {
      const rotaryInside = Number(node.attributes.get('do_rotary') ?? 0) === 1;
      // Inputs 14/15 (q_norm_weight, k_norm_weight): the model builder's CUDA/WebGPU exports normalize
      // q inside the op, so no value in the graph is the query it rotates.
      if (node.inputs[14]) {
        return fallback(layer, `GroupQueryAttention '${node.name}' applies q_norm inside the op (q_norm_weight input): the query it rotates is not a graph value`, candidate);
      }
      const packed = !node.inputs[1] && !node.inputs[2];
      if (!packed) return traced(query, 'BSHD', rotaryInside);
      if (!rotaryInside) return fallback(layer, `GroupQueryAttention '${node.name}' takes packed QKV and rotates outside it: not supported`, candidate);
      const heads = Number(node.attributes.get('num_heads') ?? 0);
      const kvHeads = Number(node.attributes.get('kv_num_heads') ?? 0);
      const pastDims = g.dims(node.inputs[3] ?? '');
      const packedDims = g.dims(query);
      const lastPacked = packedDims?.[packedDims.length - 1];
      const headDim =
        typeof pastDims?.[3] === 'number' ? pastDims[3] : typeof lastPacked === 'number' && heads + 2 * kvHeads > 0 ? lastPacked / (heads + 2 * kvHeads) : undefined;
      if (!heads || !headDim || !Number.isInteger(headDim)) {
        return fallback(layer, `GroupQueryAttention '${node.name}' takes packed QKV but its head size cannot be read (num_heads ${heads}, past key dims ${JSON.stringify(pastDims ?? null)})`, candidate);
      }
      return found(`/vigil/query_taps/layers.${layer}/q_slice`, 'inside', false, { source: query, width: heads * headDim }, query);
    }
    case 'MultiHeadAttention':
      if (!node.inputs[1]) return fallback(layer, `MultiHeadAttention '${node.name}' takes packed QKV: not supported`, candidate);
      return traced(query, 'BSHD', false);
    case 'Attention': {
      if (node.domain === MS) {
        return fallback(layer, `com.microsoft Attention '${node.name}' projects Q, K and V inside the op: no query value to tap`, candidate);
      }
      const dims = g.dims(query);
      return traced(query, dims?.length === 4 ? 'BHSD' : 'BSHD', false);
    }
    case 'eager':
      return traced(query, 'BHSD', false);
  }
}

/** The per-layer query-tap plan of a decoder graph's structure. */
export function planQueryTaps(g: GraphStructure): QueryTapPlan {
  const tracer = new QueryTracer(g);
  const pastLayers = [...g.inputs.keys()].map((n) => PAST_KEY.exec(n)).filter((m) => m).map((m) => Number(m![1]));
  const candidates = attentionCandidates(tracer);
  const numLayers = pastLayers.length > 0 ? Math.max(...pastLayers) + 1 : candidates.length;
  const outputs = new Set(g.outputs);
  const nested = g.nodes.filter((n) => n.subgraphOps.some((op) => /Attention$/.test(op) || op === 'Softmax'));
  const layers: QueryTapLayerPlan[] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    // Layers numbered by past input; without past inputs, by graph order.
    const mine = pastLayers.length > 0 ? candidates.filter((c) => c.layer === layer) : candidates.slice(layer, layer + 1);
    if (mine.length === 0) {
      const where = nested.length > 0 ? ` (attention is inside the subgraphs of ${nested[0]!.opType} '${nested[0]!.name}', which surgery cannot expose)` : '';
      layers.push(fallback(layer, `no attention node consumes past_key_values.${layer}.key${where}`));
      continue;
    }
    if (mine.length > 1) {
      layers.push(fallback(layer, `${mine.length} attention nodes consume past_key_values.${layer}.key (${mine.map((c) => `${c.kind} '${c.node.name}'`).join(', ')})`, mine[0]));
      continue;
    }
    layers.push(planLayer(tracer, layer, mine[0]!, outputs));
  }
  const opset = g.opsets.get('') ?? 0;
  const failed = layers.filter((l) => l.status === 'fallback');
  let reason = failed.length > 0 ? `layer ${failed[0]!.layer}: ${failed[0]!.reason}${failed.length > 1 ? ` (${failed.length} of ${numLayers} layers fell back)` : ''}` : '';
  if (numLayers === 0) reason = 'no past_key_values inputs and no attention node found';
  if (!reason && opset < 10 && layers.some((l) => l.slice)) reason = `the packed-QKV slice needs opset 10 or later (the graph has ${opset})`;
  return { numLayers, layers, complete: reason === '', reason, opset };
}

/** planQueryTaps on an .onnx file (its structure only: weight bytes, inline or external, are not read). */
export function planQueryTapsForFile(file: string): QueryTapPlan {
  return planQueryTaps(readGraphStructureFromFile(file));
}
