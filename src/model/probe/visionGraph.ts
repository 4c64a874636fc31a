import type { VisionGeometry } from './geometry.js';
import { tokensPerImage } from './geometry.js';
import { quantizedActivationMatMul } from './quantizedMatMul.js';
import { type AttentionPath, floatScalar, linear, maskValue, MS_DOMAIN, type ProbeGraphContext, weight, weightMatMul } from './graphHelpers.js';

/**
 * How the MLP writes gelu(approximate='tanh') (SigLIP's gelu_pytorch_tanh).
 * 'export': torch.onnx's own decomposition (symbolic_opset9 `gelu`, used by torch.onnx.export and
 * optimum up to opset 19), node for node: 8 elementwise nodes, which onnxruntime's session optimizer
 * leaves alone (its FastGeluFusion knows the Megatron form and the Pow form, not this one).
 * 'fast': one com.microsoft FastGelu(x, bias) in place of the fc1 bias Add and those 8 nodes, what
 * onnxruntime's transformer optimizer (FusionFastGelu, then FusionBiasGelu) writes for that export;
 * float32 only, as onnxruntime's CPU kernel. docs/PERFORMANCE.md "Int8 and 4-bit encoders".
 */
export type GeluForm = 'export' | 'fast';

/**
 * Idefics3/SmolVLM-style vision encoder:
 *   pixel_values [B,N,3,S,S], pixel_attention_mask [B,N,S,S] -> image_features [N_real, T, textHidden]
 * All-zero (padding) images are dropped as the real encoder does; patches whose mask is all false are
 * masked out of attention, so a wrong mask changes the features. SigLIP body: patch Conv, learned
 * positions, pre-norm transformer blocks (LayerNorm, MHA with biases, tanh-GELU MLP), post LayerNorm;
 * then pixel shuffle by scaleFactor and a bias-free projection to the text hidden size.
 *
 * `attention: 'fused'` computes the (full, bidirectional) attention with onnxruntime's com.microsoft
 * MultiHeadAttention on [N,T,Hv] q/k/v, the patch mask entering as an additive attention_bias.
 * `gelu` (GeluForm) defaults to 'fast' with fused attention in float32, else 'export': the fused
 * build is the export as onnxruntime's transformer optimizer leaves it, the eager one as exported.
 */
export function buildVisionGraph(
  ctx: ProbeGraphContext,
  geo: VisionGeometry,
  textHidden: number,
  options: { attention?: AttentionPath; gelu?: GeluForm } = {},
): void {
  const fused = (options.attention ?? 'eager') === 'fused';
  const { g, dtype } = ctx;
  const gelu = options.gelu ?? (fused && dtype === 'float32' ? 'fast' : 'export');
  if (gelu === 'fast' && dtype !== 'float32') throw new Error(`FastGelu has a float32 CPU kernel only, not ${dtype}`);
  const S = geo.imageSize;
  const side = S / geo.patchSize;
  const patches = side * side;
  const Hv = geo.hiddenSize;

  const pixelValues = g.input('pixel_values', dtype, ['batch_size', 'num_images', 3, S, S]);
  const pixelMask = g.input('pixel_attention_mask', 'bool', ['batch_size', 'num_images', S, S]);

  const { images, patchAllowed } = g.scope('/model/vision_model', () => {
    const flat = g.op('Reshape', [pixelValues, g.int64s([-1, 3, S, S])]);
    const magnitude = g.op('ReduceMax', [g.op('Abs', [flat])], { axes: [1, 2, 3], keepdims: 0 });
    const real = g.op('Greater', [magnitude, floatScalar(ctx, 0)]);
    const images = g.op('Compress', [flat, real], { axis: 0 });
    const maskFloat = g.op('Cast', [g.op('Reshape', [pixelMask, g.int64s([-1, 1, S, S])])], { to: 1 });
    const realMask = g.op('Compress', [maskFloat, real], { axis: 0 });
    const patchMask = g.op('MaxPool', [realMask], { kernel_shape: [geo.patchSize, geo.patchSize], strides: [geo.patchSize, geo.patchSize] });
    const patchAllowed = g.op('Greater', [
      g.op('Reshape', [patchMask, g.int64s([-1, 1, 1, patches])]),
      g.scalar('float32', 0),
    ]);
    if (!fused) return { images, patchAllowed };
    // [N,1,S,T] additive: 0 for real patches, the most negative value for masked-out ones.
    const bias = g.op('Where', [patchAllowed, floatScalar(ctx, 0), floatScalar(ctx, maskValue(dtype))]);
    const biasShape = g.op('Concat', [g.op('Slice', [g.op('Shape', [images]), g.int64s([0]), g.int64s([1])]), g.int64s([1, patches, patches])], { axis: 0 });
    return { images, patchAllowed: g.op('Expand', [bias, biasShape]) };
  });

  let x = g.scope('/model/vision_model/embeddings', () => {
    const kernel = weight(ctx, 'model.vision_model.embeddings.patch_embedding.weight', [Hv, 3, geo.patchSize, geo.patchSize], 'linear');
    const bias = weight(ctx, 'model.vision_model.embeddings.patch_embedding.bias', [Hv], 'bias');
    const conv = g.op('Conv', [images, kernel, bias], { strides: [geo.patchSize, geo.patchSize], kernel_shape: [geo.patchSize, geo.patchSize] }, { name: 'patch_embedding/Conv' });
    const sequence = g.op('Transpose', [g.op('Reshape', [conv, g.int64s([0, Hv, patches])])], { perm: [0, 2, 1] });
    const positions = weight(ctx, 'model.vision_model.embeddings.position_embedding.weight', [patches, Hv], 'position');
    return g.op('Add', [sequence, positions]);
  });

  for (let i = 0; i < geo.numLayers; i++) {
    const prefix = `model.vision_model.encoder.layers.${i}`;
    x = g.scope(`/model/vision_model/encoder/layers.${i}`, () => {
      const h1 = g.scope('/layer_norm1', () => layerNorm(ctx, x, `${prefix}.layer_norm1`, Hv, geo.layerNormEps));
      const attn = g.scope('/self_attn', () =>
        fused ? fusedSelfAttention(ctx, h1, `${prefix}.self_attn`, geo, patchAllowed) : selfAttention(ctx, h1, `${prefix}.self_attn`, geo, patchAllowed),
      );
      const afterAttn = g.op('Add', [x, attn]);
      const h2 = g.scope('/layer_norm2', () => layerNorm(ctx, afterAttn, `${prefix}.layer_norm2`, Hv, geo.layerNormEps));
      const mlp = g.scope('/mlp', () => {
        let activated: string;
        if (gelu === 'fast') {
          activated = fastGeluLinear(ctx, h2, `${prefix}.mlp`, 'fc1', Hv, geo.intermediateSize);
        } else {
          const up = linear(ctx, h2, `${prefix}.mlp`, 'fc1', Hv, geo.intermediateSize, true);
          activated = g.scope('/activation_fn', () => geluTanhExport(ctx, up));
        }
        return linear(ctx, activated, `${prefix}.mlp`, 'fc2', geo.intermediateSize, Hv, true);
      });
      return g.op('Add', [afterAttn, mlp], {}, { name: 'Add_1' });
    });
  }
  x = g.scope('/model/vision_model/post_layernorm', () => layerNorm(ctx, x, 'model.vision_model.post_layernorm', Hv, geo.layerNormEps));

  const features = g.scope('/model/connector', () => {
    const s = geo.scaleFactor;
    const shuffled = pixelShuffle(ctx, x, side, Hv, s);
    return g.scope('/modality_projection', () => {
      return weightMatMul(ctx, shuffled, 'model.connector.modality_projection.proj.weight', Hv * s * s, textHidden, 'linear', 'proj/MatMul');
    });
  });
  g.output(features, 'image_features', dtype, ['num_real_images', tokensPerImage(geo), textHidden]);
}

function layerNorm(ctx: ProbeGraphContext, x: string, prefix: string, size: number, eps: number): string {
  const scale = weight(ctx, `${prefix}.weight`, [size], 'norm');
  const bias = weight(ctx, `${prefix}.bias`, [size], 'bias');
  return ctx.g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: eps } });
}

function selfAttention(ctx: ProbeGraphContext, x: string, prefix: string, geo: VisionGeometry, allowed: string): string {
  const { g, dtype } = ctx;
  const Hv = geo.hiddenSize;
  const headDim = Hv / geo.numHeads;
  const heads = (name: string) => {
    const projected = linear(ctx, x, prefix, name, Hv, Hv, true, name === 'v_proj' ? 'linear' : 'query_key');
    return g.op('Transpose', [g.op('Reshape', [projected, g.int64s([0, 0, geo.numHeads, headDim])])], { perm: [0, 2, 1, 3] });
  };
  const q = heads('q_proj');
  const k = heads('k_proj');
  const v = heads('v_proj');
  // quantize_dynamic with MatMulConstBOnly off quantizes these activation MatMuls too (u8 x u8).
  const int8 = ctx.matmul?.weights === 'q8' && ctx.matmul.activationMatMuls === true;
  const matmul = (a: string, b: string, name: string) => (int8 ? quantizedActivationMatMul(g, a, b, name) : g.op('MatMul', [a, b], {}, { name }));
  let scores = g.op('Mul', [matmul(q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] }), 'MatMul'), floatScalar(ctx, 1 / Math.sqrt(headDim))]);
  if (dtype === 'float16') scores = g.op('Cast', [scores], { to: 1 });
  scores = g.op('Where', [allowed, scores, g.scalar('float32', maskValue('float32'))]);
  let probs = g.op('Softmax', [scores], { axis: -1 });
  if (dtype === 'float16') probs = g.op('Cast', [probs], { to: 10 });
  const context = g.op('Transpose', [matmul(probs, v, 'MatMul_1')], { perm: [0, 2, 1, 3] });
  const merged = g.op('Reshape', [context, g.int64s([0, 0, Hv])]);
  return linear(ctx, merged, prefix, 'out_proj', Hv, Hv, true);
}

/** The same attention by com.microsoft MultiHeadAttention; `bias` is the additive [N,1,T,T] patch mask. */
function fusedSelfAttention(ctx: ProbeGraphContext, x: string, prefix: string, geo: VisionGeometry, bias: string): string {
  const { g } = ctx;
  const Hv = geo.hiddenSize;
  const headDim = Hv / geo.numHeads;
  const project = (name: string) => linear(ctx, x, prefix, name, Hv, Hv, true, name === 'v_proj' ? 'linear' : 'query_key');
  const context = g.op(
    'MultiHeadAttention',
    [project('q_proj'), project('k_proj'), project('v_proj'), '', '', bias],
    { num_heads: geo.numHeads, scale: { float: 1 / Math.sqrt(headDim) } },
    { domain: MS_DOMAIN },
  );
  return linear(ctx, context, prefix, 'out_proj', Hv, Hv, true);
}

/**
 * gelu_pytorch_tanh, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as torch.onnx's symbolic_opset9
 * `gelu(approximate='tanh')` writes it, operand order included (the scalars first where torch has
 * them first): Mul(x, Mul(x, x)), Mul(kappa, .), Add(x, .), Mul(beta, .), Tanh, Add(one, .), Mul(x, .),
 * Mul(half, .). The same values as any other order (each product and sum is commutative in float).
 */
function geluTanhExport(ctx: ProbeGraphContext, x: string): string {
  const { g } = ctx;
  const cube = g.op('Mul', [x, g.op('Mul', [x, x])]);
  const inner = g.op('Mul', [floatScalar(ctx, Math.sqrt(2 / Math.PI)), g.op('Add', [x, g.op('Mul', [floatScalar(ctx, 0.044715), cube])])]);
  const gate = g.op('Add', [floatScalar(ctx, 1), g.op('Tanh', [inner])]);
  return g.op('Mul', [floatScalar(ctx, 0.5), g.op('Mul', [x, gate])]);
}

/** gelu_pytorch_tanh(x·W + b) as com.microsoft FastGelu(x·W, b): the bias enters the fused node. */
function fastGeluLinear(ctx: ProbeGraphContext, x: string, prefix: string, layer: string, inFeatures: number, outFeatures: number): string {
  const y = weightMatMul(ctx, x, `${prefix}.${layer}.weight`, inFeatures, outFeatures, 'linear', `${layer}/MatMul`);
  const bias = weight(ctx, `${prefix}.${layer}.bias`, [outFeatures], 'bias');
  return ctx.g.op('FastGelu', [y, bias], {}, { domain: MS_DOMAIN, name: 'activation_fn/FastGelu' });
}

/** Idefics3Connector.pixel_shuffle: [N, side*side, C] -> [N, (side/s)^2, C*s*s]. */
function pixelShuffle(ctx: ProbeGraphContext, x: string, side: number, channels: number, s: number): string {
  const { g } = ctx;
  let y = g.op('Reshape', [x, g.int64s([0, side, side / s, channels * s])]);
  y = g.op('Transpose', [y], { perm: [0, 2, 1, 3] });
  y = g.op('Reshape', [y, g.int64s([0, side / s, side / s, channels * s * s])]);
  y = g.op('Transpose', [y], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [y, g.int64s([0, (side * side) / (s * s), channels * s * s])]);
}
