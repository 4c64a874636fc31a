import { float32ToFloat16 } from '../../../kernels/fp16.js';
import { ropeInvFreq } from '../../../kernels/rope.js';
import type { TextGeometry } from './geometry.js';
import { MS_DOMAIN, type ProbeGraphContext } from './graphHelpers.js';
import { rmsNorm } from './decoderGraph.js';
import { quantizeQ4 } from './quantizeQ4.js';
import type { WeightRole } from './weightSource.js';

/**
 * Weight format of a model-builder-style decoder file: 'fp32' (MatMul, float32 throughout), 'q4'
 * (MatMulNBits 4-bit weights, float32 activations, KV and logits) or 'q4f16' (MatMulNBits on a float16
 * graph: float32 inputs_embeds cast to float16 inside, float16 KV and float16 logits).
 */
export type GenaiWeights = 'fp32' | 'q4' | 'q4f16';

export interface GenaiDecoderOptions {
  weights: GenaiWeights;
  /** Qwen3/Gemma-3 style RMSNorm over each head of q and k (weights [headDim]) before attention. */
  qNorm?: boolean;
  /** An Optimum-merged `use_cache_branch` bool [1] input: false makes the graph ignore the past. */
  useCacheBranch?: boolean;
  /** MatMulNBits block size (model builder's default 32). */
  blockSize?: number;
  /** MatMulNBits accuracy_level: 4 (default) = int8 activations, the path CPU int4 builds ask for; 0 = float. */
  accuracyLevel?: 0 | 4;
}

/** The float type inside the graph for a weight format. */
export function genaiFloatType(weights: GenaiWeights): 'float32' | 'float16' {
  return weights === 'q4f16' ? 'float16' : 'float32';
}

/** Name of layer i's q projection node in a model-builder export (`MatMul_Quant` when 4-bit). */
export function genaiQueryNodeName(layer: number, weights: GenaiWeights): string {
  return `/model/layers.${layer}/attn/q_proj/${weights === 'fp32' ? 'MatMul' : 'MatMul_Quant'}`;
}

/**
 * A decoder_model_merged graph shaped like onnxruntime-genai's model builder exports (the fused
 * layout issue 16 is about), with the ONNX VLM contract's I/O minus `position_ids`:
 *   inputs_embeds [B,S,H] (float32 in every format), attention_mask [B,T], past_key_values.{i}.key/value
 *   [B,KV,P,D], num_logits_to_keep (int64 scalar, 0 = all rows), optionally use_cache_branch
 *   -> logits [B,S or n,V], present.{i}.key/value [B,KV,T,D].
 * Each layer's attention is one com.microsoft GroupQueryAttention with do_rotary=1 and cos_cache /
 * sin_cache initializers: RoPE happens inside it at positions it derives from seqlens_k, computed
 * from the mask as the model builder does (ReduceSum(mask) - 1; total = mask length), so the new
 * tokens sit at sum(mask) - S .. sum(mask) - 1 (= P..P+S-1 for an all-ones mask). Keys in `present`
 * are post-RoPE (measured: equal to kernels/rope's rotation to P+i within 1.2e-7).
 * Node names follow the model builder (`/model/layers.N/attn/q_proj/MatMul`, `.../MatMul_Quant`
 * for 4-bit); no query tap is an output (real exports have none: graph surgery must find them).
 * Weights are drawn by the Hugging Face names (`model.layers.N.self_attn.q_proj.weight`), so a
 * random or needle weight source gives the same values as to the eager probe graphs.
 * onnxruntime's CPU GroupQueryAttention rotates only rotary dims / 2 that are a multiple of 8 (so
 * rotaryDim 16, 32, ... up to headDim).
 */
export function buildGenaiDecoderGraph(ctx: ProbeGraphContext, geo: TextGeometry, options: GenaiDecoderOptions): void {
  const { g, dtype } = ctx;
  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, numLayers } = geo;
  if (dtype !== genaiFloatType(options.weights)) throw new Error(`genai decoder ${options.weights}: context float type ${dtype}`);
  if ((geo.rotaryDim / 2) % 8 !== 0) {
    throw new Error(`genai decoder: rotaryDim ${geo.rotaryDim} unsupported (GroupQueryAttention's cos_cache width rotaryDim/2 must be a multiple of 8)`);
  }
  const blockSize = options.blockSize ?? 32;
  const level = options.accuracyLevel ?? 4;

  const embedsIn = g.input('inputs_embeds', 'float32', ['batch_size', 'sequence_length', H]);
  const mask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  const pastNames: Array<[string, string]> = [];
  for (let i = 0; i < numLayers; i++) {
    pastNames.push([
      g.input(`past_key_values.${i}.key`, dtype, ['batch_size', numKvHeads, 'past_sequence_length', D]),
      g.input(`past_key_values.${i}.value`, dtype, ['batch_size', numKvHeads, 'past_sequence_length', D]),
    ]);
  }
  const useCache = options.useCacheBranch ? g.input('use_cache_branch', 'bool', [1]) : undefined;
  const keepLogits = g.input('num_logits_to_keep', 'int64', []);

  const embeds = dtype === 'float16' ? g.op('Cast', [embedsIn], { to: 10 }, { name: 'model/embeds/Cast' }) : embedsIn;
  const { seqlensK, totalLength } = g.scope('/model/attn_mask_reformat/attn_mask_subgraph', () => {
    const sum = g.op('ReduceSum', [mask, g.int64s([1])], { keepdims: 0 });
    const seqlens = g.op('Cast', [g.op('Sub', [sum, g.scalar('int64', 1)])], { to: 6 }, { name: 'Cast' });
    const total = g.op('Gather', [g.op('Shape', [mask]), g.scalar('int64', 1)], { axis: 0 });
    return { seqlensK: seqlens, totalLength: g.op('Cast', [total], { to: 6 }, { name: 'Cast_1' }) };
  });
  const { cos, sin } = rotaryCaches(ctx, geo);
  // use_cache_branch false: past sliced to zero length (the no-cache branch of a merged export).
  const pastEnd = useCache
    ? g.scope('/model/use_cache_branch', () => g.op('Mul', [g.op('Cast', [useCache], { to: 7 }), g.int64s([1 << 30])]))
    : undefined;

  let hidden = embeds;
  for (let i = 0; i < numLayers; i++) {
    const hf = `model.layers.${i}`;
    let [pastKey, pastValue] = pastNames[i]!;
    hidden = g.scope(`/model/layers.${i}`, () => {
      const normed = g.scope('/input_layernorm', () => rmsNorm(ctx, hidden, `${hf}.input_layernorm.weight`, H, geo.rmsNormEps));
      const attn = g.scope('/attn', () => {
        let q = projection(ctx, normed, `${hf}.self_attn.q_proj.weight`, 'q_proj', H, numHeads * D, 'query_key', options.weights, blockSize, level);
        let k = projection(ctx, normed, `${hf}.self_attn.k_proj.weight`, 'k_proj', H, numKvHeads * D, 'query_key', options.weights, blockSize, level);
        const v = projection(ctx, normed, `${hf}.self_attn.v_proj.weight`, 'v_proj', H, numKvHeads * D, 'linear', options.weights, blockSize, level);
        if (options.qNorm) {
          q = g.scope('/q_norm', () => headNorm(ctx, q, `${hf}.self_attn.q_norm.weight`, numHeads, geo));
          k = g.scope('/k_norm', () => headNorm(ctx, k, `${hf}.self_attn.k_norm.weight`, numKvHeads, geo));
        }
        if (pastEnd) {
          const cut = (x: string) => g.op('Slice', [x, g.int64s([0]), pastEnd, g.int64s([2])]);
          pastKey = cut(pastKey);
          pastValue = cut(pastValue);
        }
        const [context, presentKey, presentValue] = g.opMulti(
          'GroupQueryAttention',
          [q, k, v, pastKey, pastValue, seqlensK, totalLength, cos, sin],
          3,
          { num_heads: numHeads, kv_num_heads: numKvHeads, do_rotary: 1, rotary_interleaved: 0, scale: { float: 1 / Math.sqrt(D) } },
          { domain: MS_DOMAIN },
        );
        g.output(presentKey!, `present.${i}.key`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
        g.output(presentValue!, `present.${i}.value`, dtype, ['batch_size', numKvHeads, 'total_sequence_length', D]);
        return projection(ctx, context!, `${hf}.self_attn.o_proj.weight`, 'o_proj', numHeads * D, H, 'linear', options.weights, blockSize, level);
      });
      const afterAttn = g.op('Add', [hidden, attn], {}, { name: 'residual_add/Add' });
      const normed2 = g.scope('/post_attention_layernorm', () =>
        rmsNorm(ctx, afterAttn, `${hf}.post_attention_layernorm.weight`, H, geo.rmsNormEps),
      );
      const mlp = g.scope('/mlp', () => {
        const gate = projection(ctx, normed2, `${hf}.mlp.gate_proj.weight`, 'gate_proj', H, geo.intermediateSize, 'linear', options.weights, blockSize, level);
        const up = projection(ctx, normed2, `${hf}.mlp.up_proj.weight`, 'up_proj', H, geo.intermediateSize, 'linear', options.weights, blockSize, level);
        const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])], {}, { name: 'act_fn/Mul' }), up]);
        return projection(ctx, act, `${hf}.mlp.down_proj.weight`, 'down_proj', geo.intermediateSize, H, 'linear', options.weights, blockSize, level);
      });
      return g.op('Add', [afterAttn, mlp], {}, { name: 'residual_add/Add_1' });
    });
  }

  const finalNorm = g.scope('/model/norm', () => rmsNorm(ctx, hidden, 'model.norm.weight', H, geo.rmsNormEps));
  // num_logits_to_keep n > 0: only the last n rows reach the lm_head; 0: every row.
  const kept = g.scope('/model/num_logits_to_keep', () => {
    const zero = g.scalar('int64', 0);
    const start = g.op('Where', [g.op('Equal', [keepLogits, zero]), zero, g.op('Neg', [keepLogits])]);
    const end = g.op('Slice', [g.op('Shape', [finalNorm]), g.int64s([1]), g.int64s([2])]);
    return g.op('Slice', [finalNorm, g.op('Unsqueeze', [start, g.int64s([0])]), end, g.int64s([1])]);
  });
  const logits = g.scope('/lm_head', () => projection(ctx, kept, 'lm_head.weight', '', H, geo.vocabSize, 'linear', options.weights, blockSize, level));
  g.output(logits, 'logits', dtype, ['batch_size', 'num_logits', geo.vocabSize]);
  const layers = Array.from({ length: numLayers }, (_, i) => i);
  g.orderOutputs(['logits', ...layers.flatMap((i) => [`present.${i}.key`, `present.${i}.value`])]);
}

/** cos_cache / sin_cache [maxPositionEmbeddings, rotaryDim/2]: cos/sin of float32 angles p * inv_freq. */
function rotaryCaches(ctx: ProbeGraphContext, geo: TextGeometry): { cos: string; sin: string } {
  const half = geo.rotaryDim / 2;
  const rows = geo.maxPositionEmbeddings;
  const invFreq = ropeInvFreq(geo.rotaryDim, geo.ropeTheta);
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let p = 0; p < rows; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(Math.fround(p) * invFreq[i]!);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  const store = (name: string, values: Float32Array) =>
    ctx.dtype === 'float16'
      ? ctx.g.initializer(name, 'float16', [rows, half], float32ToFloat16(values))
      : ctx.g.initializer(name, 'float32', [rows, half], values);
  return { cos: store('cos_cache', cos), sin: store('sin_cache', sin) };
}

/**
 * x·W named as the model builder names it (`<name>/MatMul`, or `<name>/MatMul_Quant` with a
 * MatMulNBits weight); `name` '' puts the node directly in the scope (the lm_head).
 */
function projection(
  ctx: ProbeGraphContext,
  x: string,
  hfName: string,
  name: string,
  inFeatures: number,
  outFeatures: number,
  role: WeightRole,
  weights: GenaiWeights,
  blockSize: number,
  accuracyLevel: 0 | 4,
): string {
  const { g } = ctx;
  const values = ctx.weights(hfName, [inFeatures, outFeatures], role);
  const prefix = name ? `${name}/` : '';
  const base = hfName.replace(/\.weight$/, '').replace('self_attn', 'attn');
  if (weights === 'fp32') {
    const w = g.initializer(`${base}.MatMul.weight`, 'float32', [inFeatures, outFeatures], values);
    return g.op('MatMul', [x, w], {}, { name: `${prefix}MatMul` });
  }
  const q = quantizeQ4(values, inFeatures, outFeatures, blockSize, weights === 'q4f16');
  const packed = g.initializer(`${base}.MatMul.weight_Q4`, 'uint8', [outFeatures, q.blocks, blockSize / 2], q.packed);
  const scales =
    q.scales instanceof Uint16Array
      ? g.initializer(`${base}.MatMul.weight_scales`, 'float16', [outFeatures * q.blocks], q.scales)
      : g.initializer(`${base}.MatMul.weight_scales`, 'float32', [outFeatures * q.blocks], q.scales);
  return g.op(
    'MatMulNBits',
    [x, packed, scales],
    { K: inFeatures, N: outFeatures, bits: 4, block_size: blockSize, accuracy_level: accuracyLevel },
    { name: `${prefix}MatMul_Quant`, domain: MS_DOMAIN },
  );
}

/** RMSNorm over each head of [B,S,heads*D] with a [D] weight (Qwen3's q_norm / k_norm). */
function headNorm(ctx: ProbeGraphContext, x: string, weightName: string, heads: number, geo: TextGeometry): string {
  const { g } = ctx;
  const D = geo.headDim;
  const split = g.op('Reshape', [x, g.int64s([0, 0, heads, D])]);
  const normed = rmsNorm(ctx, split, weightName, D, geo.rmsNormEps);
  return g.op('Reshape', [normed, g.int64s([0, 0, heads * D])]);
}
