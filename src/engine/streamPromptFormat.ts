import type { ModelFamily } from '../model/modelConfig.js';
import { SMOLVLM_VIDEO_OUTRO, smolVlmFramePrompt } from '../model/promptExpansion.js';

/**
 * Stream time as the frame prompt shows it. Minutes wrap after 99:59 so that every frame chunk has
 * the same token count (digits are one token each): per-layer retrieval needs chunks of one size,
 * since all layers' contexts must have the same length. Evidence times come from chunk metadata,
 * not from this text, so they stay exact; only the model's view of time repeats every 100 minutes.
 */
export function promptSeconds(seconds: number): number {
  return seconds % 6000;
}

/**
 * The text around a stream's frames, per model family: a prefix (the attention sinks), one block
 * per frame (with the family's image placeholders), and the question turn that follows the frames.
 */
export interface StreamPromptFormat {
  prefix: string;
  frame(seconds: number): string;
  /** The chat-formatted question with the answer prefix (ReKV pass 2). */
  question(question: string): string;
}

export function streamPromptFormat(family: ModelFamily, tokensPerFrame: number): StreamPromptFormat {
  if (family === 'idefics3') {
    // SmolVLM2's video turn: the intro line, then "\nFrame from MM:SS:<image block>" per frame, then
    // "\n\n" and the question. The intro's frame count and duration are unknown on a live stream,
    // so the count-free part of it is kept.
    return {
      prefix: '<|im_start|>User: You are provided the following series of frames from a video.\n',
      frame: (seconds) => smolVlmFramePrompt(promptSeconds(seconds), tokensPerFrame),
      question: (q) => `${SMOLVLM_VIDEO_OUTRO}${q}<end_of_utterance>\nAssistant:`,
    };
  }
  // LLaVA-OneVision as ReKV runs it: the ChatML system prompt as sinks, bare image tokens per frame.
  return {
    prefix: '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n',
    frame: () => '<image>'.repeat(tokensPerFrame),
    question: (q) => `\n${q}<|im_end|>\n<|im_start|>assistant\n`,
  };
}
