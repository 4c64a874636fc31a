/**
 * Exactness of streaming encode (design.md section 3): with a window that holds the whole clip,
 * encoding frame by frame (each frame over [prefix | earlier frames], keys stored pre-RoPE and
 * re-rotated at assembly) and then asking the question gives the logits of one full prefill of the
 * same token sequence. A small window (frames evicted, not retrieved) must not match: the control.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../../kernels/sampling.js';
import { RamStream } from '../helpers/ramStream.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { maxAbsDiff } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

function randomFrame(size: number, seed: number): PreprocessedImage {
  const random = mulberry32(seed);
  const pixelValues = new Float32Array(3 * size * size);
  for (let i = 0; i < pixelValues.length; i++) pixelValues[i] = random() * 2 - 1;
  return { pixelValues, count: 1, height: size, width: size, rows: 0, cols: 0 };
}

function randomFeatures(rows: number, hidden: number, seed: number): ort.Tensor {
  const random = mulberry32(seed);
  return new ort.Tensor('float32', Float32Array.from({ length: rows * hidden }, () => (random() * 2 - 1) * 0.1), [rows, hidden]);
}

function concatEmbeds(parts: ort.Tensor[]): ort.Tensor {
  const hidden = parts[0]!.dims[2]!;
  const rows = parts.reduce((n, p) => n + p.dims[1]!, 0);
  const data = new Float32Array(rows * hidden);
  let offset = 0;
  for (const p of parts) {
    data.set(p.data as Float32Array, offset);
    offset += (p.data as Float32Array).length;
  }
  return new ort.Tensor('float32', data, [1, rows, hidden]);
}

const CASES = [
  { name: 'probe-random-tiny', frames: 6, useVision: true },
  { name: 'probe-random-smolvlm2-256m', frames: 4, useVision: false },
];

for (const c of CASES) {
  describe(`streaming encode exactness, ${c.name}`, () => {
    let model: VisionLanguageModel;
    before(async () => {
      model = await VisionLanguageModel.load(probeModelDir(c.name));
    });
    after(async () => model?.dispose());

    async function streamAndAsk(windowFrames: number) {
      const encoder = await RamStream.create(model, { sinkFrames: 1, windowFrames });
      const size = model.imageConfig.tileSize ?? 64;
      const frameEmbeds: ort.Tensor[] = [];
      for (let i = 0; i < c.frames; i++) {
        const t = 3 * i + 0.5;
        const features = c.useVision
          ? await model.encodeImages(randomFrame(size, 100 + i))
          : randomFeatures(model.tokensPerImage, model.decoder.info.hiddenSize, 100 + i);
        await encoder.encodeFeatures(features, t);
        frameEmbeds.push(await model.embedWithImages(encoder.frameTokenIds(t), features));
      }
      const questionIds = model.tokenizer.encode(encoder.format.question('What color was the square on the red screen?'));
      const questionEmbeds = await model.embed(questionIds);
      const context = encoder.assembleContext(encoder.window.contextChunks);
      const streamed = await model.decoder.step({ inputsEmbeds: questionEmbeds, past: encoder.toCache(context) });

      const prefixEmbeds = await model.embed(model.tokenizer.encode(encoder.format.prefix));
      const all = concatEmbeds([prefixEmbeds, ...frameEmbeds, questionEmbeds]);
      const full = await model.decoder.step({ inputsEmbeds: all, past: model.decoder.emptyCache() });
      const vocab = model.decoder.info.vocabSize;
      const offset = (all.dims[1]! - questionIds.length) * vocab;
      return { diff: maxAbsDiff(streamed.logits, full.logits, offset, questionIds.length * vocab), encoder };
    }

    it('window holds every frame: question logits equal one full prefill within 1e-4', async (t) => {
      const { diff, encoder } = await streamAndAsk(100);
      t.diagnostic(`max |streamed - full| = ${diff.toExponential(2)}`);
      assert.equal(encoder.window.contextChunks.length, c.frames);
      assert.ok(diff <= 1e-4, `diff ${diff}`);
    });

    it('control: with frames evicted (window 1) the logits differ', async (t) => {
      const { diff, encoder } = await streamAndAsk(1);
      t.diagnostic(`max |window-only - full| = ${diff.toExponential(2)}`);
      assert.equal(encoder.window.contextChunks.length, 2, 'one sink frame + one window frame');
      assert.ok(diff > 1e-3, `diff ${diff}`);
    });
  });
}
