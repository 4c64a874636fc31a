/**
 * probe-needle-256m (docs/needle-model.md): the needle circuit in layers 0-1 of a model of
 * SmolVLM2-256M geometry (30 layers, 9/3 heads of 64 dims, 64 image tokens per 512-px frame), layers
 * 2-29 random with scaled-down outputs. Real onnxruntime sessions over real frames (sharp, video
 * preprocessing, the vision encoder, StreamEncoder / StreamSession); a handful of frames keeps it
 * short on 2 cores (the 30-layer prefill of a 77-token frame is the cost).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { readGraphStructureFromFile } from '../../src/model/onnx/onnxStructure.js';
import { queryTapName } from '../../src/model/probe/decoderGraph.js';
import { NEEDLE_CIRCUIT_LAYERS } from '../../src/model/probe/needleWeights.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { RamStream } from '../helpers/ramStream.js';

const NAME = 'probe-needle-256m';
const FRAMES = 8;
const NEEDLE_AT = 3;
const LAYERS = 30;
/** Measured 20.8 (random layers' output scale 0.5); 30.00 with them silenced. The floor leaves room. */
const MIN_MARGIN = 15;
const QUESTION = 'What color was the square on the red screen?';

interface FirstToken {
  token: string;
  logit: number;
  margin: number;
}

describe(NAME, () => {
  let model: VisionLanguageModel;
  let dir: string;
  let scratch: string;
  let haystack: PreprocessedImage;
  let needle: PreprocessedImage;

  before(async () => {
    dir = probeModelDir(NAME);
    model = await VisionLanguageModel.load(dir);
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-needle256m-'));
    haystack = await preprocessFrame(model, await haystackFrame());
    needle = await preprocessFrame(model, await needleFrame({ background: 'red', square: 'green' }));
  });
  after(async () => {
    await model?.dispose();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('has SmolVLM2-256M geometry and the ONNX VLM I/O contract', async () => {
    const info = model.decoder.info;
    assert.deepEqual(
      { layers: info.numLayers, heads: info.numHeads, kvHeads: info.numKvHeads, headDim: info.headDim, hidden: info.hiddenSize, vocab: info.vocabSize },
      { layers: LAYERS, heads: 9, kvHeads: 3, headDim: 64, hidden: 576, vocab: 49280 },
    );
    assert.equal(model.tokensPerImage, 64);
    const spec = findProbeSpec(NAME)!;
    assert.deepEqual(spec.text, { ...findProbeSpec('probe-random-smolvlm2-256m')!.text, rotaryDim: 48 }, 'the random 256m probe geometry, but partial rotary');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { text_config: { partial_rotary_factor: number } };
    assert.equal(config.text_config.partial_rotary_factor, 0.75);

    // Decoder I/O (docs/onnx-vlm-contract.md section 2), and every weight file is beside its graph.
    const decoder = model.decoder.graph;
    const layers = Array.from({ length: LAYERS }, (_, i) => i);
    assert.deepEqual(
      [...decoder.inputNames].sort(),
      ['attention_mask', 'inputs_embeds', 'position_ids', ...layers.flatMap((i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`])].sort(),
    );
    // The file's own outputs, then the kv taps the query-tap surgery's copy adds (each layer's new key/value rows).
    const kvTaps = model.decoder.info.kvTaps!.layers.flatMap((l) => [l.key, l.value]);
    const fileOutputs = readGraphStructureFromFile(path.join(dir, 'onnx', 'decoder_model_merged.onnx')).outputs;
    assert.deepEqual(fileOutputs, ['logits', ...layers.flatMap((i) => [`present.${i}.key`, `present.${i}.value`]), ...layers.map(queryTapName)]);
    // The loaded copy's attention is split (src/model/onnx/splitAttention.ts): no present outputs.
    assert.deepEqual(decoder.outputNames, ['logits', ...layers.map(queryTapName), ...kvTaps]);
    assert.deepEqual(decoder.input('past_key_values.29.value').shape, ['batch_size', 3, 'past_sequence_length', 64]);
    assert.equal(decoder.input('inputs_embeds').type, 'float32');
    assert.deepEqual(model.vision.input('pixel_values').shape, ['batch_size', 'num_images', 3, 512, 512]);
    assert.ok(model.vision.hasInput('pixel_attention_mask'));
    assert.deepEqual(model.vision.output('image_features').shape, ['num_real_images', 64, 576]);
    for (const file of ['decoder_model_merged.onnx_data', 'embed_tokens.onnx_data']) assert.ok(fs.existsSync(path.join(dir, 'onnx', file)), file);

    // One real frame: 64 feature rows, a 77-token chunk whose KV fills all 30 layers; the circuit's
    // layers are hand-set (frame KV at layer 0 is exactly 0), the others random (non-zero).
    const features = await model.encodeImages(needle);
    assert.deepEqual(features.dims, [64, 576]);
    const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames: 4 });
    const { chunk } = await stream.encodeFrame(needle, 0);
    assert.equal(chunk.tokenCount, 77);
    assert.equal(chunk.keys.length, LAYERS);
    assert.equal(chunk.keys[0]!.length, 3 * 77 * 64);
    const absMax = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assert.equal(absMax(chunk.keys[0]!), 0);
    assert.equal(absMax(chunk.values[0]!), 0);
    for (let layer = NEEDLE_CIRCUIT_LAYERS; layer < LAYERS; layer++) assert.ok(absMax(chunk.keys[layer]!) > 0.1, `layer ${layer} keys are random`);
    // The tokens' random energy makes a frame's tokens distinct in the random layers (without it
    // every plain and gray-image token would have the same key): tokens 0 and 1 of KV head 0.
    const key = (layer: number, t: number) => chunk.keys[layer]!.subarray(t * 64, (t + 1) * 64);
    const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    assert.ok(diff(key(2, 0), key(2, 1)) > 0.1 && diff(key(29, 20), key(29, 40)) > 0.1, 'tokens differ in the random layers');
  });

  it('rekv brings the evicted needle frame back and answers its square; window-only answers unknown', async (t) => {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'session'), sinkFrames: 1, windowFrames: 2, fsync: 'none' });
    try {
      const started = performance.now();
      for (let i = 0; i < FRAMES; i++) await session.addFrame(i === NEEDLE_AT ? needle : haystack, i, 1_700_000_000_000 + i * 1000);
      await session.flush();
      const ingestMs = performance.now() - started;
      assert.ok(!session.memory.window.contextChunks.some((c) => c.chunkId === NEEDLE_AT), 'the needle frame left the window');

      const rekv = await session.ask({ question: QUESTION, mode: 'rekv', retrieve: 2, maxNewTokens: 4 });
      assert.equal(rekv.text, ' green');
      assert.equal(rekv.stopReason, 'eos');
      assert.ok(rekv.layerChunkIds[1]!.includes(NEEDLE_AT), `layer 1 retrieved ${JSON.stringify(rekv.layerChunkIds[1])}`);

      const window = await session.ask({ question: QUESTION, mode: 'window', maxNewTokens: 4 });
      assert.equal(window.text, ' unknown', 'without the needle frame in context the answer must not be its square');
      const none = await session.ask({ question: QUESTION, mode: 'rekv', retrieve: 0, maxNewTokens: 4 });
      assert.equal(none.text, ' unknown');
      t.diagnostic(`${FRAMES} frames ingested in ${(ingestMs / 1000).toFixed(1)} s; rekv ttft ${rekv.ttftMs.toFixed(0)} ms`);
    } finally {
      await session.dispose();
    }
  });

  it(`answer-logit margin over the runner-up is above ${MIN_MARGIN}, with and without the needle's KV`, async (t) => {
    const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames: 2 });
    const chunks: FrameChunk[] = [];
    for (let i = 0; i < FRAMES; i++) chunks.push((await stream.encodeFrame(i === NEEDLE_AT ? needle : haystack, i)).chunk);
    const window = stream.window.contextChunks;
    const firstToken = async (context: readonly FrameChunk[], question: string): Promise<FirstToken> => {
      const ids = model.tokenizer.encode(stream.format.question(question));
      const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: stream.toCache(stream.assembleContext(context)), logits: 'last' });
      const logits = out.logits;
      let top = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[top]!) top = v;
      let other = -Infinity;
      for (let v = 0; v < logits.length; v++) if (v !== top && logits[v]! > other) other = logits[v]!;
      return { token: model.tokenizer.decode([top]), logit: logits[top]!, margin: logits[top]! - other };
    };
    const withNeedle = await firstToken([...window, chunks[NEEDLE_AT]!].sort((a, b) => a.chunkId - b.chunkId), QUESTION);
    const without = await firstToken(window, QUESTION);
    const otherColor = await firstToken(chunks.slice(1), 'What color was the square on the blue screen?');
    assert.equal(withNeedle.token, ' green');
    assert.equal(without.token, ' unknown');
    assert.equal(otherColor.token, ' unknown');
    for (const [name, a] of [['needle in context', withNeedle], ['needle absent', without], ['every frame, blue asked', otherColor]] as const) {
      assert.ok(a.margin > MIN_MARGIN, `${name}: margin ${a.margin} <= ${MIN_MARGIN}`);
    }
    t.diagnostic(
      `needle in context: '${withNeedle.token}' by ${withNeedle.margin.toFixed(2)}; absent: '${without.token}' by ${without.margin.toFixed(2)}; ` +
        `all frames, blue asked: '${otherColor.token}' by ${otherColor.margin.toFixed(2)}`,
    );

    // ReKV's retrieval score at layer 1 (mean pre-RoPE question query . chunk representative, summed
    // over each KV group's query heads): the needle alone scores; haystack chunks score exactly 0.
    const { numHeads, numKvHeads, headDim: D } = model.decoder.info;
    const ids = model.tokenizer.encode(QUESTION);
    const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: stream.toCache(stream.assembleContext(window)), logits: 'none', queries: true });
    const taps = out.queries![1]!;
    const width = numHeads * D;
    const score = (chunk: FrameChunk): number => {
      let sum = 0;
      for (let h = 0; h < numHeads; h++) {
        const g = Math.floor(h / (numHeads / numKvHeads));
        for (let d = 0; d < D; d++) {
          let q = 0;
          for (let row = 0; row < ids.length; row++) q += taps[row * width + h * D + d]! / ids.length;
          sum += q * chunk.representatives[1]![g * D + d]!;
        }
      }
      return sum;
    };
    const needleScore = score(chunks[NEEDLE_AT]!);
    const others = chunks.filter((c) => c.chunkId !== NEEDLE_AT).map((c) => Math.abs(score(c)));
    assert.ok(needleScore > 10, `needle score ${needleScore}`);
    assert.ok(Math.max(...others) < 1e-4, `haystack scores ${others.join(', ')}`);
    t.diagnostic(`layer-1 retrieval score: needle ${needleScore.toFixed(2)}, haystack max |score| ${Math.max(...others).toExponential(1)}`);
  });
});
