/**
 * The question path over memory: when retrieval brings back every evicted frame (and the window is
 * included), pass 2 sees exactly the frames a never-evicting stream sees, so the answer tokens match.
 * With nothing retrieved the context is only sinks: the evidence is empty and the context shorter.
 */
import { chunkLayers } from '../../memory/store/index.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../kernels/sampling.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { answerQuestion, type QuestionMemory } from '../../src/engine/questionAnswerer.js';
import { StreamEncoder } from '../../src/engine/streamEncoder.js';
import { generate } from '../../src/model/generate.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';

function randomFrame(seed: number): PreprocessedImage {
  const random = mulberry32(seed);
  return { pixelValues: Float32Array.from({ length: 3 * 64 * 64 }, () => random() * 2 - 1), count: 1, height: 64, width: 64, rows: 0, cols: 0 };
}

/** Keeps every chunk in RAM; "retrieval" returns every candidate (an oracle that retrieves all). */
function ramMemory(chunks: Map<number, FrameChunk>, numLayers: number): QuestionMemory {
  return {
    async retrieve(_queries, r, exclude) {
      const ids = [...chunks.keys()].filter((id) => !exclude.has(id)).slice(0, r);
      return { chunkIds: Array.from({ length: numLayers }, () => ids), scores: Array.from({ length: numLayers }, () => ids.map(() => 1)) };
    },
    async loadLayers(wanted) {
      return { chunks: new Map([...wanted].map(([id, layers]) => [id, chunkLayers(chunks.get(id)!, layers)])), release: () => undefined };
    },
  };
}

describe('answerQuestion', () => {
  let model: VisionLanguageModel;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
  });
  after(async () => model?.dispose());

  const question = 'What color was the square on the blue screen?';

  async function stream(windowFrames: number) {
    const encoder = await StreamEncoder.create(model, { sinkFrames: 1, windowFrames });
    const all = new Map<number, FrameChunk>();
    for (let i = 0; i < 6; i++) {
      const { chunk } = await encoder.encodeFrame(randomFrame(40 + i), 2 * i);
      all.set(chunk.chunkId, chunk);
    }
    return { encoder, all };
  }

  it('retrieving every evicted frame reproduces the full-context answer', async () => {
    const full = await stream(100);
    const context = full.encoder.assembleContext(full.encoder.window.contextChunks);
    const promptIds = model.tokenizer.encode(full.encoder.format.question(question));
    const reference = await generate(model, { inputsEmbeds: await model.embed(promptIds), past: full.encoder.toCache(context) }, { maxNewTokens: 6 });

    const small = await stream(1);
    assert.equal(small.encoder.window.contextChunks.length, 2);
    const answer = await answerQuestion(small.encoder, ramMemory(small.all, model.decoder.info.numLayers), {
      question,
      retrieve: 10,
      includeWindow: true,
      maxNewTokens: 6,
    });
    assert.deepEqual(answer.tokenIds, reference.tokenIds);
    assert.equal(answer.contextTokens, context.length);
    assert.deepEqual(answer.evidence.map((e) => e.chunkId), [1, 2, 3, 4]);
    assert.ok(answer.evidence.every((e) => e.layers === model.decoder.info.numLayers));
  });

  it('retrieving nothing leaves only the prefix and sink frames', async () => {
    const small = await stream(1);
    const answer = await answerQuestion(small.encoder, ramMemory(small.all, model.decoder.info.numLayers), { question, retrieve: 0, maxNewTokens: 2 });
    assert.deepEqual(answer.evidence, []);
    assert.equal(answer.contextTokens, small.encoder.prefix.tokenCount + small.all.get(0)!.tokenCount);
  });

  it('rejects an empty question and a negative r', async () => {
    const small = await stream(1);
    const memory = ramMemory(small.all, model.decoder.info.numLayers);
    await assert.rejects(answerQuestion(small.encoder, memory, { question: ' ', retrieve: 1, maxNewTokens: 1 }), /question is empty/);
    await assert.rejects(answerQuestion(small.encoder, memory, { question, retrieve: -1, maxNewTokens: 1 }), /retrieve must be/);
  });
});
