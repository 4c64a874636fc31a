/**
 * Turns a model's `preprocessor_config.json` (already parsed as JSON) into the few values the image
 * preprocessor needs, with HF's defaults filled in and every field type-checked, so a broken or
 * foreign config fails at load time with the file and field named instead of producing garbage
 * pixels later.
 */
import { VigilError } from '../../../common/errors.js';
import { modelFamily } from '../families/index.js';
import type { ModelFamily } from '../families/types.js';

export type ImageFamily = ModelFamily;
export type ResampleKernel = 'lanczos3' | 'bilinear' | 'bicubic' | 'nearest';

export interface ImagePreprocessorConfig {
  family: ImageFamily;
  doResize: boolean;
  /** Idefics3: the longest edge after the first resize (`size.longest_edge`). */
  longestEdge?: number;
  /** Idefics3: tile side and global-image side (`max_image_size.longest_edge`). */
  tileSize?: number;
  /** LLaVA-OneVision: fixed output size (`size.height` / `size.width`). */
  height?: number;
  width?: number;
  doImageSplitting: boolean;
  /** 1 when the config says `do_rescale: false`. */
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
  resample: ResampleKernel;
}

// PIL.Image.Resampling codes as HF stores them. 4 (BOX) and 5 (HAMMING) have no sharp kernel; none of
// the supported families uses them, so they are rejected rather than silently approximated.
const PIL_RESAMPLE: Record<number, ResampleKernel> = {
  0: 'nearest',
  1: 'lanczos3',
  2: 'bilinear',
  3: 'bicubic',
};

type Json = Record<string, unknown>;

export function parsePreprocessorConfig(
  json: unknown,
  family: ImageFamily,
  source: string,
): ImagePreprocessorConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new VigilError('BAD_CONFIG', `${source}: preprocessor config must be a JSON object.`);
  }
  const cfg = json as Json;
  const field = new FieldReader(cfg, source);

  const doRescale = field.bool('do_rescale', true);
  const rescaleFactor = doRescale ? field.positiveNumber('rescale_factor', 1 / 255) : 1;
  const common = {
    family,
    doResize: field.bool('do_resize', true),
    rescaleFactor,
    doNormalize: field.bool('do_normalize', true),
    mean: field.triple('image_mean', 0.5, false),
    std: field.triple('image_std', 0.5, true),
  };

  const rules = modelFamily(family).preprocessing;
  if (rules.pipeline === 'idefics3') {
    return {
      ...common,
      longestEdge: field.sizeEdge('size', 'longest_edge', rules.defaultSizes.longestEdge!),
      tileSize: field.sizeEdge('max_image_size', 'longest_edge', rules.defaultSizes.tileSize!),
      doImageSplitting: field.bool('do_image_splitting', rules.imageSplitting),
      resample: field.resample(rules.defaultResample),
    };
  }
  const { height, width } = field.fixedSize('size', rules.defaultSizes.side!);
  return {
    ...common,
    height,
    width,
    // The transformers.js LLaVA path has no anyres tiling (contract §4.2); one image, one tile.
    doImageSplitting: rules.imageSplitting,
    resample: field.resample(rules.defaultResample),
  };
}

/** Reads one field at a time, so every error message can name the file and the key. */
class FieldReader {
  constructor(
    private readonly cfg: Json,
    private readonly source: string,
  ) {}

  private fail(key: string, problem: string, value: unknown): never {
    throw new VigilError(
      'BAD_CONFIG',
      `${this.source}: "${key}" ${problem} (got ${JSON.stringify(value)}).`,
    );
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.cfg[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') this.fail(key, 'must be true or false', value);
    return value;
  }

  positiveNumber(key: string, fallback: number): number {
    const value = this.cfg[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      this.fail(key, 'must be a positive number', value);
    }
    return value;
  }

  /** HF accepts a single float or a per-channel list for image_mean / image_std. */
  triple(key: string, fallback: number, nonZero: boolean): [number, number, number] {
    const value = this.cfg[key];
    if (value === undefined || value === null) return [fallback, fallback, fallback];
    const list = typeof value === 'number' ? [value, value, value] : value;
    const ok =
      Array.isArray(list) &&
      list.length === 3 &&
      list.every((v) => typeof v === 'number' && Number.isFinite(v) && (!nonZero || v !== 0));
    if (!ok) {
      this.fail(key, `must be a number or a list of 3 ${nonZero ? 'non-zero ' : ''}numbers`, value);
    }
    const [a, b, c] = list as number[];
    return [a!, b!, c!];
  }

  private positiveInt(key: string, value: unknown): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      this.fail(key, 'must be a positive integer', value);
    }
    return value;
  }

  /** `{ "longest_edge": N }` objects (Idefics3 `size` and `max_image_size`). */
  sizeEdge(key: string, edgeKey: string, fallback: number): number {
    const value = this.cfg[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.fail(key, `must be an object with "${edgeKey}"`, value);
    }
    const edge = (value as Json)[edgeKey];
    if (edge === undefined) this.fail(key, `must contain "${edgeKey}"`, value);
    return this.positiveInt(`${key}.${edgeKey}`, edge);
  }

  /**
   * LLaVA-OV `size`: `{height, width}` as on the Hub; `{shortest_edge: N}` (older CLIP-style configs)
   * is read as an N x N square because this path always resizes to a fixed square.
   */
  fixedSize(key: string, fallback: number): { height: number; width: number } {
    const value = this.cfg[key];
    if (value === undefined || value === null) return { height: fallback, width: fallback };
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.fail(key, 'must be an object with "height" and "width"', value);
    }
    const size = value as Json;
    if (size['height'] !== undefined || size['width'] !== undefined) {
      return {
        height: this.positiveInt(`${key}.height`, size['height']),
        width: this.positiveInt(`${key}.width`, size['width']),
      };
    }
    if (size['shortest_edge'] !== undefined) {
      const edge = this.positiveInt(`${key}.shortest_edge`, size['shortest_edge']);
      return { height: edge, width: edge };
    }
    this.fail(key, 'must contain "height" and "width"', value);
  }

  resample(fallbackCode: number): ResampleKernel {
    const value = this.cfg['resample'];
    const code = value === undefined || value === null ? fallbackCode : value;
    const kernel = typeof code === 'number' ? PIL_RESAMPLE[code] : undefined;
    if (kernel === undefined) {
      this.fail(
        'resample',
        'must be a PIL resampling code: 0 (nearest), 1 (lanczos), 2 (bilinear) or 3 (bicubic)',
        value,
      );
    }
    return kernel;
  }
}
