import { ropeInvFreq } from '../../../kernels/rope.js';
import type { GraphBuilder } from '../onnx/graphBuilder.js';
import type { TextGeometry } from './geometry.js';
import { type AttentionPath, floatScalar, linear, maskValue, MS_DOMAIN, type ProbeGraphContext, weight, weightMatMul } from './graphHelpers.js';

/**
 * Llama/Qwen2-style decoder with the ONNX VLM contract's I/O:
 *   inputs_embeds [B,S,H], attention_mask [B,P+S], position_ids [B,S], past_key_values.{i}.key/value [B,KV,P,D]
 *   -> logits [B,S,V], present.{i}.key/value [B,KV,P+S,D] (keys post-RoPE),
 *      plus query taps `/model/layers.{i}/self_attn/q_proj/MatMul_output_0` [B,S,heads*D] (pre-RoPE).
 * The math follows HF's eager Llama: RMSNorm, GQA with rotate-half RoPE (optionally partial),
 * causal + padding mask, softmax in float32, SwiGLU MLP.
 *
 * `attention: 'fused'` computes each layer's attention with onnxruntime's com.microsoft
 * GroupQueryAttention instead (same I/O; RoPE stays outside it, so past keys are used as given,
 * already rotated by the caller): it appends the new keys/values to the past (present = past ++ new),
 * applies the causal mask itself, and the padding mask enters as an additive attention_bias.
 * Difference: a query row whose every visible key is masked gets uniform weights over all keys in
 * the eager graph, over its causal keys in the fused one (neither is meaningful).
 */
export function buildDecoderGraph(
  ctx: ProbeGraphContext,
  geo: TextGeometry,
  options: { queryTaps?: boolean; attention?: AttentionPath } = {},
): void {
  const exposeTaps = options.queryTaps ?? true;
  const fused = (options.attention ?? 'eager') === 'fused';
  const { g, dtype } = ctx;
  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, numLayers } = geo;
  const rep = numHeads / numKvHeads;

  const embeds = g.input('inputs_embeds', dtype, ['batch_size', 'sequence_length', H]);
  const mask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
  const pastNames: Array<[string, string]> = [];
  for (let i = 0; i < numLayers; i++) {
    pastNames.push([
      g.input(`past_key_values.${i}.key`, dtype, ['batch_size', numKvHeads, 'past_sequence_length', D]),
      g.input(`past_key_values.${i}.value`, dtype, ['batch_size', numKvHeads, 'past_sequence_length', D]),
    ]);
  }

  // Eager: a boolean [B,1,rep*S,T] mask; fused: GroupQueryAttention's lengths and additive padding bias.
  const allowed = fused ? undefined : g.scope('/model', () => attentionAllowed(g, embeds, mask, rep));
  const fusedInputs = fused ? g.scope('/model', () => groupQueryInputs(ctx, embeds, mask)) : undefined;
  // Eager rotates [B,heads,S,D] (tables [B,1,S,rot]); fused rotates [B,S,heads,D] (tables [B,S,1,rot]).
  const rope = g.scope('/model/rotary_emb', () => rotaryTables(ctx, positionIds, geo, fused ? 2 : 1));

  let hidden = embeds;
  for (let i = 0; i < numLayers; i++) {
    const prefix = `model.layers.${i}`;
    const [pastKey, pastValue] = pastNames[i]!;
    hidden = g.scope(`/model/layers.${i}`, () => {
      const normed = g.scope('/input_layernorm', () => rmsNorm(ctx, hidden, `${prefix}.input_layernorm.weight`, H, geo.rmsNormEps));
      const attn = g.scope('/self_attn', () => {
        const q = linear(ctx, normed, `${prefix}.self_attn`, 'q_proj', H, numHeads * D, false, 'query_key');
        const k = linear(ctx, normed, `${prefix}.self_attn`, 'k_proj', H, numKvHeads * D, false, 'query_key');
        const v = linear(ctx, normed, `${prefix}.self_attn`, 'v_proj', H, numKvHeads * D, false);
        if (exposeTaps) g.output(q, q, dtype, ['batch_size', 'sequence_length', numHeads * D]);
        if (fusedInputs) {
          const [context, presentKey, presentValue] = fusedAttention(ctx, q, k, v, pastKey, pastValue, rope, fusedInputs, geo);
          g.output(presentKey!, `present.${i}.key`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
          g.output(presentValue!, `present.${i}.value`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
          return linear(ctx, context!, `${prefix}.self_attn`, 'o_proj', numHeads * D, H, false);
        }
        const qHeads = splitHeads(g, q, numHeads, D);
        const kHeads = splitHeads(g, k, numKvHeads, D);
        const vHeads = splitHeads(g, v, numKvHeads, D);
        const qRot = applyRope(g, qHeads, rope, geo);
        const kRot = applyRope(g, kHeads, rope, geo);
        const presentKey = g.op('Concat', [pastKey, kRot], { axis: 2 });
        const presentValue = g.op('Concat', [pastValue, vHeads], { axis: 2 });
        g.output(presentKey, `present.${i}.key`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
        g.output(presentValue, `present.${i}.value`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
        const context = groupedAttention(ctx, qRot, presentKey, presentValue, allowed!, geo);
        return linear(ctx, context, `${prefix}.self_attn`, 'o_proj', numHeads * D, H, false);
      });
      const afterAttn = g.op('Add', [hidden, attn]);
      const normed2 = g.scope('/post_attention_layernorm', () =>
        rmsNorm(ctx, afterAttn, `${prefix}.post_attention_layernorm.weight`, H, geo.rmsNormEps),
      );
      const mlp = g.scope('/mlp', () => swiGlu(ctx, normed2, `${prefix}.mlp`, H, geo.intermediateSize));
      return g.op('Add', [afterAttn, mlp], {}, { name: 'Add_1' });
    });
  }

  const finalNorm = g.scope('/model/norm', () => rmsNorm(ctx, hidden, 'model.norm.weight', H, geo.rmsNormEps));
  const logits = g.scope('/lm_head', () => weightMatMul(ctx, finalNorm, 'lm_head.weight', H, geo.vocabSize, 'linear', 'MatMul'));
  g.output(logits, 'logits', dtype, ['batch_size', 'sequence_length', geo.vocabSize]);
  // Exports list logits first, then present.{i}.key/value in layer order; the query taps come last
  // (stock exports have none: `queryTaps: false` builds such a graph, to test the graph surgery).
  const layers = Array.from({ length: numLayers }, (_, i) => i);
  g.orderOutputs([
    'logits',
    ...layers.flatMap((i) => [`present.${i}.key`, `present.${i}.value`]),
    ...(exposeTaps ? layers.map((i) => queryTapName(i)) : []),
  ]);
}

/** The name a torch.onnx export gives layer i's q projection output (pre-RoPE queries). */
export function queryTapName(layer: number): string {
  return `/model/layers.${layer}/self_attn/q_proj/MatMul_output_0`;
}

/**
 * Boolean [B,1,rep*S,T]: query s (at cache index P+s) may see key j iff j <= P+s and mask[j] = 1.
 * Query rows are laid out [rep, S] to match the grouped attention below.
 */
function attentionAllowed(g: GraphBuilder, embeds: string, mask: string, rep: number): string {
  const zero = g.scalar('int64', 0);
  const one = g.scalar('int64', 1);
  const seqLen = g.op('Gather', [g.op('Shape', [embeds]), one], { axis: 0 });
  const totalLen = g.op('Gather', [g.op('Shape', [mask]), one], { axis: 0 });
  const pastLen = g.op('Sub', [totalLen, seqLen]);
  const keyIndex = g.op('Range', [zero, totalLen, one]);
  let queryIndex = g.op('Add', [g.op('Range', [zero, seqLen, one]), pastLen]);
  if (rep > 1) queryIndex = g.op('Tile', [queryIndex, g.int64s([rep])]);
  const causal = g.op('LessOrEqual', [keyIndex, g.op('Unsqueeze', [queryIndex, g.int64s([1])])]);
  const padding = g.op('Unsqueeze', [g.op('Cast', [mask], { to: 9 }), g.int64s([1, 2])]);
  return g.op('And', [causal, padding]);
}

interface RopeTables {
  cos: string;
  sin: string;
}

interface GroupQueryInputs {
  /** int32 [B]: total length - 1 (every key slot is filled). */
  seqlensK: string;
  /** int32 scalar: past + new. */
  totalLength: string;
  /** [B,1,S,T] in the model's float type: 0 where attention_mask is 1, the most negative value where 0. */
  paddingBias: string;
}

/** The layer-independent inputs of GroupQueryAttention, from the contract's attention_mask [B,T]. */
function groupQueryInputs(ctx: ProbeGraphContext, embeds: string, mask: string): GroupQueryInputs {
  const { g, dtype } = ctx;
  const maskShape = g.op('Shape', [mask]);
  const batch = g.op('Slice', [maskShape, g.int64s([0]), g.int64s([1])]);
  const total = g.op('Slice', [maskShape, g.int64s([1]), g.int64s([2])]);
  const seqLen = g.op('Slice', [g.op('Shape', [embeds]), g.int64s([1]), g.int64s([2])]);
  const totalLength = g.op('Cast', [g.op('Squeeze', [total, g.int64s([0])])], { to: 6 });
  const last = g.op('Cast', [g.op('Sub', [total, g.int64s([1])])], { to: 6 });
  const seqlensK = g.op('Expand', [last, batch]);
  const keep = g.op('Unsqueeze', [g.op('Cast', [mask], { to: 9 }), g.int64s([1, 2])]);
  const bias = g.op('Where', [keep, floatScalar(ctx, 0), floatScalar(ctx, maskValue(dtype))]);
  const biasShape = g.op('Concat', [batch, g.int64s([1]), seqLen, total], { axis: 0 });
  return { seqlensK, totalLength, paddingBias: g.op('Expand', [bias, biasShape]) };
}

/**
 * One layer's attention by com.microsoft GroupQueryAttention: q [B,S,heads*D], k/v [B,S,KV*D]
 * (RoPE applied here in [B,S,heads,D] layout), past [B,KV,P,D] -> context [B,S,heads*D],
 * present key/value [B,KV,P+S,D].
 */
function fusedAttention(
  ctx: ProbeGraphContext,
  q: string,
  k: string,
  v: string,
  pastKey: string,
  pastValue: string,
  rope: RopeTables,
  inputs: GroupQueryInputs,
  geo: TextGeometry,
): string[] {
  const { g } = ctx;
  const { numHeads, numKvHeads, headDim: D } = geo;
  const rotate = (x: string, heads: number) => {
    const split = g.op('Reshape', [x, g.int64s([0, 0, heads, D])]);
    return g.op('Reshape', [applyRope(g, split, rope, geo), g.int64s([0, 0, heads * D])]);
  };
  return g.opMulti(
    'GroupQueryAttention',
    [rotate(q, numHeads), rotate(k, numKvHeads), v, pastKey, pastValue, inputs.seqlensK, inputs.totalLength, '', '', '', inputs.paddingBias],
    3,
    { num_heads: numHeads, kv_num_heads: numKvHeads, scale: { float: 1 / Math.sqrt(D) } },
    { domain: MS_DOMAIN },
  );
}

/** cos/sin from float32 angles position * inv_freq (as HF computes them): [B,1,S,rot] (headAxis 1) or [B,S,1,rot] (2). */
function rotaryTables(ctx: ProbeGraphContext, positionIds: string, geo: TextGeometry, headAxis: 1 | 2): RopeTables {
  const { g } = ctx;
  const invFreq = g.initializer('model.rotary_emb.inv_freq', 'float32', [geo.rotaryDim / 2], ropeInvFreq(geo.rotaryDim, geo.ropeTheta));
  const positions = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: 1 }), g.int64s([2])]);
  const freqs = g.op('Mul', [positions, invFreq]);
  const angles = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.int64s([headAxis])]);
  let cos = g.op('Cos', [angles]);
  let sin = g.op('Sin', [angles]);
  if (ctx.dtype === 'float16') {
    cos = g.op('Cast', [cos], { to: 10 });
    sin = g.op('Cast', [sin], { to: 10 });
  }
  return { cos, sin };
}

/** [B,S,heads*D] -> [B,heads,S,D] */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  const reshaped = g.op('Reshape', [x, g.int64s([0, 0, heads, headDim])]);
  return g.op('Transpose', [reshaped], { perm: [0, 2, 1, 3] });
}

/** rotate_half RoPE over the first rotaryDim dims of [B,heads,S,D] (or [B,S,heads,D]); the rest pass through. */
function applyRope(g: GraphBuilder, x: string, rope: RopeTables, geo: TextGeometry): string {
  const rot = geo.rotaryDim;
  const half = rot / 2;
  const axis = g.int64s([3]);
  const slice = (input: string, start: number, end: number) =>
    g.op('Slice', [input, g.int64s([start]), g.int64s([end]), axis]);
  const rotary = rot < geo.headDim ? slice(x, 0, rot) : x;
  const x1 = slice(rotary, 0, half);
  const x2 = slice(rotary, half, rot);
  const rotatedHalf = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  const rotated = g.op('Add', [g.op('Mul', [rotary, rope.cos]), g.op('Mul', [rotatedHalf, rope.sin])]);
  if (rot === geo.headDim) return rotated;
  return g.op('Concat', [rotated, slice(x, rot, geo.headDim)], { axis: -1 });
}

/**
 * Grouped-query attention without materializing repeated KV heads: q [B,heads,S,D] is viewed as
 * [B,KV,rep*S,D] so each KV head serves its rep query heads in one MatMul.
 */
function groupedAttention(
  ctx: ProbeGraphContext,
  q: string,
  key: string,
  value: string,
  allowed: string,
  geo: TextGeometry,
): string {
  const { g, dtype } = ctx;
  const { numHeads, numKvHeads, headDim: D } = geo;
  const grouped = g.op('Reshape', [q, g.int64s([0, numKvHeads, -1, D])]);
  let scores = g.op('MatMul', [grouped, g.op('Transpose', [key], { perm: [0, 1, 3, 2] })]);
  scores = g.op('Mul', [scores, floatScalar(ctx, 1 / Math.sqrt(D))]);
  // Softmax in float32 even for half models, as HF's eager attention does.
  if (dtype === 'float16') scores = g.op('Cast', [scores], { to: 1 });
  scores = g.op('Where', [allowed, scores, g.scalar('float32', maskValue('float32'))]);
  let probs = g.op('Softmax', [scores], { axis: -1 });
  if (dtype === 'float16') probs = g.op('Cast', [probs], { to: 10 });
  const context = g.op('MatMul', [probs, value]);
  const perHead = g.op('Reshape', [context, g.int64s([0, numHeads, -1, D])]);
  const merged = g.op('Transpose', [perHead], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [merged, g.int64s([0, 0, numHeads * D])]);
}

/** x / sqrt(mean(x^2) + eps) * w, computed in float32 (HF's LlamaRMSNorm upcasts too). */
export function rmsNorm(ctx: ProbeGraphContext, x: string, weightName: string, size: number, eps: number): string {
  const { g, dtype } = ctx;
  const x32 = dtype === 'float16' ? g.op('Cast', [x], { to: 1 }) : x;
  const meanSquare = g.op('ReduceMean', [g.op('Mul', [x32, x32])], { axes: [-1], keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar('float32', eps)])]);
  let normalized = g.op('Div', [x32, rms]);
  if (dtype === 'float16') normalized = g.op('Cast', [normalized], { to: 10 });
  return g.op('Mul', [normalized, weight(ctx, weightName, [size], 'norm')]);
}

function swiGlu(ctx: ProbeGraphContext, x: string, prefix: string, hidden: number, intermediate: number): string {
  const { g } = ctx;
  const gate = linear(ctx, x, prefix, 'gate_proj', hidden, intermediate, false);
  const up = linear(ctx, x, prefix, 'up_proj', hidden, intermediate, false);
  const activated = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])], {}, { name: 'act_fn/Mul' }), up]);
  return linear(ctx, activated, prefix, 'down_proj', intermediate, hidden, false);
}
