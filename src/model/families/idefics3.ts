import { expandSmolVlmPrompt, SMOLVLM_VIDEO_OUTRO, smolVlmFramePrompt } from '../promptExpansion.js';
import { type ModelFamilyDescriptor, promptSeconds } from './types.js';

/**
 * SmolVLM / SmolVLM2 (HF Idefics3 processor family; transformers.js Idefics3 / SmolVLM code).
 * Images: resize the longest edge, split into 512-px tiles plus the global image, each tile
 * image_seq_len (64) tokens in `<fake_token_around_image><row_r_col_c>...` blocks. Video (SmolVLM2):
 * "Frame from MM:SS:" + one unsplit image block per frame, "\n\n" after the last frame.
 */
export const IDEFICS3: ModelFamilyDescriptor = {
  id: 'idefics3',
  name: 'SmolVLM / SmolVLM2 (Idefics3)',
  modelTypes: ['idefics3', 'smolvlm'],
  turnEndToken: '<end_of_utterance>',
  expandImagePrompt: (templated, image, tokensPerImage) => expandSmolVlmPrompt(templated, [{ rows: image.rows, cols: image.cols }], tokensPerImage()),
  streamPrompt(tokensPerFrame) {
    // SmolVLM2's video turn: the intro line, then "\nFrame from MM:SS:<image block>" per frame, then
    // "\n\n" and the question. The intro's frame count and duration are unknown on a live stream,
    // so the count-free part of it is kept.
    return {
      prefix: '<|im_start|>User: You are provided the following series of frames from a video.\n',
      frame: (seconds) => smolVlmFramePrompt(promptSeconds(seconds), tokensPerFrame),
      question: (q) => `${SMOLVLM_VIDEO_OUTRO}${q}<end_of_utterance>\nAssistant:`,
    };
  },
  promptSummary:
    'image: tile grid of <fake_token_around_image><row_r_col_c> blocks + <global-img> block, image_seq_len tokens each; ' +
    'stream frame: "\\nFrame from MM:SS:" + one unsplit block; question after "\\n\\n", turn ends <end_of_utterance>',
  preprocessing: {
    pipeline: 'idefics3',
    defaultResample: 1,
    alpha: 'flatten-white',
    imageSplitting: true,
    // The SmolVLM / SmolVLM2 configs on the Hub set these; HF's class defaults (4*364, 364) belong to
    // Idefics3-8B and would give the wrong tile size for the 512-px SigLIP of SmolVLM.
    defaultSizes: { longestEdge: 2048, tileSize: 512 },
    summary: 'longest edge to size.longest_edge (2048), split into max_image_size (512) tiles + global image, LANCZOS, alpha flattened on white',
  },
  streamFrames: { kind: 'image-block', summary: 'one unsplit image block per frame (image_seq_len tokens)' },
  rope: { defaultTheta: 10000, defaultPartialRotaryFactor: 1, layout: 'rotate-half', summary: 'Llama RoPE (rotate-half), rope_theta from text_config (SmolVLM2: 100000)' },
};
