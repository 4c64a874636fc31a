/**
 * The question path over memory: when retrieval brings back every evicted frame (and the window is
 * included), pass 2 sees exactly the frames a never-evicting stream sees, so the answer tokens match.
 * With nothing retrieved the context is only sinks: the evidence is empty and the context shorter.
 * A chunk that cannot be read is left out and reported, and retrieval chooses again without it.
 * The memory here is a RAM stand-in for StreamMemory (same loader, no disk), so a read failure can
 * be made on purpose; test/engine/damagedChunks.test.ts does it with real damaged files.
 */
import type { ContextWindow } from '../../memory/contextWindow.js';
import { chunkLayers, type ChunkLayers } from '../../memory/store/index.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../kernels/sampling.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { fixedSelection, loadContext, type Selection } from '../../src/engine/contextLoader.js';
import { toKvCache } from '../../src/engine/kvContext.js';
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

/**
 * Keeps every chunk in RAM; "retrieval" returns the first r candidates on every layer (an oracle
 * that retrieves all when r is large). Reads of the chunks in `damaged` fail.
 */
function ramMemory(window: ContextWindow, chunks: Map<number, FrameChunk>, damaged: ReadonlySet<number> = new Set()): QuestionMemory & { reads: number[][] } {
  const numLayers = window.shape.numLayers;
  const reads: number[][] = [];
  const select = (_queries: Float32Array[], r: number, exclude: ReadonlySet<number>): Promise<Selection> => {
    const ids = [...chunks.keys()].filter((id) => !exclude.has(id)).slice(0, r);
    return Promise.resolve({
      chunkIds: Array.from({ length: numLayers }, () => ids),
      scores: Array.from({ length: numLayers }, () => ids.map(() => 1)),
      reselect: (without: ReadonlySet<number>) => select(_queries, r, new Set([...exclude, ...without])),
    });
  };
  return {
    window,
    reads,
    select,
    fixed: (ids) => fixedSelection(ids, numLayers),
    load: (selection, includeWindow) =>
      loadContext(window, selection, includeWindow, (wanted) => {
        reads.push([...wanted.keys()]);
        const ok = new Map<number, ChunkLayers>();
        const failed = [];
        for (const [id, layers] of wanted) {
          if (damaged.has(id)) failed.push({ chunkId: id, reason: 'checksum' as const, message: `chunk ${id}: checksum mismatch` });
          else ok.set(id, chunkLayers(chunks.get(id)!, layers));
        }
        return Promise.resolve({ chunks: ok, failed, release: () => undefined });
      }, (id) => chunks.get(id)?.tStart ?? null),
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
    const encoder = await StreamEncoder.create(model);
    const window = encoder.newWindow({ sinkFrames: 1, windowFrames });
    const all = new Map<number, FrameChunk>();
    for (let i = 0; i < 6; i++) {
      const { chunk } = await encoder.encodeFrame(randomFrame(40 + i), 2 * i, window);
      const numbered = { ...chunk, chunkId: i };
      window.push(numbered);
      all.set(i, numbered);
    }
    return { encoder, window, all };
  }

  it('retrieving every evicted frame reproduces the full-context answer', async () => {
    const full = await stream(100);
    const context = full.window.assemble(full.window.contextChunks);
    const promptIds = model.tokenizer.encode(full.encoder.format.question(question));
    const reference = await generate(model, { inputsEmbeds: await model.embed(promptIds), past: toKvCache(context, model.decoder.info) }, { maxNewTokens: 6 });

    const small = await stream(1);
    assert.equal(small.window.contextChunks.length, 2);
    const answer = await answerQuestion(small.encoder, ramMemory(small.window, small.all), {
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
    const answer = await answerQuestion(small.encoder, ramMemory(small.window, small.all), { question, retrieve: 0, maxNewTokens: 2 });
    assert.deepEqual(answer.evidence, []);
    assert.equal(answer.contextTokens, small.encoder.prefix.tokenCount + small.all.get(0)!.tokenCount);
  });

  it('rejects an empty question and a negative r', async () => {
    const small = await stream(1);
    const memory = ramMemory(small.window, small.all);
    await assert.rejects(answerQuestion(small.encoder, memory, { question: ' ', retrieve: 1, maxNewTokens: 1 }), /question is empty/);
    await assert.rejects(answerQuestion(small.encoder, memory, { question, retrieve: -1, maxNewTokens: 1 }), /retrieve must be/);
  });

  it('a damaged chunk is skipped and reported; retrieval chooses again so every layer keeps r chunks', async () => {
    const small = await stream(1);
    const memory = ramMemory(small.window, small.all, new Set([2]));
    const answer = await answerQuestion(small.encoder, memory, { question, retrieve: 3, maxNewTokens: 2 });
    assert.deepEqual(answer.skipped.map((s) => [s.chunkId, s.t]), [[2, 4]]);
    assert.match(answer.skipped[0]!.reason, /checksum/);
    // First choice 1, 2, 3 (0 is the sink); 2 fails; the second choice leaves it out and takes 4.
    assert.deepEqual(memory.reads, [[1, 2, 3], [1, 3, 4]]);
    assert.deepEqual(answer.evidence.map((e) => e.chunkId), [1, 3, 4]);
    assert.ok(answer.layerChunkIds.every((ids) => ids.length === 3));
    assert.ok(answer.text.length > 0 || answer.tokenIds.length > 0, 'still answered from the rest');
  });

  it('a fixed selection (baselines) just drops a damaged chunk', async () => {
    const small = await stream(1);
    const memory = ramMemory(small.window, small.all, new Set([3]));
    const answer = await answerQuestion(small.encoder, memory, { question, retrieve: 0, selection: [1, 2, 3], maxNewTokens: 1 });
    assert.deepEqual(answer.evidence.map((e) => e.chunkId), [1, 2]);
    assert.deepEqual(answer.skipped.map((s) => s.chunkId), [3]);
  });
});
