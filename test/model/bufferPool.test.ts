import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/model/bufferPool.js';
import { generate } from '../../src/model/generate.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { randomTokenIds } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

test('the pool hands back the smallest kept buffer that fits and keeps a bounded amount', () => {
  const pool = new BufferPool(1000);
  const a = new ArrayBuffer(400);
  const b = new ArrayBuffer(300);
  pool.give(a);
  pool.give(b);
  pool.give(b); // twice: kept once
  assert.equal(pool.retainedBytes, 700);
  assert.equal(pool.take(250), b, 'smallest that fits');
  assert.equal(pool.take(500).byteLength, 500, 'nothing kept fits: a new one');
  assert.equal(pool.take(100), a, 'a larger kept buffer beats a new one');
  assert.equal(pool.retainedBytes, 0);
  pool.give(new ArrayBuffer(600));
  pool.give(new ArrayBuffer(500)); // over the cap: the oldest goes
  assert.equal(pool.retainedBytes, 500);
  pool.give(new ArrayBuffer(2000)); // larger than the cap: not kept
  assert.equal(pool.retainedBytes, 500);
});

test('generate over reused pool memory full of NaN gives the same tokens as over fresh memory', async () => {
  const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
  try {
    const prompt = randomTokenIds(9, 5);
    const embeds = await model.embed(prompt);
    const fresh = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 6, buffers: new BufferPool(0) });
    const pool = new BufferPool(2 ** 30);
    const { numLayers, numKvHeads, headDim } = model.decoder.info;
    const setBytes = 2 * numLayers * numKvHeads * (prompt.length + 6) * headDim * 4;
    const dirty = [pool.take(setBytes), pool.take(setBytes)];
    for (const buffer of dirty) {
      new Float32Array(buffer).fill(Number.NaN);
      pool.give(buffer);
    }
    // Fetching present: two sets alternate, both written.
    const reused = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 6, buffers: pool, inPlace: false });
    assert.deepEqual(reused.tokenIds, fresh.tokenIds);
    assert.equal(pool.retainedBytes, 2 * setBytes, 'both sets came back to the pool');
    assert.ok(dirty.every((buffer) => !Number.isNaN(new Float32Array(buffer)[0])), 'the dirty buffers were the ones written');
    // In place: one buffer whose rows past the context held NaN; its tail is zeroed before it is fed
    // (split decode attention gives those rows zero weight, and 0 x NaN would be NaN).
    for (const buffer of dirty) new Float32Array(buffer).fill(Number.NaN);
    const inPlace = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 6, buffers: pool });
    assert.deepEqual(inPlace.tokenIds, fresh.tokenIds);
    assert.equal(pool.retainedBytes, 2 * setBytes, 'the buffer came back to the pool');
    const used = dirty.filter((buffer) => !Number.isNaN(new Float32Array(buffer)[0]));
    assert.equal(used.length, 1, 'one buffer held the growing context');
    assert.ok(!new Float32Array(used[0]!).some(Number.isNaN), 'no NaN left in it: its rows past the context were zeroed');
  } finally {
    await model.dispose();
  }
});
