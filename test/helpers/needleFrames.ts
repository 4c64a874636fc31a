/**
 * Frames for the probe-needle model, drawn with sharp: a needle frame is a solid background with a
 * centered square of another palette color; a haystack frame is gray gaussian noise (no palette
 * color). Frames come out as raw RGB at camera size and go through the real video-frame
 * preprocessing (resize to the model's 64-px tile, 'stretch' fit, SmolVLM normalization).
 */
import sharp, { type Sharp } from 'sharp';
import { NEEDLE_RGB, type NeedleColor } from '../../src/model/probe/needleLayout.js';
import { type PreprocessedImage, preprocessVideoFrame } from '../../src/model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';

export interface RawFrame {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

export interface NeedleFrameOptions {
  background: NeedleColor;
  square: NeedleColor;
  width?: number;
  height?: number;
  /** Square side as a fraction of the frame height; default 1/3. */
  squareFraction?: number;
}

function rgb(color: NeedleColor): { r: number; g: number; b: number } {
  const [r, g, b] = NEEDLE_RGB[color];
  return { r, g, b };
}

async function raw(image: Sharp): Promise<RawFrame> {
  const { data, info } = await image.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: 3 };
}

/** Solid `background` with a centered square of color `square` (640x360 by default). */
export async function needleFrame(options: NeedleFrameOptions): Promise<RawFrame> {
  const { width = 640, height = 360, squareFraction = 1 / 3 } = options;
  const side = Math.round(height * squareFraction);
  const square = await sharp({ create: { width: side, height: side, channels: 3, background: rgb(options.square) } }).png().toBuffer();
  const image = sharp({ create: { width, height, channels: 3, background: rgb(options.background) } }).composite([
    { input: square, left: Math.round((width - side) / 2), top: Math.round((height - side) / 2) },
  ]);
  // Composite runs at output time; flatten to raw in a second pass so the result is plain RGB.
  return raw(sharp(await image.png().toBuffer()));
}

/** Noisy gray: gaussian noise around mid-gray in every channel. */
export async function haystackFrame(options: { width?: number; height?: number; sigma?: number; mean?: number } = {}): Promise<RawFrame> {
  const { width = 640, height = 360, sigma = 30, mean = 128 } = options;
  return raw(sharp({ create: { width, height, channels: 3, background: { r: mean, g: mean, b: mean }, noise: { type: 'gaussian', mean, sigma } } }));
}

export async function toPng(frame: RawFrame): Promise<Buffer> {
  return sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } }).png().toBuffer();
}

/** The model's video-frame preprocessing (longest edge to the tile size, then stretched square). */
export async function preprocessFrame(model: VisionLanguageModel, frame: RawFrame | Buffer): Promise<PreprocessedImage> {
  const size = model.imageConfig.tileSize ?? 64;
  return preprocessVideoFrame(frame, model.imageConfig, size);
}

/** Several preprocessed frames as one batch (count N), for one vision-encoder call. */
export function batchFrames(frames: readonly PreprocessedImage[]): PreprocessedImage {
  const first = frames[0]!;
  const pixelValues = new Float32Array(frames.reduce((n, f) => n + f.pixelValues.length, 0));
  let offset = 0;
  for (const f of frames) {
    pixelValues.set(f.pixelValues, offset);
    offset += f.pixelValues.length;
  }
  return { pixelValues, count: frames.length, height: first.height, width: first.width, rows: 0, cols: 0 };
}
