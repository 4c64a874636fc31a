import { tokensPerImage } from './geometry.js';
import type { ProbeModelSpec } from './probeSpecs.js';

/** SmolVLM2's special token ids, kept by the probe tokenizer so one loader serves real and probe models. */
export const SMOLVLM_TOKEN_IDS = {
  imStart: 1,
  imEnd: 2,
  image: 49190,
  endOfUtterance: 49279,
} as const;

/**
 * The JSON files of a probe model folder, with the field names real SmolVLM2 exports use
 * (config.json with text_config/vision_config, generation_config, processor and preprocessor configs).
 */
export function probeModelFiles(
  spec: ProbeModelSpec,
  seed: number,
  fileSuffix: string,
  tokenizerConfigJson: unknown,
): Record<string, unknown> {
  const { text, vision } = spec;
  const graphs = ['vision_encoder', 'embed_tokens', 'decoder_model_merged'];
  const transformersJsConfig: Record<string, unknown> = { dtype: fileSuffix === '_fp16' ? 'fp16' : 'fp32' };
  if (spec.externalData) {
    transformersJsConfig.use_external_data_format = Object.fromEntries(
      graphs.filter((g) => g !== 'embed_tokens').map((g) => [`${g}${fileSuffix}.onnx`, 1]),
    );
  }
  const config = {
    architectures: ['SmolVLMForConditionalGeneration'],
    model_type: 'smolvlm',
    image_token_id: SMOLVLM_TOKEN_IDS.image,
    scale_factor: vision.scaleFactor,
    vocab_size: text.vocabSize,
    torch_dtype: spec.dtype,
    text_config: {
      model_type: 'llama',
      hidden_size: text.hiddenSize,
      intermediate_size: text.intermediateSize,
      num_hidden_layers: text.numLayers,
      num_attention_heads: text.numHeads,
      num_key_value_heads: text.numKvHeads,
      head_dim: text.headDim,
      rms_norm_eps: text.rmsNormEps,
      rope_theta: text.ropeTheta,
      partial_rotary_factor: text.rotaryDim / text.headDim,
      vocab_size: text.vocabSize,
      max_position_embeddings: text.maxPositionEmbeddings,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      bos_token_id: SMOLVLM_TOKEN_IDS.imStart,
      eos_token_id: SMOLVLM_TOKEN_IDS.imEnd,
      pad_token_id: SMOLVLM_TOKEN_IDS.imEnd,
    },
    vision_config: {
      model_type: 'smolvlm_vision',
      hidden_size: vision.hiddenSize,
      image_size: vision.imageSize,
      patch_size: vision.patchSize,
      num_hidden_layers: vision.numLayers,
      num_attention_heads: vision.numHeads,
      intermediate_size: vision.intermediateSize,
      layer_norm_eps: vision.layerNormEps,
      hidden_act: 'gelu_pytorch_tanh',
    },
    'transformers.js_config': transformersJsConfig,
    vigil_probe: { name: spec.name, seed, weights: spec.weights, description: spec.description },
  };
  return {
    'config.json': config,
    'generation_config.json': {
      bos_token_id: SMOLVLM_TOKEN_IDS.imStart,
      eos_token_id: [SMOLVLM_TOKEN_IDS.endOfUtterance, SMOLVLM_TOKEN_IDS.imEnd],
      pad_token_id: SMOLVLM_TOKEN_IDS.imEnd,
      max_new_tokens: 64,
    },
    'processor_config.json': { processor_class: 'SmolVLMProcessor', image_seq_len: tokensPerImage(vision) },
    'preprocessor_config.json': {
      image_processor_type: 'SmolVLMImageProcessor',
      processor_class: 'SmolVLMProcessor',
      do_convert_rgb: true,
      do_resize: true,
      size: { longest_edge: vision.imageSize },
      max_image_size: { longest_edge: vision.imageSize },
      do_image_splitting: false,
      resample: 1,
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [0.5, 0.5, 0.5],
      image_std: [0.5, 0.5, 0.5],
      do_pad: true,
      video_sampling: { fps: 1, max_frames: 64, video_size: { longest_edge: vision.imageSize } },
    },
    'tokenizer_config.json': tokenizerConfigJson,
  };
}
