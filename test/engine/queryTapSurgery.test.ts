/**
 * Real exports do not output their q projections. A probe-needle build without query taps stands in
 * for one: Vigil must expose the taps by graph surgery on a cached copy and still retrieve the
 * needle; with surgery off it falls back to the question's keys and says so in the answer.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StreamSession } from '../../src/engine/streamSession.js';
import { buildProbeFolder } from '../../src/model/probe/probeModelFolder.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame } from '../helpers/needleFrames.js';

describe('query taps by graph surgery', () => {
  let scratch: string;
  let modelDir: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-surgery-'));
    const spec = { ...findProbeSpec('probe-needle')!, name: 'probe-needle-no-taps', queryTaps: false };
    modelDir = buildProbeFolder(spec, { outDir: path.join(scratch, 'model') }).dir;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  async function askNeedle(model: VisionLanguageModel, name: string) {
    const session = await StreamSession.open(model, { dir: path.join(scratch, name), sinkFrames: 1, windowFrames: 3 });
    try {
      const haystack = await preprocessFrame(model, await haystackFrame());
      const needle = await preprocessFrame(model, await needleFrame({ background: 'magenta', square: 'orange' }));
      for (let i = 0; i < 20; i++) await session.addFrame(i === 4 ? needle : haystack, i);
      return await session.ask({ question: 'What color was the square on the magenta screen?', retrieve: 4, maxNewTokens: 4 });
    } finally {
      await session.dispose();
    }
  }

  it('the stock-like graph has no taps; surgery exposes them on a cached copy and retrieval works', async () => {
    const plain = await VisionLanguageModel.load(modelDir, { queryTaps: 'off' });
    try {
      assert.equal(plain.decoder.info.queryTapNames, undefined);
      const answer = await askNeedle(plain, 'keys');
      assert.equal(answer.queryKind, 'keys');
    } finally {
      await plain.dispose();
    }

    const model = await VisionLanguageModel.load(modelDir);
    try {
      assert.equal(model.decoder.info.queryTapNames?.length, model.decoder.info.numLayers);
      assert.match(model.decoder.graph.file, /query-taps/);
      assert.ok(fs.readFileSync(path.join(modelDir, 'onnx', 'decoder_model_merged.onnx')).length < fs.statSync(model.decoder.graph.file).size, 'the original is untouched');
      const answer = await askNeedle(model, 'taps');
      assert.equal(answer.queryKind, 'taps');
      assert.equal(answer.text.trim(), 'orange');
      assert.ok(answer.evidence.some((e) => e.tStart === 4 && e.meanScore > 0));
    } finally {
      await model.dispose();
    }
  });

  it('works on a decoder whose weights live in .onnx_data (hard-linked or copied next to the copy)', async () => {
    const spec = { ...findProbeSpec('probe-random-tiny')!, name: 'probe-tiny-external-no-taps', externalData: true, queryTaps: false };
    const dir = buildProbeFolder(spec, { outDir: path.join(scratch, 'external') }).dir;
    assert.ok(fs.existsSync(path.join(dir, 'onnx', 'decoder_model_merged.onnx_data')));
    const model = await VisionLanguageModel.load(dir);
    try {
      const copy = model.decoder.graph.file;
      const data = path.join(path.dirname(copy), 'decoder_model_merged.onnx_data');
      assert.equal(fs.statSync(data).size, fs.statSync(path.join(dir, 'onnx', 'decoder_model_merged.onnx_data')).size);
      const out = await model.decoder.step({ inputsEmbeds: await model.embed([5, 6, 7]), past: model.decoder.emptyCache(), queries: true });
      assert.equal(out.queries!.length, 2);
      assert.equal(out.queries![0]!.length, 3 * 4 * 16);
    } finally {
      await model.dispose();
    }
  });
});
