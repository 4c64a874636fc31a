import { modelFamily, type ModelFamily, type StreamPromptFormat } from '../model/families/index.js';

export { promptSeconds, type StreamPromptFormat } from '../model/families/index.js';

/**
 * The text around a stream's frames, per model family (src/model/families/: each family's
 * streamPrompt): a prefix (the attention sinks), one block per frame (with the family's image
 * placeholders), and the question turn that follows the frames.
 */
export function streamPromptFormat(family: ModelFamily, tokensPerFrame: number): StreamPromptFormat {
  return modelFamily(family).streamPrompt(tokensPerFrame);
}
