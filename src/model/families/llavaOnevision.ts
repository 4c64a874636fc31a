import { expandLlavaOnevisionPrompt } from '../promptExpansion.js';
import type { ModelFamilyDescriptor } from './types.js';

/**
 * LLaVA-OneVision (HF LlavaOnevision processor and model; ReKV's llava_onevision_rekv.py for
 * streams). Images: one fixed-size tile (no anyres, as transformers.js), `<image>` repeated once per
 * feature row (729, or 730 with an export's image_newline row). Stream frames: the 27x27 patch grid
 * pooled bilinearly to 14x14 = 196 tokens (HF apply_pooling), ChatML system prompt as sinks.
 */
export const LLAVA_ONEVISION: ModelFamilyDescriptor = {
  id: 'llava_onevision',
  name: 'LLaVA-OneVision',
  modelTypes: ['llava_onevision'],
  turnEndToken: '<|im_end|>',
  expandImagePrompt: (templated, image) => expandLlavaOnevisionPrompt(templated, [image.featureRows]),
  streamPrompt(tokensPerFrame) {
    // LLaVA-OneVision as ReKV runs it: the ChatML system prompt as sinks, bare image tokens per frame.
    return {
      prefix: '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n',
      frame: () => '<image>'.repeat(tokensPerFrame),
      question: (q) => `\n${q}<|im_end|>\n<|im_start|>assistant\n`,
    };
  },
  promptSummary:
    'image: <image> repeated once per feature row (729, 730 with image_newline); ' +
    'stream frame: bare <image> x tokens per frame after a ChatML system prompt (ReKV); turn ends <|im_end|>',
  preprocessing: {
    pipeline: 'llava_onevision',
    defaultResample: 3,
    alpha: 'drop',
    imageSplitting: false,
    defaultSizes: { side: 384 },
    summary: 'resize to size.height x size.width (384), BICUBIC, alpha dropped; no anyres tiling',
  },
  streamFrames: { kind: 'pooled-2x', summary: 'patch grid pooled bilinearly to ceil(side/2)^2 (27x27 -> 14x14 = 196), image_newline row dropped' },
  rope: { defaultTheta: 10000, defaultPartialRotaryFactor: 1, layout: 'rotate-half', summary: 'Qwen2 RoPE (rotate-half), rope_theta from text_config (0.5B: 1000000)' },
};
