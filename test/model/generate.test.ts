/**
 * Generation: every token comes from the decoder's logits. Greedy decoding with the KV cache must
 * produce the same tokens as re-running the whole sequence without a cache at every step.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { argmax } from '../../kernels/topk.js';
import { generate } from '../../src/model/generate.js';
import { answerAboutImage } from '../../src/model/imageQuestion.js';
import { preprocessImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { randomTokenIds } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

describe('generate', () => {
  let model: VisionLanguageModel;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
  });
  after(async () => model?.dispose());

  it('greedy with KV cache equals argmax of a full re-prefill at every step', async () => {
    const prompt = randomTokenIds(9, 21);
    const result = await generate(model, { inputsEmbeds: await model.embed(prompt) }, { maxNewTokens: 8 });
    assert.equal(result.stopReason, 'max_new_tokens');
    assert.equal(result.tokenIds.length, 8);
    const sequence = [...prompt];
    for (const token of result.tokenIds) {
      const full = await model.decoder.step({ inputsEmbeds: await model.embed(sequence), past: model.decoder.emptyCache(), logits: 'last' });
      assert.equal(token, argmax(full.logits));
      sequence.push(token);
    }
    assert.equal(result.promptTokens, 9);
  });

  it('sampling is reproducible for a seed and streams the same text it returns', async () => {
    const embeds = await model.embed(randomTokenIds(6, 4));
    const pieces: string[] = [];
    const a = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 12, temperature: 1.5, topP: 0.95, seed: 7, onText: (p) => pieces.push(p) });
    const b = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 12, temperature: 1.5, topP: 0.95, seed: 7 });
    const c = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 12, temperature: 1.5, topP: 0.95, seed: 8 });
    assert.deepEqual(a.tokenIds, b.tokenIds);
    assert.notDeepEqual(a.tokenIds, c.tokenIds);
    assert.equal(pieces.join(''), a.text);
    assert.equal(a.text, model.tokenizer.decode(a.tokenIds, { skipSpecialTokens: true }));
  });

  it('stops on an eos id without emitting it', async () => {
    const embeds = await model.embed(randomTokenIds(5, 2));
    const first = (await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 1 })).tokenIds[0]!;
    const eos = model.eosTokenIds as Set<number>;
    eos.add(first);
    try {
      const result = await generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 5 });
      assert.equal(result.stopReason, 'eos');
      assert.deepEqual(result.tokenIds, []);
    } finally {
      eos.delete(first);
    }
  });

  it('rejects bad sampling settings', async () => {
    const embeds = await model.embed([5]);
    await assert.rejects(generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 0 }), /max new tokens/);
    await assert.rejects(generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 2, temperature: -1 }), /temperature/);
    await assert.rejects(generate(model, { inputsEmbeds: embeds }, { maxNewTokens: 2, topP: 0 }), /top-p/);
  });

  it('answers about an image: features merged at the image-token rows', async () => {
    const image = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#00ff00' } }).png().toBuffer();
    const answer = await answerAboutImage(model, { image, question: 'What color is the screen?', maxNewTokens: 4 });
    assert.equal(answer.imageTokens, 4);
    assert.equal(answer.tokenIds.length, 4);
    // The features depend on the image, so a wiring bug that ignores pixels would show.
    const other = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#ff00ff' } }).png().toBuffer();
    const green = await model.encodeImages(await preprocessImage(image, model.imageConfig));
    const magenta = await model.encodeImages(await preprocessImage(other, model.imageConfig));
    assert.notDeepEqual(green.data, magenta.data);
    await assert.rejects(answerAboutImage(model, { image, question: '  ', maxNewTokens: 4 }), /question is empty/);
  });
});
