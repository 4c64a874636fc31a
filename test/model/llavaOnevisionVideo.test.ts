/**
 * LLaVA-OneVision stream frames as HF transformers' video path (get_video_features / apply_pooling)
 * and ReKV feed them: 27x27 patch features pooled bilinearly to 14x14 = 196 tokens per frame, the
 * per-image image_newline row (730-row exports) dropped; images keep the 729/730 rows of HF's image
 * path. No probe model has LLaVA-OV's layout, so the fixture is probe-random-tiny's decoder and
 * tokenizer under a LLaVA-OV config, with a SigLIP-style patch-embedding vision encoder
 * (384 px / 14 = 27x27 patches, Conv 14x14 stride 14) written by Vigil's ONNX writer.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { isVigilError } from '../../common/errors.js';
import { frameTokens } from '../../src/engine/manager/streamBudget.js';
import { StreamEncoder } from '../../src/engine/streamEncoder.js';
import { answerAboutImage } from '../../src/model/imageQuestion.js';
import { loadModelConfig } from '../../src/model/modelConfig.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { buildProbeModel } from '../../src/model/probe/probeModelFolder.js';
import { encodeStreamFrames, poolLlavaOnevisionFrames, streamTokensPerFrame } from '../../src/model/videoFrames.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { runVigil } from '../helpers/runVigil.js';
import { seededData } from '../helpers/seededData.js';

const SIDE = 27;
const PATCH = 14;
const PIXELS = 384;
const HIDDEN = 64; // probe-random-tiny's text hidden size
const IMAGE_TOKEN = 49190; // the probe tokenizer's <image>

const LLAVA_OV_TEMPLATE = [
  '{% for message in messages %}<|im_start|>{{ message.role }}\n',
  '{% if message.content is string %}{{ message.content }}{% else %}',
  "{% for item in message.content %}{% if item.type == 'image' %}<image>\n{% endif %}{% endfor %}",
  "{% for item in message.content %}{% if item.type == 'text' %}{{ item.text }}{% endif %}{% endfor %}",
  '{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
].join('');

let root: string;

/** Patch-embedding vision encoder: [N,3,384,384] -> Conv 14/14 -> [N, 729 (+1 newline), 64]. */
function writeVisionEncoder(file: string, options: { newline: boolean; staticTokens: boolean }): void {
  const writer = new OnnxModelWriter({ path: file, graphName: 'vision_encoder', opset: 17 });
  const g = writer.graph;
  const pixels = g.input('pixel_values', 'float32', ['num_images', 3, PIXELS, PIXELS]);
  const weight = g.initializer('patch_embed.weight', 'float32', [HIDDEN, 3, PATCH, PATCH], seededData(HIDDEN * 3 * PATCH * PATCH, 7, 0.05));
  const conv = g.op('Conv', [pixels, weight], { kernel_shape: [PATCH, PATCH], strides: [PATCH, PATCH] });
  const rows = g.op('Transpose', [g.op('Reshape', [conv, g.int64s([0, HIDDEN, -1])])], { perm: [0, 2, 1] });
  let features = rows;
  if (options.newline) {
    const newline = g.initializer('image_newline', 'float32', [HIDDEN], seededData(HIDDEN, 9, 1, 3));
    const zeroRow = g.op('Mul', [g.op('ReduceMean', [rows], { axes: [1], keepdims: 1 }), g.scalar('float32', 0)]);
    features = g.op('Concat', [rows, g.op('Add', [zeroRow, newline])], { axis: 1 });
  }
  const tokens = SIDE * SIDE + (options.newline ? 1 : 0);
  if (!options.staticTokens) {
    // onnxruntime reports inferred dims as static, so hide the count behind a data-dependent op:
    // gather every row through NonZero over a mask of ones (output [N, ?, hidden]).
    const all = g.op('Squeeze', [g.op('NonZero', [g.constant('float32', [tokens], new Array<number>(tokens).fill(1))]), g.int64s([0])]);
    features = g.op('Gather', [features, all], { axis: 1 });
  }
  g.output(features, 'image_features', 'float32', ['num_images', options.staticTokens ? tokens : 'num_tokens', HIDDEN]);
  writer.save();
}

/** A LLaVA-OV folder: probe-random-tiny's files, a LLaVA-OV config and processor files, and the vision encoder above. */
function llavaFolder(name: string, options: { newline: boolean; staticTokens: boolean; visionConfig: boolean }): string {
  const probe = buildProbeModel('probe-random-tiny').dir;
  const dir = path.join(root, name);
  fs.cpSync(probe, dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const text = { ...(config.text_config as Record<string, unknown>), model_type: 'qwen2' };
  const llava: Record<string, unknown> = {
    architectures: ['LlavaOnevisionForConditionalGeneration'],
    model_type: 'llava_onevision',
    image_token_index: IMAGE_TOKEN,
    vision_feature_select_strategy: 'full',
    text_config: text,
    'transformers.js_config': config['transformers.js_config'],
  };
  if (options.visionConfig) llava.vision_config = { model_type: 'siglip_vision_model', image_size: PIXELS, patch_size: PATCH, hidden_size: HIDDEN };
  const write = (file: string, value: unknown) => fs.writeFileSync(path.join(dir, file), JSON.stringify(value));
  write('config.json', llava);
  write('processor_config.json', { processor_class: 'LlavaOnevisionProcessor', num_image_tokens: SIDE * SIDE, vision_feature_select_strategy: 'full' });
  write('preprocessor_config.json', { size: { height: PIXELS, width: PIXELS }, resample: 3, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] });
  write('chat_template.json', { chat_template: LLAVA_OV_TEMPLATE });
  writeVisionEncoder(path.join(dir, 'onnx', 'vision_encoder.onnx'), options);
  return dir;
}

function frame(seed: number): PreprocessedImage {
  return { pixelValues: seededData(3 * PIXELS * PIXELS, seed), count: 1, height: PIXELS, width: PIXELS, rows: 0, cols: 0 };
}

/** torch bilinear (align_corners=False) at one output cell, written out from its formula for this test. */
function torchBilinearCell(grid: Float32Array, side: number, out: number, r: number, c: number, k: number): number {
  const coord = (o: number) => Math.max((o + 0.5) * (side / out) - 0.5, 0);
  const y = coord(r);
  const x = coord(c);
  const y0 = Math.floor(y);
  const x0 = Math.floor(x);
  const y1 = Math.min(y0 + 1, side - 1);
  const x1 = Math.min(x0 + 1, side - 1);
  const at = (yy: number, xx: number) => grid[(yy * side + xx) * HIDDEN + k]!;
  const top = at(y0, x0) * (1 - (x - x0)) + at(y0, x1) * (x - x0);
  const bottom = at(y1, x0) * (1 - (x - x0)) + at(y1, x1) * (x - x0);
  return top * (1 - (y - y0)) + bottom * (y - y0);
}

describe('LLaVA-OneVision video frames', () => {
  let plain: VisionLanguageModel;
  let withNewline: VisionLanguageModel;
  let dynamic: VisionLanguageModel;

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-llava-ov-'));
    plain = await VisionLanguageModel.load(llavaFolder('plain', { newline: false, staticTokens: true, visionConfig: true }), { queryTaps: 'off' });
    withNewline = await VisionLanguageModel.load(llavaFolder('newline', { newline: true, staticTokens: true, visionConfig: true }), { queryTaps: 'off' });
    dynamic = await VisionLanguageModel.load(llavaFolder('dynamic', { newline: true, staticTokens: false, visionConfig: false }), { queryTaps: 'off' });
  });
  after(async () => {
    await Promise.all([plain?.dispose(), withNewline?.dispose(), dynamic?.dispose()]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('reads num_image_tokens and the patch grid from the config', () => {
    const config = loadModelConfig(path.join(root, 'dynamic'));
    assert.equal(config.numImageTokens, 729);
    assert.equal(config.patchGridSide, 27); // sqrt(num_image_tokens): no vision_config here
    assert.equal(loadModelConfig(path.join(root, 'plain')).patchGridSide, 27); // 384 / 14
  });

  it('tokens per image: the static dim (729, 730 with image_newline), else num_image_tokens; 196 per stream frame', () => {
    assert.equal(plain.tokensPerImage, 729);
    assert.equal(withNewline.tokensPerImage, 730);
    assert.equal(dynamic.tokensPerImage, 729); // symbolic token dim: processor_config's num_image_tokens
    for (const model of [plain, withNewline, dynamic]) assert.equal(streamTokensPerFrame(model), 196);
  });

  it('a frame is pooled 27x27 -> 14x14 as torch bilinear (align_corners=False) does', async () => {
    const image = frame(1);
    const raw = await plain.encodeImages(image);
    assert.deepEqual(raw.dims, [729, HIDDEN]);
    const pooled = await encodeStreamFrames(plain, image);
    assert.deepEqual(pooled.dims, [196, HIDDEN]);
    const grid = raw.data as Float32Array;
    const got = pooled.data as Float32Array;
    for (const [r, c] of [[0, 0], [0, 13], [7, 3], [13, 13], [5, 12]] as const) {
      for (const k of [0, 17, HIDDEN - 1]) {
        const want = torchBilinearCell(grid, SIDE, 14, r, c, k);
        assert.ok(Math.abs(got[(r * 14 + c) * HIDDEN + k]! - want) < 1e-5, `cell ${r},${c} k=${k}: ${got[(r * 14 + c) * HIDDEN + k]} vs ${want}`);
      }
    }
  });

  it('drops the image_newline row of 730-row exports before pooling (HF adds it once per video, ReKV never)', async () => {
    const image = frame(2);
    const raw = await withNewline.encodeImages(image);
    assert.deepEqual(raw.dims, [730, HIDDEN]);
    const newlineRow = (raw.data as Float32Array).subarray(729 * HIDDEN, 730 * HIDDEN);
    assert.deepEqual(newlineRow, seededData(HIDDEN, 9, 1, 3));
    const fromNewline = await encodeStreamFrames(withNewline, image);
    const fromPlain = await encodeStreamFrames(plain, image);
    assert.deepEqual(fromNewline.dims, [196, HIDDEN]);
    assert.deepEqual(fromNewline.data, fromPlain.data);
  });

  it('pools each frame of a batch on its own', async () => {
    const a = frame(3);
    const b = frame(4);
    const both: PreprocessedImage = { ...a, count: 2, pixelValues: new Float32Array([...a.pixelValues, ...b.pixelValues]) };
    const pooled = await encodeStreamFrames(withNewline, both);
    assert.deepEqual(pooled.dims, [392, HIDDEN]);
    const data = pooled.data as Float32Array;
    assert.deepEqual(data.subarray(0, 196 * HIDDEN), (await encodeStreamFrames(withNewline, a)).data);
    assert.deepEqual(data.subarray(196 * HIDDEN), (await encodeStreamFrames(withNewline, b)).data);
  });

  it('a streamed frame takes 196 tokens: prompt, encoded chunk and disk budget', async () => {
    for (const model of [plain, withNewline]) {
      const encoder = await StreamEncoder.create(model);
      const ids = encoder.frameTokenIds(5);
      assert.equal(ids.length, 196);
      assert.ok(ids.every((id) => id === IMAGE_TOKEN));
      const window = encoder.newWindow({ sinkFrames: 1, windowFrames: 4 });
      const encoded = await encoder.encodeFrame(frame(5), 5, window);
      assert.equal(encoded.chunk.tokenCount, 196);
      assert.deepEqual(encoded.chunk.keys.map((k) => k.length), [2 * 196 * 16, 2 * 196 * 16]); // per layer: kv heads x tokens x head dim
      assert.equal(frameTokens(model), 196);
    }
  });

  it('vigil models inspect reports 729 tokens per image and 196 per stream frame', async () => {
    const run = await runVigil(['models', 'inspect', path.join(root, 'plain'), '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { family: string; tokensPerImage: number; tokensPerFrame: number };
    assert.deepEqual([info.family, info.tokensPerImage, info.tokensPerFrame], ['llava_onevision', 729, 196]);
  });

  it('an image question keeps HF image path: 729 (730) image tokens, rendered by chat_template.json', async () => {
    const pixels = new Uint8Array(64 * 48 * 3).fill(128);
    const image = { data: pixels, width: 64, height: 48, channels: 3 as const };
    const answer = await answerAboutImage(plain, { image, question: 'What color?', maxNewTokens: 1 });
    assert.equal(answer.imageTokens, 729);
    const newline = await answerAboutImage(withNewline, { image, question: 'What color?', maxNewTokens: 1 });
    assert.equal(newline.imageTokens, 730);
    const prompt = plain.tokenizer.applyChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Q' }] }]);
    assert.equal(prompt, '<|im_start|>user\n<image>\nQ<|im_end|>\n<|im_start|>assistant\n');
  });
});

describe('poolLlavaOnevisionFrames', () => {
  it('float16 features are pooled in float32 and returned as float16', () => {
    const grid = seededData(729 * 8, 31, 2);
    const half = float32ToFloat16(grid);
    const asHalf = poolLlavaOnevisionFrames(new ort.Tensor('float16', half, [729, 8]), 1, 27);
    const asFloat = poolLlavaOnevisionFrames(new ort.Tensor('float32', float16ToFloat32(half), [729, 8]), 1, 27);
    assert.equal(asHalf.type, 'float16');
    assert.deepEqual(asHalf.dims, [196, 8]);
    assert.deepEqual(asHalf.data, float32ToFloat16(asFloat.data as Float32Array));
  });

  it('rejects a row count that is not the grid (with or without a newline row)', () => {
    assert.throws(
      () => poolLlavaOnevisionFrames(new ort.Tensor('float32', new Float32Array(700 * 4), [700, 4]), 1, 27),
      (error: unknown) => isVigilError(error) && error.code === 'SHAPE_MISMATCH' && /729/.test(error.message),
    );
  });
});
