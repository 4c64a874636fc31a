import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { VigilError } from '../../common/errors.js';
import {
  parsePreprocessorConfig,
  type ImagePreprocessorConfig,
} from '../../src/model/preprocess/preprocessorConfig.js';
import {
  preprocessImage,
  preprocessVideoFrame,
  smolVlmTileGrid,
  type PreprocessedImage,
} from '../../src/model/preprocess/imagePreprocessor.js';
import { fullPixelMask } from '../../src/model/preprocess/pixelAttentionMask.js';

const RED = [255, 0, 0] as const;
const BLUE = [0, 0, 255] as const;

/** Raw RGB(A) pixels: left half `left`, right half `right`. */
function halves(width: number, height: number, left: readonly number[], right: readonly number[]): Uint8Array {
  const channels = left.length;
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.set(x < width / 2 ? left : right, (y * width + x) * channels);
    }
  }
  return data;
}

async function png(width: number, height: number, left: readonly number[], right: readonly number[]): Promise<Buffer> {
  const channels = left.length as 3 | 4;
  return sharp(halves(width, height, left, right), { raw: { width, height, channels } }).png().toBuffer();
}

/** The normalised (r, g, b) of pixel (x, y) in image `index` of the batch. */
function pixel(out: PreprocessedImage, index: number, x: number, y: number): number[] {
  const plane = out.height * out.width;
  const base = index * 3 * plane + y * out.width + x;
  return [0, 1, 2].map((c) => out.pixelValues[base + c * plane]!);
}

function assertPixel(actual: number[], expected: number[], what: string): void {
  actual.forEach((v, c) => assert.ok(Math.abs(v - expected[c]!) < 1e-6, `${what}: got ${actual}, want ${expected}`));
}

function assertShape(out: PreprocessedImage, count: number, size: number, rows: number, cols: number): void {
  assert.deepEqual(
    { count: out.count, height: out.height, width: out.width, rows: out.rows, cols: out.cols },
    { count, height: size, width: size, rows, cols },
  );
  assert.equal(out.pixelValues.length, count * 3 * size * size);
}

function assertInUnitRange(out: PreprocessedImage): void {
  let min = Infinity;
  let max = -Infinity;
  for (const v of out.pixelValues) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  assert.ok(min >= -1 && max <= 1, `values must lie in [-1, 1], got [${min}, ${max}]`);
}

async function rejectsWith(promise: Promise<unknown>, code: string, mention: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof VigilError, `expected VigilError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.ok(error.message.includes(mention), `"${error.message}" should mention "${mention}"`);
    return true;
  });
}

const smol = (overrides: Record<string, unknown> = {}): ImagePreprocessorConfig =>
  parsePreprocessorConfig(
    { size: { longest_edge: 1024 }, max_image_size: { longest_edge: 512 }, ...overrides },
    'idefics3',
    'test/preprocessor_config.json',
  );
// Same arithmetic at a quarter of the size, for tests about colour rather than geometry (faster).
const tiny = (overrides: Record<string, unknown> = {}): ImagePreprocessorConfig =>
  smol({ size: { longest_edge: 256 }, max_image_size: { longest_edge: 128 }, ...overrides });
const llava = (): ImagePreprocessorConfig => parsePreprocessorConfig({}, 'llava_onevision', 'llava.json');

let dir: string;
let redBluePath: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-preprocess-'));
  redBluePath = join(dir, 'red-blue.png');
  await writeFile(redBluePath, await png(640, 360, RED, BLUE));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parsePreprocessorConfig', () => {
  test('SmolVLM2 Hub config', () => {
    const cfg = parsePreprocessorConfig(
      {
        do_convert_rgb: true,
        do_image_splitting: true,
        do_normalize: true,
        do_pad: true,
        do_rescale: true,
        do_resize: true,
        image_mean: [0.5, 0.5, 0.5],
        image_std: [0.5, 0.5, 0.5],
        image_processor_type: 'SmolVLMImageProcessor',
        max_image_size: { longest_edge: 512 },
        processor_class: 'SmolVLMProcessor',
        resample: 1,
        rescale_factor: 0.00392156862745098,
        size: { longest_edge: 2048 },
        video_sampling: { fps: 1, max_frames: 64, video_size: { longest_edge: 512 } },
      },
      'idefics3',
      'x.json',
    );
    assert.deepEqual(cfg, {
      family: 'idefics3',
      doResize: true,
      longestEdge: 2048,
      tileSize: 512,
      doImageSplitting: true,
      rescaleFactor: 0.00392156862745098,
      doNormalize: true,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      resample: 'lanczos3',
    });
  });

  test('defaults: SmolVLM 2048/512 lanczos, LLaVA-OV 384x384 bicubic', () => {
    const s = parsePreprocessorConfig({}, 'idefics3', 'x.json');
    assert.equal(s.longestEdge, 2048);
    assert.equal(s.tileSize, 512);
    assert.equal(s.doImageSplitting, true);
    assert.equal(s.rescaleFactor, 1 / 255);
    assert.deepEqual(s.mean, [0.5, 0.5, 0.5]);
    assert.equal(s.resample, 'lanczos3');
    const l = parsePreprocessorConfig({ size: { height: 384, width: 384 }, resample: 3 }, 'llava_onevision', 'x.json');
    assert.deepEqual([l.height, l.width, l.resample, l.doImageSplitting], [384, 384, 'bicubic', false]);
    assert.deepEqual(llava().std, [0.5, 0.5, 0.5]);
  });

  test('PIL resample codes, scalar mean, do_rescale false', () => {
    const kernels = [0, 1, 2, 3].map((r) => parsePreprocessorConfig({ resample: r }, 'idefics3', 'x').resample);
    assert.deepEqual(kernels, ['nearest', 'lanczos3', 'bilinear', 'bicubic']);
    const cfg = parsePreprocessorConfig({ image_mean: 0.25, do_rescale: false }, 'idefics3', 'x');
    assert.deepEqual(cfg.mean, [0.25, 0.25, 0.25]);
    assert.equal(cfg.rescaleFactor, 1);
  });

  test('bad configs name the file and the field', () => {
    const bad: Array<[unknown, string]> = [
      [[], 'must be a JSON object'],
      [{ resample: 4 }, '"resample"'],
      [{ image_std: [0.5, 0, 0.5] }, '"image_std"'],
      [{ image_mean: [0.5, 0.5] }, '"image_mean"'],
      [{ size: { longest_edge: -1 } }, '"size.longest_edge"'],
      [{ max_image_size: { height: 512 } }, '"max_image_size"'],
      [{ do_image_splitting: 'yes' }, '"do_image_splitting"'],
    ];
    for (const [json, mention] of bad) {
      assert.throws(
        () => parsePreprocessorConfig(json, 'idefics3', '/models/smol/preprocessor_config.json'),
        (e: unknown) =>
          e instanceof VigilError &&
          e.code === 'BAD_CONFIG' &&
          e.message.includes('/models/smol/preprocessor_config.json') &&
          e.message.includes(mention),
        JSON.stringify(json),
      );
    }
  });
});

describe('preprocessImage (SmolVLM / Idefics3)', () => {
  test('640x360 red|blue, longest 1024, tile 512: 2x2 tiles + global, values and colours', async () => {
    const out = await preprocessImage(redBluePath, smol());
    // 640x360 -> 1024x576 -> multiples of 512: 1024x1024 -> 2 rows x 2 cols, + global.
    assertShape(out, 5, 512, 2, 2);
    assertInUnitRange(out);
    // Row-major tiles: 0 = top-left (red), 1 = top-right (blue), 2/3 bottom row, 4 = global.
    assertPixel(pixel(out, 0, 100, 100), [1, -1, -1], 'top-left tile is pure red');
    assertPixel(pixel(out, 1, 400, 100), [-1, -1, 1], 'top-right tile is pure blue');
    assertPixel(pixel(out, 2, 100, 400), [1, -1, -1], 'bottom-left tile');
    assertPixel(pixel(out, 4, 50, 256), [1, -1, -1], 'global image left');
    assertPixel(pixel(out, 4, 460, 256), [-1, -1, 1], 'global image right');
    assert.equal(out.pixelValues[0], 1, 'channel plane 0 is red');
  });

  test('1000x500, longest 1024, tile 512: 1 row x 2 cols + global = 3 images', async () => {
    const img = await png(1000, 500, RED, BLUE);
    const out = await preprocessImage(img, smol());
    assertShape(out, 3, 512, 1, 2);
    assert.deepEqual(smolVlmTileGrid(1000, 500, smol()), { rows: 1, cols: 2 });
  });

  test('a small image is upscaled to the longest edge, then tiled', async () => {
    const img = await png(40, 20, RED, BLUE);
    const out = await preprocessImage(img, tiny());
    assertShape(out, 3, 128, 1, 2); // 40x20 -> 256x128 -> 1 row x 2 cols of 128
    assertPixel(pixel(out, 0, 25, 64), [1, -1, -1], 'left tile red');
    assertPixel(pixel(out, 1, 100, 64), [-1, -1, 1], 'right tile blue');
  });

  test('an image that fits one tile is not split and has no extra global copy (HF)', async () => {
    const out = await preprocessImage(redBluePath, smol({ size: { longest_edge: 512 } }));
    assertShape(out, 1, 512, 0, 0);
  });

  test('without splitting: one tile-sized image, stretched like HF (no padding)', async () => {
    const out = await preprocessImage(redBluePath, smol({ do_image_splitting: false }));
    assertShape(out, 1, 512, 0, 0);
    // Stretched to the full square: the red/blue halves reach the top and bottom rows.
    assertPixel(pixel(out, 0, 10, 0), [1, -1, -1], 'top-left');
    assertPixel(pixel(out, 0, 500, 511), [-1, -1, 1], 'bottom-right');
  });

  test('tile grid arithmetic follows HF, including the 4096 cap', () => {
    const cfg = smol({ size: { longest_edge: 2048 } });
    assert.deepEqual(smolVlmTileGrid(640, 360, cfg), { rows: 3, cols: 4 }); // 2048x1152 -> 2048x1536
    assert.deepEqual(smolVlmTileGrid(360, 640, cfg), { rows: 4, cols: 3 });
    assert.deepEqual(smolVlmTileGrid(1000, 500, smol({ size: { longest_edge: 8192 } })), { rows: 4, cols: 8 });
    assert.deepEqual(smolVlmTileGrid(300, 300, smol({ size: { longest_edge: 512 } })), { rows: 0, cols: 0 });
    assert.deepEqual(smolVlmTileGrid(640, 360, smol({ do_image_splitting: false })), { rows: 0, cols: 0 });
  });

  test('RGBA is composited onto white (HF SmolVLM convert_to_rgb)', async () => {
    const img = await png(64, 32, [0, 0, 255, 0], [255, 0, 0, 255]);
    const out = await preprocessImage(img, tiny({ size: { longest_edge: 128 } }));
    assertShape(out, 1, 128, 0, 0);
    assertPixel(pixel(out, 0, 12, 50), [1, 1, 1], 'transparent half is white');
    assertPixel(pixel(out, 0, 115, 50), [1, -1, -1], 'opaque half is red');
  });

  test('raw RGB and RGBA pixel input', async () => {
    const rgb = await preprocessImage({ data: halves(64, 32, RED, BLUE), width: 64, height: 32, channels: 3 }, tiny());
    assertShape(rgb, 3, 128, 1, 2);
    assertPixel(pixel(rgb, 0, 64, 64), [1, -1, -1], 'raw rgb left');
    const rgba = await preprocessImage(
      { data: halves(64, 32, [0, 255, 0, 255], [0, 0, 0, 0]), width: 64, height: 32, channels: 4 },
      tiny({ do_image_splitting: false }),
    );
    assertPixel(pixel(rgba, 0, 12, 64), [-1, 1, -1], 'opaque green');
    assertPixel(pixel(rgba, 0, 115, 64), [1, 1, 1], 'transparent -> white');
  });

  test('grayscale input becomes 3 equal channels', async () => {
    const gray = await sharp({ create: { width: 50, height: 50, channels: 3, background: '#000000' } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    const out = await preprocessImage(gray, tiny({ size: { longest_edge: 128 } }));
    assertPixel(pixel(out, 0, 10, 10), [-1, -1, -1], 'black');
  });
});

describe('preprocessImage (LLaVA-OneVision)', () => {
  test('resized to 384x384, alpha dropped without compositing (PIL convert("RGB"))', async () => {
    const out = await preprocessImage(redBluePath, llava());
    assertShape(out, 1, 384, 0, 0);
    assertInUnitRange(out);
    assertPixel(pixel(out, 0, 20, 0), [1, -1, -1], 'left red');
    const rgba = await png(64, 32, [0, 0, 255, 0], [255, 0, 0, 255]);
    const fromRgba = await preprocessImage(rgba, llava());
    assertPixel(pixel(fromRgba, 0, 20, 200), [-1, -1, 1], 'transparent blue keeps its colour');
  });
});

describe('preprocessVideoFrame', () => {
  test('writes into a reused output buffer exactly what it returns fresh, and refuses a buffer of the wrong size', async () => {
    const size = 32;
    const rgb = Buffer.from(Array.from({ length: size * size * 3 }, (_, i) => (i * 37) % 256));
    const frame = { data: rgb, width: size, height: size, channels: 3 as const };
    const fresh = await preprocessVideoFrame(frame, smol(), size);
    const out = new Float32Array(3 * size * size).fill(42);
    const reused = await preprocessVideoFrame(frame, smol(), size, { out });
    assert.equal(reused.pixelValues, out);
    assert.deepEqual(out, fresh.pixelValues);
    await assert.rejects(preprocessVideoFrame(frame, smol(), size, { out: new Float32Array(5) }), /output buffer has 5 floats/);
  });

  test('640x360 -> 512x288, padded to 512x512 with black (-1) bottom rows', async () => {
    const out = await preprocessVideoFrame(redBluePath, smol(), 512, { fit: 'pad' });
    assertShape(out, 1, 512, 0, 0);
    assertInUnitRange(out);
    assertPixel(pixel(out, 0, 0, 0), [1, -1, -1], 'top-left red');
    assertPixel(pixel(out, 0, 511, 287), [-1, -1, 1], 'last content row, right: blue');
    const plane = 512 * 512;
    for (let c = 0; c < 3; c++) {
      const padded = out.pixelValues.subarray(c * plane + 288 * 512, (c + 1) * plane);
      assert.ok(padded.every((v) => v === -1), `channel ${c}: rows 288..511 are padding (-1)`);
    }
  });

  test('portrait frames pad on the right; the default stretch matches HF (no padding)', async () => {
    const portrait = await png(360, 640, RED, BLUE);
    const padded = await preprocessVideoFrame(portrait, smol(), 512, { fit: 'pad' });
    assertPixel(pixel(padded, 0, 300, 100), [-1, -1, -1], 'right of 288 px is padding');
    assertPixel(pixel(padded, 0, 10, 100), [1, -1, -1], 'content starts at the left');
    const stretched = await preprocessVideoFrame(redBluePath, smol(), 512);
    assertShape(stretched, 1, 512, 0, 0);
    assertPixel(pixel(stretched, 0, 10, 511), [1, -1, -1], 'bottom-left is content, not padding');
  });

  test('small frames are upscaled; never split even with splitting on', async () => {
    const out = await preprocessVideoFrame(await png(64, 64, RED, BLUE), smol({ size: { longest_edge: 2048 } }), 512);
    assertShape(out, 1, 512, 0, 0);
    assertPixel(pixel(out, 0, 500, 500), [-1, -1, 1], 'square frame fills the square');
  });

  test('rejects a bad size', async () => {
    await rejectsWith(preprocessVideoFrame(redBluePath, smol(), 0), 'BAD_INPUT', 'size');
  });
});

describe('input errors', () => {
  test('missing file -> FILE_NOT_FOUND naming the path', async () => {
    const missing = join(dir, 'nope.jpg');
    await rejectsWith(preprocessImage(missing, smol()), 'FILE_NOT_FOUND', missing);
  });

  test('a text file named .jpg -> BAD_INPUT naming the path', async () => {
    const fake = join(dir, 'notes.jpg');
    await writeFile(fake, 'this is not a JPEG\n');
    await rejectsWith(preprocessImage(fake, smol()), 'BAD_INPUT', fake);
    await rejectsWith(preprocessVideoFrame(fake, smol(), 512), 'BAD_INPUT', fake);
  });

  test('empty file, empty buffer, garbage buffer, directory', async () => {
    const empty = join(dir, 'empty.png');
    await writeFile(empty, '');
    await rejectsWith(preprocessImage(empty, smol()), 'BAD_INPUT', empty);
    await rejectsWith(preprocessImage(Buffer.alloc(0), smol()), 'BAD_INPUT', 'empty');
    await rejectsWith(preprocessImage(Buffer.from('garbage'), smol()), 'BAD_INPUT', 'buffer (7 bytes)');
    await rejectsWith(preprocessImage(dir, smol()), 'BAD_INPUT', dir);
  });

  test('raw input: zero size, wrong byte count', async () => {
    await rejectsWith(
      preprocessImage({ data: new Uint8Array(0), width: 0, height: 0, channels: 3 }, smol()),
      'BAD_INPUT',
      '0x0x3',
    );
    await rejectsWith(
      preprocessImage({ data: new Uint8Array(10), width: 4, height: 4, channels: 3 }, smol()),
      'BAD_INPUT',
      'needs 48 bytes',
    );
  });
});

describe('fullPixelMask', () => {
  test('all ones, [N, H, W] elements', () => {
    const mask = fullPixelMask(3, 4, 5);
    assert.equal(mask.length, 60);
    assert.ok(mask.every((v) => v === 1));
    assert.equal(fullPixelMask(0, 512, 512).length, 0);
    assert.throws(() => fullPixelMask(-1, 2, 2), RangeError);
  });
});

describe('preprocessVideoFrame fast path', () => {
  test('a raw frame already at the target size skips sharp and gives the same values as the sharp path', async () => {
    const size = 64;
    const data = new Uint8Array(size * size * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
    const config = parsePreprocessorConfig({ size: { longest_edge: size }, max_image_size: { longest_edge: size } }, 'idefics3', 'test');
    const fast = await preprocessVideoFrame({ data, width: size, height: size, channels: 3 }, config, size);
    const png = await sharp(Buffer.from(data), { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    const viaSharp = await preprocessVideoFrame(png, config, size);
    assert.deepEqual(fast.pixelValues, viaSharp.pixelValues);
    assert.equal(fast.count, 1);
  });
});
