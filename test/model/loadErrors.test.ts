/**
 * Loading bad model folders gives one clear VigilError naming the file and the problem, never a
 * raw onnxruntime or JSON stack. Each case copies the tiny probe model and breaks one thing.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { after, before, describe, it } from 'node:test';
import { isVigilError, type VigilErrorCode } from '../../common/errors.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';

let scratch: string;
let source: string;

function brokenCopy(name: string, breakIt: (dir: string) => void): string {
  const dir = path.join(scratch, name);
  fs.cpSync(source, dir, { recursive: true });
  breakIt(dir);
  return dir;
}

async function assertLoadFails(dir: string, code: VigilErrorCode, ...fragments: string[]): Promise<void> {
  await assert.rejects(VisionLanguageModel.load(dir), (error: unknown) => {
    assert.ok(isVigilError(error), `expected a VigilError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `message lacks '${fragment}': ${error.message}`);
    return true;
  });
}

function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(config);
  fs.writeFileSync(file, JSON.stringify(config));
}

describe('model folder errors', () => {
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-load-errors-'));
    source = probeModelDir('probe-random-tiny');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('a missing folder', async () => {
    await assertLoadFails(path.join(scratch, 'nope'), 'FILE_NOT_FOUND', 'nope');
  });

  it('a folder that is not a model', async () => {
    const dir = path.join(scratch, 'empty');
    fs.mkdirSync(dir);
    await assertLoadFails(dir, 'NOT_A_MODEL', 'config.json');
  });

  it('a file instead of a folder', async () => {
    const file = path.join(scratch, 'file.txt');
    fs.writeFileSync(file, 'hello');
    await assertLoadFails(file, 'NOT_A_MODEL', 'file.txt');
  });

  it('config.json that is not JSON', async () => {
    const dir = brokenCopy('bad-json', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{"model_type": '));
    await assertLoadFails(dir, 'BAD_CONFIG', 'config.json');
  });

  it('an unsupported model_type names the type and the reason', async () => {
    const dir = brokenCopy('qwen', (d) => editConfig(d, (c) => (c.model_type = 'qwen2_vl')));
    await assertLoadFails(dir, 'UNSUPPORTED_MODEL', 'qwen2_vl', 'M-RoPE');
    const other = brokenCopy('whisper', (d) => editConfig(d, (c) => (c.model_type = 'whisper')));
    await assertLoadFails(other, 'UNSUPPORTED_MODEL', 'whisper', 'supported:');
  });

  it('a missing tokenizer.json', async () => {
    const dir = brokenCopy('no-tokenizer', (d) => fs.rmSync(path.join(d, 'tokenizer.json')));
    await assertLoadFails(dir, 'NOT_A_MODEL', 'tokenizer.json');
  });

  it('a missing graph lists what is there', async () => {
    const dir = brokenCopy('no-decoder', (d) => fs.rmSync(path.join(d, 'onnx', 'decoder_model_merged.onnx')));
    await assertLoadFails(dir, 'FILE_NOT_FOUND', 'decoder_model_merged.onnx');
    // A dtype the folder lacks must name what is there (fp32 files; _quantized / _q4 only once asked for).
    await assert.rejects(VisionLanguageModel.load(source, { dtype: 'bnb4' }), /(decoder_model_merged|vision_encoder)_bnb4.onnx not found \(dtype bnb4\); available: .*(decoder_model_merged|vision_encoder)\.onnx/);
  });

  it('a corrupt (truncated) ONNX file', async () => {
    const dir = brokenCopy('truncated', (d) => {
      const file = path.join(d, 'onnx', 'decoder_model_merged.onnx');
      fs.truncateSync(file, Math.floor(fs.statSync(file).size / 3));
    });
    await assertLoadFails(dir, 'CORRUPT_MODEL', 'decoder_model_merged.onnx');
  });

  it('a garbage ONNX file', async () => {
    const dir = brokenCopy('garbage', (d) => fs.writeFileSync(path.join(d, 'onnx', 'vision_encoder.onnx'), 'not a model at all'));
    await assertLoadFails(dir, 'CORRUPT_MODEL', 'vision_encoder.onnx');
  });

  it('config geometry that disagrees with the graph names both values', async () => {
    const dir = brokenCopy('geometry', (d) =>
      editConfig(d, (c) => ((c.text_config as Record<string, unknown>).num_key_value_heads = 4)),
    );
    await assertLoadFails(dir, 'SHAPE_MISMATCH', 'num_key_value_heads', '2', '4');
  });
});

describe('feed errors', () => {
  let model: VisionLanguageModel;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
  });
  after(async () => model?.dispose());

  it('a wrong image size names the tensor and both shapes', async () => {
    const wrong = { pixelValues: new Float32Array(3 * 32 * 32), count: 1, height: 32, width: 32, rows: 0, cols: 0 };
    await assert.rejects(model.encodeImages(wrong), (error: unknown) => {
      assert.ok(isVigilError(error));
      assert.equal(error.code, 'SHAPE_MISMATCH');
      assert.match(error.message, /pixel_values/);
      assert.match(error.message, /\[batch_size, num_images, 3, 64, 64\]/);
      assert.match(error.message, /\[1, 1, 3, 32, 32\]/);
      return true;
    });
  });

  it('a wrong dtype names the tensor and both types', async () => {
    const embeds = new ort.Tensor('float16', new Uint16Array(64), [1, 1, 64]);
    await assert.rejects(model.decoder.step({ inputsEmbeds: embeds, past: model.decoder.emptyCache() }), (error: unknown) => {
      assert.ok(isVigilError(error));
      assert.equal(error.code, 'DTYPE_MISMATCH');
      assert.match(error.message, /inputs_embeds.*float32.*float16/);
      return true;
    });
  });

  it('a KV context with the wrong layer count or length', async () => {
    const embeds = await model.embed([5]);
    const short = model.decoder.emptyCache();
    await assert.rejects(
      model.decoder.step({ inputsEmbeds: embeds, past: { ...short, layers: short.layers.slice(1), length: 0 } as typeof short }),
      /KV context has 1 layers, the decoder has 2/,
    );
    await assert.rejects(model.decoder.step({ inputsEmbeds: embeds, past: short, attentionMask: [1, 1] }), /attention mask has length 2/);
  });

  it('image features and image tokens must match in number', async () => {
    const ids = [5, model.config.imageTokenId, 6];
    await assert.rejects(model.embedWithImages(ids, undefined), /1 image tokens but the vision encoder returned 0/);
  });
});
