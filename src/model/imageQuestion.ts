import { VigilError } from '../../common/errors.js';
import { generate, type GenerationResult, type SamplingOptions } from './generate.js';
import { type ImageInput, preprocessImage } from './preprocess/imagePreprocessor.js';
import { modelFamily } from './families/index.js';
import type { VisionLanguageModel } from './visionLanguageModel.js';

export interface ImageQuestion extends SamplingOptions {
  image: ImageInput;
  question: string;
  maxNewTokens: number;
  onText?: (piece: string) => void;
}

export interface ImageAnswer extends GenerationResult {
  /** Milliseconds spent in preprocessing + the vision encoder. */
  visionMs: number;
  imageTokens: number;
}

/**
 * Answers one question about one image: chat template, image placeholder expansion for the
 * model's family, vision encoder, feature merge at the image-token rows, prefill and decode.
 */
export async function answerAboutImage(model: VisionLanguageModel, request: ImageQuestion): Promise<ImageAnswer> {
  if (request.question.trim() === '') throw new VigilError('BAD_INPUT', 'the question is empty');
  const visionStarted = performance.now();
  const image = await preprocessImage(request.image, model.imageConfig);
  const features = await model.encodeImages(image);
  const visionMs = performance.now() - visionStarted;

  const templated = model.tokenizer.applyChatTemplate(
    [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: request.question }] }],
    { addGenerationPrompt: true },
  );
  const prompt = modelFamily(model.config.family).expandImagePrompt(
    templated,
    { rows: image.rows, cols: image.cols, featureRows: features.dims[0]! },
    () => model.tokensPerImage,
  );
  const ids = model.tokenizer.encode(prompt);
  const inputsEmbeds = await model.embedWithImages(ids, features);
  const result = await generate(model, { inputsEmbeds }, request);
  return { ...result, visionMs, imageTokens: features.dims[0]! };
}
