import type { AttentionPath, FloatType } from './graphHelpers.js';
import type { TextGeometry, VisionGeometry } from './geometry.js';

/** A buildable probe model: geometry, float type and where its weights come from. */
export interface ProbeModelSpec {
  name: string;
  description: string;
  text: TextGeometry;
  vision: VisionGeometry;
  dtype: FloatType;
  /** 'random': seeded random weights; 'needle': hand-set weights and the hand-built needle vision encoder. */
  weights: 'random' | 'needle';
  /** Expose the per-layer q projections as outputs (default true); real stock exports do not. */
  queryTaps?: boolean;
  /**
   * How the decoder and the SigLIP vision encoder compute attention (absent: 'eager', standard ONNX
   * ops). 'fused' uses onnxruntime's com.microsoft GroupQueryAttention / MultiHeadAttention: the same
   * outputs within ~1e-5 (fp32), faster for long prefills (bench/attention-paths.ts). The needle
   * models' hand-built vision encoder has no attention; probe-needle's decoder stays eager,
   * probe-needle-256m's is fused (same answers and margins to 0.01, measured; faster).
   */
  attention?: AttentionPath;
  /** Keep large weights in `.onnx_data` files beside the graphs (as exports over 2 GB must). */
  externalData: boolean;
  /**
   * Needle models only: layers after the circuit's two (2..numLayers-1) get seeded random weights,
   * their output projections (o_proj, down_proj) multiplied by `outputScale` so that what they add
   * to the residual stream leaves the circuit's answer intact; `tokenEnergy` gives every token a
   * random vector outside the circuit's dims (needleWeights.ts NeedleRandomLayers; docs/needle-model.md).
   * Absent: those layers are all zero (pass-through).
   */
  needleRandomLayers?: { outputScale: number; writeCircuitDims?: boolean; tokenEnergy?: number };
  /**
   * Emit the decoder in onnxruntime-genai's model-builder style (genaiDecoderGraph.ts, issue 16):
   * GroupQueryAttention with do_rotary and cos/sin caches, no position_ids, num_logits_to_keep,
   * `/model/layers.N/attn/...` names, no query-tap outputs; written as decoder_model_merged.onnx
   * (fp32), _q4 (MatMulNBits) and _q4f16 (float16 KV and logits, float32 inputs_embeds). The q4 /
   * q4f16 vision and embed files are the fp32 graphs under those names. `qNorm`: per-head RMSNorm on q
   * and k (Qwen3/Gemma-3); `useCacheBranch`: a use_cache_branch input.
   */
  genaiDecoder?: { qNorm?: boolean; useCacheBranch?: boolean };
  /**
   * Also write the quantized files real exports ship (issue 19; float32 specs with the eager/fused
   * decoder only): `vision_encoder_quantized` / `decoder_model_merged_quantized` (dynamic int8: the
   * DynamicQuantizeLinear -> MatMulInteger pattern of onnxruntime's quantize_dynamic, per-tensor
   * symmetric int8 weights) and `vision_encoder_q4` / `decoder_model_merged_q4` (MatMulNBits 4-bit,
   * block 32, accuracy level 4), for every weight MatMul (quantizedMatMul.ts). embed_tokens (a
   * Gather) and the needle models' hand-built vision graph have none: their `_quantized` / `_q4`
   * files are the fp32 graphs.
   */
  quantizedGraphs?: boolean;
}

const SMOLVLM_VOCAB = 49280;

/** Small enough for unit tests: 2 layers, 64-px frames of 4 tokens, the real SmolVLM vocab and ids. */
const TINY_TEXT: TextGeometry = {
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  vocabSize: SMOLVLM_VOCAB,
  ropeTheta: 100000,
  rotaryDim: 16,
  rmsNormEps: 1e-5,
  maxPositionEmbeddings: 16384,
};

const TINY_VISION: VisionGeometry = {
  imageSize: 64,
  patchSize: 16,
  hiddenSize: 32,
  numLayers: 1,
  numHeads: 2,
  intermediateSize: 64,
  scaleFactor: 2,
  layerNormEps: 1e-6,
};

/**
 * probe-needle (docs/needle-model.md): the tiny shapes with partial rotary (RoPE on the first 4 of 16
 * head dims), so the 12 other dims carry position-free content; the MLP is all zeros, so it is small.
 */
const NEEDLE_TEXT: TextGeometry = { ...TINY_TEXT, intermediateSize: 16, rotaryDim: 4 };

/** SmolVLM2-256M: SmolLM2-135M-style decoder and SigLIP-base/16 at 512 px with pixel shuffle x4. */
const SMOLVLM2_256M_TEXT: TextGeometry = {
  hiddenSize: 576,
  intermediateSize: 1536,
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  headDim: 64,
  vocabSize: SMOLVLM_VOCAB,
  ropeTheta: 100000,
  rotaryDim: 64,
  rmsNormEps: 1e-5,
  maxPositionEmbeddings: 8192,
};

const SMOLVLM2_256M_VISION: VisionGeometry = {
  imageSize: 512,
  patchSize: 16,
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  intermediateSize: 3072,
  scaleFactor: 4,
  layerNormEps: 1e-6,
};

/**
 * probe-needle-256m (docs/needle-model.md): SmolVLM2-256M's decoder shapes (30 layers, hidden 576, 9/3
 * heads of 64 dims, MLP 1536, vocab 49280) with partial rotary: RoPE on the first 48 of 64 head dims,
 * so the circuit's 9 query/key dims (from 48 on) are position-free. KV shapes and bytes are those of
 * the real model; only which dims rotate differs.
 */
const NEEDLE_256M_TEXT: TextGeometry = { ...SMOLVLM2_256M_TEXT, rotaryDim: 48 };

/**
 * probe-needle-256m's random part (docs/needle-model.md): output scale of its 28 random layers and the
 * random energy every token carries outside the circuit's dims. With token energy 64 the answer's
 * margin is 30.00 at scale 0, 29.6 at 0.1, 25.8 at 0.3, 20.8 at 0.5, 12.5 at 1 (the random layers'
 * energy grows the final norm's rms). At 0.5 the random layers add ~1.1x the tokens' own energy to
 * the answer position (rms x1.44) and the margin is like probe-needle's test floor (20).
 */
export const NEEDLE_256M_RANDOM_LAYERS = { outputScale: 0.5, tokenEnergy: 64 } as const;

function randomProbe(
  name: string,
  description: string,
  text: TextGeometry,
  vision: VisionGeometry,
  dtype: FloatType,
  externalData: boolean,
): ProbeModelSpec {
  // Fused attention where bench/attention-paths.ts measured it faster: float32. In float16 the
  // fused decoder's decode step was slower (x1.14), so the half models stay eager.
  const attention: AttentionPath | undefined = dtype === 'float32' ? 'fused' : undefined;
  // int8 / 4-bit files for the float32 models (float16 graphs have no quantized form here).
  const quantized = dtype === 'float32' ? { quantizedGraphs: true } : {};
  return { name, description, text, vision, dtype, weights: 'random', externalData, ...(attention ? { attention } : {}), ...quantized };
}

/**
 * The GQA needle (probe-needle-gqa): onnxruntime's GroupQueryAttention rotates rotaryDim/2 that is a
 * multiple of 8, so probe-needle's 4 rotary dims of 16 become 16 of 32 (the circuit needs >= 9
 * position-free dims: 16 here).
 */
const NEEDLE_GQA_TEXT: TextGeometry = { ...NEEDLE_TEXT, headDim: 32, rotaryDim: 16 };

/** A random probe whose decoder is in the model-builder style (see ProbeModelSpec.genaiDecoder). */
function genaiProbe(name: string, description: string, base: string, genaiDecoder: NonNullable<ProbeModelSpec['genaiDecoder']>): ProbeModelSpec {
  const spec: ProbeModelSpec = { ...PROBE_MODELS_BASE.find((s) => s.name === base)! };
  // Their quantized decoders are the model builder's (_q4, _q4f16), not quantize_dynamic's.
  delete spec.quantizedGraphs;
  return { ...spec, name, description, genaiDecoder };
}

const PROBE_MODELS_BASE: readonly ProbeModelSpec[] = [
  randomProbe('probe-random-tiny', 'tiny random-weight SmolVLM-layout model for tests (2 layers, 4 tokens/frame)', TINY_TEXT, TINY_VISION, 'float32', false),
  randomProbe('probe-random-tiny-fp16', 'probe-random-tiny with float16 weights and I/O', TINY_TEXT, TINY_VISION, 'float16', false),
  randomProbe(
    'probe-random-smolvlm2-256m',
    'random weights at SmolVLM2-256M geometry (30 layers, 64 tokens per 512-px frame), weights in .onnx_data',
    SMOLVLM2_256M_TEXT,
    SMOLVLM2_256M_VISION,
    'float32',
    true,
  ),
  randomProbe(
    'probe-random-smolvlm2-256m-fp16',
    'probe-random-smolvlm2-256m with float16 weights and I/O',
    SMOLVLM2_256M_TEXT,
    SMOLVLM2_256M_VISION,
    'float16',
    true,
  ),
  {
    name: 'probe-needle',
    description: 'hand-set weights: answers "What color was the square on the <color> screen?" only if that frame is in context',
    text: NEEDLE_TEXT,
    vision: TINY_VISION,
    dtype: 'float32',
    weights: 'needle',
    externalData: false,
    quantizedGraphs: true,
  },
  {
    name: 'probe-needle-256m',
    description: 'probe-needle circuit in layers 0-1 of a SmolVLM2-256M-geometry model (64 tokens per 512-px frame), layers 2-29 random, scaled down',
    text: NEEDLE_256M_TEXT,
    // Only imageSize and tokens per image matter: the needle vision graph is hand-built (no SigLIP).
    vision: SMOLVLM2_256M_VISION,
    dtype: 'float32',
    weights: 'needle',
    externalData: true,
    attention: 'fused',
    needleRandomLayers: { ...NEEDLE_256M_RANDOM_LAYERS },
    quantizedGraphs: true,
  },
];

export const PROBE_MODELS: readonly ProbeModelSpec[] = [
  ...PROBE_MODELS_BASE,
  // Model-builder-style decoders (issue 16): fp32, _q4 and _q4f16 decoder files in one folder.
  genaiProbe('probe-random-tiny-gqa', 'probe-random-tiny with a model-builder-style decoder (GQA do_rotary, no position_ids, q4/q4f16 files)', 'probe-random-tiny', {}),
  genaiProbe('probe-random-tiny-gqa-qnorm', 'probe-random-tiny-gqa with per-head q_norm/k_norm (Qwen3/Gemma-3 style)', 'probe-random-tiny', { qNorm: true }),
  genaiProbe('probe-random-tiny-gqa-cache-branch', 'probe-random-tiny-gqa with a use_cache_branch input', 'probe-random-tiny', { useCacheBranch: true }),
  genaiProbe(
    'probe-random-smolvlm2-256m-gqa',
    'probe-random-smolvlm2-256m with a model-builder-style decoder (GQA do_rotary, no position_ids, q4/q4f16 files)',
    'probe-random-smolvlm2-256m',
    {},
  ),
  genaiProbe('probe-random-smolvlm2-256m-gqa-qnorm', 'probe-random-smolvlm2-256m-gqa with per-head q_norm/k_norm', 'probe-random-smolvlm2-256m', { qNorm: true }),
  {
    name: 'probe-needle-gqa',
    description: 'probe-needle with a model-builder-style decoder (GQA do_rotary; head dim 32, RoPE on 16)',
    text: NEEDLE_GQA_TEXT,
    vision: TINY_VISION,
    dtype: 'float32',
    weights: 'needle',
    externalData: false,
    genaiDecoder: {},
  },
  genaiProbe(
    'probe-needle-256m-gqa',
    'probe-needle-256m with a model-builder-style decoder (GQA do_rotary on 48 of 64 dims, q4/q4f16 files)',
    'probe-needle-256m',
    {},
  ),
];

export function findProbeSpec(name: string): ProbeModelSpec | undefined {
  return PROBE_MODELS.find((spec) => spec.name === name);
}
