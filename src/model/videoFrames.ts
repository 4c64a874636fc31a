import ort from 'onnxruntime-node';
import { poolFrameGrids, pooledGridSide } from '../../kernels/bilinearResize.js';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { VigilError } from '../../common/errors.js';
import { modelFamily } from './families/index.js';
import type { PreprocessedImage } from './preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from './visionLanguageModel.js';

/**
 * Video frames as each family's reference implementation feeds them to the language model.
 *
 * LLaVA-OneVision (HF transformers LlavaOnevisionModel.get_video_features / apply_pooling; ReKV's
 * llava_onevision_rekv.py calls the same apply_pooling): a frame's 27x27 projected patch features
 * are resized bilinearly (torch interpolate, align_corners=False) to ceil(27/2) = 14 per side, so a
 * frame is 196 tokens, not the 729 of an image. HF appends `image_newline` once per *video*, after
 * the last frame (its processor counts frames * 196 + 1 `<video>` tokens), never per frame; ReKV
 * leaves it out entirely, and so does Vigil's stream (a live stream has no last frame). An ONNX
 * vision encoder that appends the newline row to each image (730 rows) has that row dropped here.
 *
 * SmolVLM / SmolVLM2: a frame is the image block as is (64 tokens).
 */

/**
 * The patch grid side of a LLaVA-OV frame: the config's (vision_config image_size / patch_size,
 * or sqrt(num_image_tokens)), else read from the per-image row count (side^2, or side^2 + 1 with
 * the newline row).
 */
export function framePatchGridSide(configSide: number | undefined, rowsPerImage: number | undefined): number | undefined {
  if (configSide !== undefined) return configSide;
  if (rowsPerImage === undefined) return undefined;
  for (const rows of [rowsPerImage, rowsPerImage - 1]) {
    const side = Math.round(Math.sqrt(rows));
    if (side >= 1 && side * side === rows) return side;
  }
  return undefined;
}

/** The vision graph's static rows per image, when its image_features output is [N, rows, hidden]. */
function staticImageRows(model: VisionLanguageModel): number | undefined {
  const shape = model.vision.output('image_features').shape;
  const rows = shape.length === 3 ? shape[1] : undefined;
  return typeof rows === 'number' ? rows : undefined;
}

/**
 * Tokens of one stream (video) frame: LLaVA-OV pools each frame's patch grid (27x27) to
 * ceil(side/2)^2 = 196; SmolVLM frames are the image block (model.tokensPerImage, 64).
 */
export function streamTokensPerFrame(model: VisionLanguageModel): number {
  const { config } = model;
  if (modelFamily(config.family).streamFrames.kind !== 'pooled-2x') return model.tokensPerImage;
  const side = framePatchGridSide(config.patchGridSide, staticImageRows(model) ?? config.numImageTokens);
  if (side === undefined) {
    throw new VigilError(
      'BAD_CONFIG',
      `${config.dir}: cannot tell the vision tower's patch grid (no vision_config image_size/patch_size, no processor_config num_image_tokens, no static token dim)`,
    );
  }
  const pooled = pooledGridSide(side);
  return pooled * pooled;
}

/**
 * Runs the vision encoder on video frames and returns their features as a stream feeds them
 * ([frames * streamTokensPerFrame, hidden] in the embedding type): pooled for LLaVA-OV, as
 * model.encodeImages returns them otherwise.
 */
export async function encodeStreamFrames(model: VisionLanguageModel, frames: PreprocessedImage): Promise<ort.Tensor> {
  const features = await model.encodeImages(frames);
  if (modelFamily(model.config.family).streamFrames.kind !== 'pooled-2x') return features;
  const side = framePatchGridSide(model.config.patchGridSide, features.dims[0]! / frames.count);
  if (side === undefined) {
    throw new VigilError('SHAPE_MISMATCH', `${model.vision.file}: ${features.dims[0]} feature rows for ${frames.count} frame(s) are not a square patch grid`);
  }
  return poolLlavaOnevisionFrames(features, frames.count, side);
}

/**
 * Pools LLaVA-OV vision features of `frames` frames ([frames * rowsPerFrame, hidden], float32 or
 * float16 bits) to [frames * pooled^2, hidden] in the same type. Each frame's rows must be the
 * side x side grid, optionally followed by one `image_newline` row (dropped).
 */
export function poolLlavaOnevisionFrames(features: ort.Tensor, frames: number, side: number): ort.Tensor {
  const [rows, hidden] = features.dims as [number, number];
  const perFrame = rows / frames;
  const grid = side * side;
  if (perFrame !== grid && perFrame !== grid + 1) {
    throw new VigilError(
      'SHAPE_MISMATCH',
      `the vision encoder returned ${rows} rows for ${frames} frame(s); a LLaVA-OneVision frame needs ${grid} (${side}x${side} patches) or ${grid + 1} (with image_newline)`,
    );
  }
  const half = features.type === 'float16';
  const data = half ? float16ToFloat32(features.data as Uint16Array) : (features.data as Float32Array);
  let grids = data;
  if (perFrame === grid + 1) {
    grids = new Float32Array(frames * grid * hidden);
    for (let f = 0; f < frames; f++) grids.set(data.subarray(f * perFrame * hidden, (f * perFrame + grid) * hidden), f * grid * hidden);
  }
  const pooled = poolFrameGrids(grids, frames, side, hidden);
  const outRows = pooled.length / hidden;
  return half ? new ort.Tensor('float16', float32ToFloat16(pooled), [outRows, hidden]) : new ort.Tensor('float32', pooled, [outRows, hidden]);
}
