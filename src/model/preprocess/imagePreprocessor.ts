/**
 * Image and video-frame preprocessing for the ONNX vision encoders (contract §4.1, §4.2): decode,
 * resize and tile with sharp, then rescale + normalise into CHW float32 in a plain JS loop.
 *
 * The size arithmetic follows HF transformers' Python processors (`SmolVLMImageProcessor`,
 * `SmolVLMVideoProcessor`) rather than transformers.js, because the models were trained on the
 * Python path (contract §7.9). Pixels are not bit-exact with PIL: sharp's Lanczos/bicubic kernels and
 * rounding differ slightly, so compare against fixtures made by this code, not by PIL.
 *
 * Normalisation is done in JS on the uint8 buffer because sharp's float output path rounds and
 * clamps to 0..255 before emitting floats (dependencies.md), which would destroy negative values.
 */
import { rgbToPlanar } from '../../../kernels/pixels.js';
import { stat } from 'node:fs/promises';
import type { KernelEnum, Metadata, Sharp, SharpOptions } from 'sharp';
import { VigilError } from '../../../common/errors.js';
import { modelFamily } from '../families/index.js';
import type { ImagePreprocessorConfig, ResampleKernel } from './preprocessorConfig.js';

export type ImageInput =
  | string /* file path */
  | Buffer /* encoded image */
  | { data: Uint8Array; width: number; height: number; channels: 3 | 4 } /* raw pixels */;

export interface PreprocessedImage {
  /** [N, 3, H, W] row-major, rescaled and normalised. */
  pixelValues: Float32Array;
  count: number;
  height: number;
  width: number;
  /** Tile grid; 0, 0 when the image was not split (then count is 1). */
  rows: number;
  cols: number;
}

export interface VideoFrameOptions {
  /**
   * How a non-square frame becomes size x size.
   * - 'pad': keep the aspect ratio and pad bottom/right with black pixels (value 0, which
   *   normalises to (0 - mean) / std = -1 for SmolVLM). Bottom/right matches where HF's own padding
   *   puts the filler, so the real content sits at the origin as in `pixel_attention_mask`.
   * - 'stretch' (default): HF parity, what the model saw in training. Both
   *   `SmolVLMVideoProcessor.resize` and the older image-processor video path resize the longest
   *   edge to `size` and then stretch to size x size (no padding).
   */
  fit?: 'pad' | 'stretch';
  /**
   * Writes the pixels into this buffer (3 * size * size floats) instead of a fresh one: a caller
   * preprocessing frame after frame reuses one buffer once the encoder has read the last frame
   * (a fresh 3 MB array costs ~10 ms of page faults per frame on the project's VMs).
   */
  out?: Float32Array;
}

/** A decoded image: 3-channel sRGB, 8-bit, row-major HWC. */
interface RgbImage {
  data: Buffer;
  width: number;
  height: number;
}

interface Size {
  width: number;
  height: number;
}

interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

// HF's SmolVLM processors clamp the first resize to 4K (MAX_IMAGE_SIZE).
const MAX_IMAGE_SIZE = 4096;

const SHARP_KERNEL: Record<ResampleKernel, keyof KernelEnum> = {
  lanczos3: 'lanczos3',
  bilinear: 'linear',
  bicubic: 'cubic', // Catmull-Rom, the same a = -0.5 cubic as PIL's BICUBIC
  nearest: 'nearest',
};

export async function preprocessImage(
  input: ImageInput,
  config: ImagePreprocessorConfig,
): Promise<PreprocessedImage> {
  return modelFamily(config.family).preprocessing.pipeline === 'idefics3'
    ? preprocessIdefics3(input, config)
    : preprocessLlavaOnevision(input, config);
}

/**
 * SmolVLM2 video frame: longest edge to `size` (small frames are upscaled, as in HF), then squared to
 * size x size (see `VideoFrameOptions.fit`). Never split, so always 64 tokens per frame.
 */
export async function preprocessVideoFrame(
  input: ImageInput,
  config: ImagePreprocessorConfig,
  size: number,
  options: VideoFrameOptions = {},
): Promise<PreprocessedImage> {
  if (!Number.isInteger(size) || size <= 0) {
    throw new VigilError('BAD_INPUT', `Video frame size must be a positive integer (got ${size}).`);
  }
  const luts = normalisationLut(config);
  // Frames that ffmpeg already scaled to size x size RGB (the ingest path) need no decode or
  // resize: sharp would return the same bytes, so go straight to the normalisation.
  if (typeof input === 'object' && !Buffer.isBuffer(input) && input.channels === 3 && input.width === size && input.height === size && input.data.length === size * size * 3) {
    const image: RgbImage = { data: Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength), width: size, height: size };
    return pack([{ image, region: fullRegion(image) }], size, size, 0, 0, luts, options.out);
  }
  const kernel = SHARP_KERNEL[config.resample];
  const frame = await decodeRgb(input, config, (w, h) => videoFrameSize(w, h, size));
  if ((options.fit ?? 'stretch') === 'stretch') {
    const squared = await resizeRgb(frame, { width: size, height: size }, kernel);
    return pack([{ image: squared, region: fullRegion(squared) }], size, size, 0, 0, luts, options.out);
  }
  return pack([{ image: frame, region: fullRegion(frame) }], size, size, 0, 0, luts, options.out);
}

/**
 * Rows and columns SmolVLM's splitting gives an image of this size (0, 0 = not split, one image).
 * Pure arithmetic, so callers can budget tokens ((rows * cols + 1) * 64) without decoding.
 */
export function smolVlmTileGrid(
  width: number,
  height: number,
  config: ImagePreprocessorConfig,
): { rows: number; cols: number } {
  const tile = requireTileSize(config);
  if (!config.doImageSplitting) return { rows: 0, cols: 0 };
  const first = config.doResize ? longestEdgeSize(width, height, requireLongestEdge(config)) : { width, height };
  const grid = tileMultipleSize(first.width, first.height, tile);
  if (grid.width <= tile && grid.height <= tile) return { rows: 0, cols: 0 };
  return { rows: grid.height / tile, cols: grid.width / tile };
}

async function preprocessIdefics3(
  input: ImageInput,
  config: ImagePreprocessorConfig,
): Promise<PreprocessedImage> {
  const tile = requireTileSize(config);
  const longestEdge = config.doResize ? requireLongestEdge(config) : undefined;
  const kernel = SHARP_KERNEL[config.resample];
  const luts = normalisationLut(config);

  // HF step 1: longest edge to size.longest_edge, upscaling small images too.
  let image = await decodeRgb(
    input,
    config,
    longestEdge === undefined ? undefined : (w, h) => longestEdgeSize(w, h, longestEdge),
  );

  if (!config.doImageSplitting) {
    // HF's no-split branch stretches to tile x tile (`resize` to height = width = max_image_size);
    // it does not pad. We follow it so single-image prompts see what the model was trained on.
    const global = await resizeRgb(image, { width: tile, height: tile }, kernel);
    return pack([{ image: global, region: fullRegion(global) }], tile, tile, 0, 0, luts);
  }

  // HF step 2 (`resize_for_vision_encoder`): both sides up to multiples of the tile size. Done as a
  // second resize, as HF does, instead of folding it into step 1, to stay close to its pixels.
  image = await resizeRgb(image, tileMultipleSize(image.width, image.height, tile), kernel);

  if (image.width <= tile && image.height <= tile) {
    // Exactly one tile: HF returns the image alone, without a separate global copy.
    return pack([{ image, region: fullRegion(image) }], tile, tile, 0, 0, luts);
  }

  const rows = image.height / tile;
  const cols = image.width / tile;
  const parts: Array<{ image: RgbImage; region: Region }> = [];
  // Tiles are exact tile x tile windows of the resized image, so they are cut while normalising
  // (an offset into the buffer) instead of by one sharp round trip per tile.
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      parts.push({ image, region: { left: c * tile, top: r * tile, width: tile, height: tile } });
    }
  }
  // The global image is the whole (multiple-of-tile) image squeezed to tile x tile, appended last.
  const global = await resizeRgb(image, { width: tile, height: tile }, kernel);
  parts.push({ image: global, region: fullRegion(global) });
  return pack(parts, tile, tile, rows, cols, luts);
}

async function preprocessLlavaOnevision(
  input: ImageInput,
  config: ImagePreprocessorConfig,
): Promise<PreprocessedImage> {
  const { height, width } = config;
  if (config.doResize && (height === undefined || width === undefined)) {
    throw new VigilError('BAD_CONFIG', 'LLaVA-OneVision preprocessing needs a height and width in its config.');
  }
  // No anyres: transformers.js feeds one fixed-size image (contract §4.2), aspect ratio not kept.
  const target = config.doResize ? { width: width!, height: height! } : undefined;
  const image = await decodeRgb(input, config, target === undefined ? undefined : () => target);
  const luts = normalisationLut(config);
  return pack([{ image, region: fullRegion(image) }], image.height, image.width, 0, 0, luts);
}

// ---------------------------------------------------------------------------------------------
// Size arithmetic (HF-exact; Python's int() on positive floats is Math.floor)

/** `_resize_output_size_rescale_to_max_len`: long side to maxLen, short side floored then made even. */
function scaleLongestEdge(width: number, height: number, maxLen: number): Size {
  const aspect = width / height;
  if (width >= height) {
    const h = Math.floor(maxLen / aspect);
    return { width: maxLen, height: Math.max(h % 2 === 0 ? h : h + 1, 1) };
  }
  const w = Math.floor(maxLen * aspect);
  return { width: Math.max(w % 2 === 0 ? w : w + 1, 1), height: maxLen };
}

/** SmolVLMImageProcessor's first resize: `scaleLongestEdge`, then the 4K cap (`..._scale_below_upper_bound`). */
function longestEdgeSize(width: number, height: number, maxLen: number): Size {
  const { width: w, height: h } = scaleLongestEdge(width, height, maxLen);
  const aspect = w / h;
  if (w >= h && w > MAX_IMAGE_SIZE) {
    return { width: MAX_IMAGE_SIZE, height: Math.max(Math.floor(MAX_IMAGE_SIZE / aspect), 1) };
  }
  if (h > w && h > MAX_IMAGE_SIZE) {
    return { width: Math.max(Math.floor(MAX_IMAGE_SIZE * aspect), 1), height: MAX_IMAGE_SIZE };
  }
  return { width: w, height: h };
}

/** `resize_for_vision_encoder`: the short side is derived from the rounded long side, then rounded. */
function tileMultipleSize(width: number, height: number, tile: number): Size {
  const aspect = width / height;
  const roundUp = (v: number) => Math.ceil(Math.max(v, 1) / tile) * tile;
  if (width >= height) {
    const w = roundUp(width);
    return { width: w, height: roundUp(Math.floor(w / aspect)) };
  }
  const h = roundUp(height);
  return { width: roundUp(Math.floor(h * aspect)), height: h };
}

/**
 * SmolVLMVideoProcessor's `get_resize_output_image_size` (same rule, cap applied to maxLen first).
 * The even-rounding can push the short side one past an odd `size`; clamp so the frame fits the square.
 */
function videoFrameSize(width: number, height: number, size: number): Size {
  const maxLen = Math.min(MAX_IMAGE_SIZE, size);
  const scaled = scaleLongestEdge(width, height, maxLen);
  return { width: Math.min(scaled.width, maxLen), height: Math.min(scaled.height, maxLen) };
}

function requireTileSize(config: ImagePreprocessorConfig): number {
  if (config.tileSize === undefined) {
    throw new VigilError('BAD_CONFIG', 'SmolVLM/Idefics3 preprocessing needs max_image_size.longest_edge (tile size).');
  }
  return config.tileSize;
}

function requireLongestEdge(config: ImagePreprocessorConfig): number {
  if (config.longestEdge === undefined) {
    throw new VigilError('BAD_CONFIG', 'SmolVLM/Idefics3 preprocessing with do_resize needs size.longest_edge.');
  }
  return config.longestEdge;
}

function fullRegion(image: RgbImage): Region {
  return { left: 0, top: 0, width: image.width, height: image.height };
}

// ---------------------------------------------------------------------------------------------
// Decoding (sharp)

function describeInput(input: ImageInput): string {
  if (typeof input === 'string') return `image file "${input}"`;
  if (Buffer.isBuffer(input)) return `encoded image buffer (${input.length} bytes)`;
  return `raw ${input.width}x${input.height}x${input.channels} pixel buffer`;
}

/**
 * Decodes any input to 8-bit sRGB with 3 channels, applying the optional first resize in the same
 * sharp pipeline (one decode, and JPEG shrink-on-load for large frames).
 *
 * Alpha: Idefics3/SmolVLM composites onto white, as HF's SmolVLM `convert_to_rgb` does; LLaVA-OV
 * drops it, as HF's generic `convert_to_rgb` (PIL `convert("RGB")`) does. HF converts after its
 * first resize and we before it; with premultiplied resampling the two agree up to rounding.
 * EXIF orientation is applied, matching transformers' `load_image` (`exif_transpose`).
 */
async function decodeRgb(
  input: ImageInput,
  config: ImagePreprocessorConfig,
  targetSize?: (width: number, height: number) => Size | undefined,
): Promise<RgbImage> {
  const what = describeInput(input);
  let pipe = await openImage(input, what);

  // The resize target depends on the (EXIF-oriented) input size, which only the header tells.
  let width: number;
  let height: number;
  let hasAlpha: boolean;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    let meta: Metadata;
    try {
      meta = await pipe.metadata();
    } catch (error) {
      throw decodeError(what, error);
    }
    width = meta.autoOrient?.width ?? meta.width;
    height = meta.autoOrient?.height ?? meta.height;
    hasAlpha = meta.hasAlpha;
  } else {
    ({ width, height } = input);
    hasAlpha = input.channels === 4;
  }

  const dropAlpha = modelFamily(config.family).preprocessing.alpha === 'drop';
  pipe = dropAlpha ? pipe.removeAlpha() : pipe.flatten({ background: { r: 255, g: 255, b: 255 } });
  const target = targetSize?.(width, height);
  const needsResize = target !== undefined && (target.width !== width || target.height !== height);
  // sharp resizes RGBA premultiplied and drops alpha only afterwards, which would blacken the colour
  // under transparent pixels; PIL's convert("RGB") keeps it. So with alpha to drop, resize separately.
  const resizeLater = needsResize && dropAlpha && hasAlpha;
  if (needsResize && !resizeLater) {
    pipe = pipe.resize(target.width, target.height, { fit: 'fill', kernel: SHARP_KERNEL[config.resample] });
  }
  let decoded: RgbImage;
  try {
    const { data, info } = await pipe.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`decoded to ${info.channels} channels, ${data.length} bytes`);
    }
    decoded = { data, width: info.width, height: info.height };
  } catch (error) {
    throw decodeError(what, error);
  }
  return resizeLater ? resizeRgb(decoded, target!, SHARP_KERNEL[config.resample]) : decoded;
}

/** Validates the input and returns a sharp instance for it; user mistakes become VigilErrors. */
async function openImage(input: ImageInput, what: string): Promise<Sharp> {
  // failOn 'error': tolerate the benign warnings common in camera/ffmpeg JPEGs, still reject
  // broken data. autoOrient: honour EXIF rotation like transformers' load_image.
  const options: SharpOptions = { failOn: 'error', autoOrient: true };
  if (typeof input === 'string') {
    let info;
    try {
      info = await stat(input);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new VigilError('FILE_NOT_FOUND', `Image file not found: "${input}".`, { cause: error });
      }
      throw new VigilError('BAD_INPUT', `Cannot read ${what}: ${(error as Error).message}`, { cause: error });
    }
    if (!info.isFile()) throw new VigilError('BAD_INPUT', `${capitalise(what)} is not a regular file.`);
    if (info.size === 0) throw new VigilError('BAD_INPUT', `${capitalise(what)} is empty (0 bytes).`);
    return (await loadSharp())(input, options);
  }
  if (Buffer.isBuffer(input)) {
    if (input.length === 0) throw new VigilError('BAD_INPUT', 'Encoded image buffer is empty (0 bytes).');
    return (await loadSharp())(input, options);
  }
  const { data, width, height, channels } = input;
  const dimsOk = [width, height].every((v) => Number.isInteger(v) && v > 0);
  if (!dimsOk || (channels !== 3 && channels !== 4)) {
    throw new VigilError(
      'BAD_INPUT',
      `Raw image must have positive integer width/height and 3 or 4 channels (got ${width}x${height}x${channels}).`,
    );
  }
  const needed = width * height * channels;
  if (!(data instanceof Uint8Array) || data.length !== needed) {
    const got = data instanceof Uint8Array ? `${data.length} bytes` : 'no Uint8Array';
    throw new VigilError('BAD_INPUT', `Raw ${width}x${height}x${channels} image needs ${needed} bytes (got ${got}).`);
  }
  return (await loadSharp())(data, { raw: { width, height, channels } });
}

/** sharp loads libvips (~0.13 s); it is imported on first use so that commands which never touch pixels start sooner. */
let sharpModule: Promise<typeof import('sharp')> | undefined;
async function loadSharp(): Promise<typeof import('sharp').default> {
  return (await (sharpModule ??= import('sharp'))).default;
}

function decodeError(what: string, error: unknown): VigilError {
  const reason = error instanceof Error ? error.message : String(error);
  return new VigilError('BAD_INPUT', `Cannot decode ${what}: ${reason}`, { cause: error });
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

async function resizeRgb(image: RgbImage, size: Size, kernel: keyof KernelEnum): Promise<RgbImage> {
  if (image.width === size.width && image.height === size.height) return image;
  const raw = { width: image.width, height: image.height, channels: 3 } as const;
  const sharp = await loadSharp();
  const { data, info } = await sharp(image.data, { raw })
    .resize(size.width, size.height, { fit: 'fill', kernel })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

// ---------------------------------------------------------------------------------------------
// Rescale + normalise into CHW float32

/** 3 x 256 lookup table: value v of channel c maps to (v * rescale - mean[c]) / std[c]. */
function normalisationLut(config: ImagePreprocessorConfig): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) {
      const scaled = v * config.rescaleFactor;
      lut[c * 256 + v] = config.doNormalize ? (scaled - config.mean[c]!) / config.std[c]! : scaled;
    }
  }
  return lut;
}

/**
 * Writes each part's region into an [N, 3, outHeight, outWidth] tensor. Pixels outside the region
 * (only the padded video frame has any) get the value of a black pixel, i.e. lut[c][0].
 */
function pack(
  parts: Array<{ image: RgbImage; region: Region }>,
  outHeight: number,
  outWidth: number,
  rows: number,
  cols: number,
  lut: Float32Array,
  out?: Float32Array,
): PreprocessedImage {
  const plane = outHeight * outWidth;
  const floats = parts.length * 3 * plane;
  if (out && out.length !== floats) throw new VigilError('INTERNAL', `the output buffer has ${out.length} floats; this image needs ${floats}`);
  const pixelValues = out ?? new Float32Array(floats);
  parts.forEach(({ image, region }, index) => {
    const base = index * 3 * plane;
    const copyW = Math.min(region.width, outWidth);
    const copyH = Math.min(region.height, outHeight);
    const src = image.data;
    for (let y = 0; y < outHeight; y++) {
      const rowStart = base + y * outWidth;
      let first = 0;
      if (y < copyH) {
        rgbToPlanar(src, (region.top + y) * image.width + region.left, copyW, lut, pixelValues.subarray(base), plane, y * outWidth);
        first = copyW;
      }
      if (first < outWidth) {
        for (let c = 0; c < 3; c++) {
          const start = rowStart + c * plane;
          pixelValues.fill(lut[c * 256]!, start + first, start + outWidth);
        }
      }
    }
  });
  return { pixelValues, count: parts.length, height: outHeight, width: outWidth, rows, cols };
}
