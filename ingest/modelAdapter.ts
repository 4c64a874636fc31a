/**
 * The one bridge from ingest/ to the model: a sampled Frame (raw RGB) -> the vision encoder's input
 * (CHW float32, resized and normalised per the model's preprocessor config) through
 * `preprocessVideoFrame`. The rest of ingest/ never imports the model; callers that want frames
 * ready for the encoder import this file directly (it is not re-exported from ingest/index.ts).
 *
 * Let ffmpeg do the heavy resize: `modelFrameSize(size, fit)` is the `size` option for openSource
 * that makes sharp's resize a no-op (stretch: exactly size x size; pad: longest edge = size), so
 * only the normalisation is left (dependencies.md: ~0.6 ms per frame instead of ~2.8 ms).
 */
import { preprocessVideoFrame, type PreprocessedImage, type VideoFrameOptions } from '../src/model/preprocess/imagePreprocessor.js';
import type { ImagePreprocessorConfig } from '../src/model/preprocess/preprocessorConfig.js';
import type { Frame, OutputSize } from './types.js';

export function modelFrameSize(size: number, fit: VideoFrameOptions['fit'] = 'stretch'): OutputSize {
  return fit === 'pad' ? { longestEdge: size } : { width: size, height: size };
}

export function frameToModelInput(
  frame: Frame,
  config: ImagePreprocessorConfig,
  size: number,
  options: VideoFrameOptions = {},
): Promise<PreprocessedImage> {
  return preprocessVideoFrame({ data: frame.data, width: frame.width, height: frame.height, channels: 3 }, config, size, options);
}
