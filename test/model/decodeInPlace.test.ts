/**
 * Decoding in place (issue 19): a call fetches only its new key/value rows (kv taps, exposed by the
 * query-tap surgery) and generation appends them to one growing buffer fed as the past of
 * GroupQueryAttention graphs. Everything here must equal the `present` path it replaces: the rows,
 * the logits of a past fed from a longer buffer, and the tokens generated.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate } from '../../src/model/generate.js';
import { concatKvInto, KvBuffer } from '../../src/model/kvBuffer.js';
import { BufferPool } from '../../src/model/bufferPool.js';
import { emptyKvCache, type KvCache } from '../../src/model/kvCache.js';
import { planKvTaps } from '../../src/model/onnx/kvTapPlan.js';
import { readGraphStructureFromFile } from '../../src/model/onnx/onnxStructure.js';
import { openDecoderWithQueryTaps } from '../../src/model/queryTapLoader.js';
import { toFloat32 } from '../../src/model/tensors.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { randomTokenIds } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

/** Max |a - b| over rows [start, start + count) of every layer's key and value, relative to the largest |a|. */
function rowsDiff(full: KvCache, rows: KvCache, start: number): number {
  let worst = 0;
  let scale = 0;
  full.layers.forEach((layer, i) => {
    for (const kind of ['key', 'value'] as const) {
      const a = toFloat32(layer[kind]);
      const b = toFloat32(rows.layers[i]![kind]);
      const [, heads, total, dim] = layer[kind].dims as number[];
      const count = rows.length;
      for (let h = 0; h < heads!; h++) {
        for (let j = 0; j < count * dim!; j++) {
          const x = a[(h * total! + start) * dim! + j]!;
          scale = Math.max(scale, Math.abs(x));
          worst = Math.max(worst, Math.abs(x - b[h * count * dim! + j]!));
        }
      }
    }
  });
  return scale > 0 ? worst / scale : worst;
}

const decoderFile = (name: string) => `${probeModelDir(name)}/onnx/decoder_model_merged.onnx`;

describe('decode in place', () => {
  it('kv taps are planned from the structure: GroupQueryAttention inputs, or a Concat of the past', () => {
    const eager = planKvTaps(readGraphStructureFromFile(decoderFile('probe-random-tiny')));
    assert.ok(eager.complete);
    assert.deepEqual([eager.layout, eager.keysPreRope, eager.lengthsFromMask], ['bsh', false, true]);
    const fused = planKvTaps(readGraphStructureFromFile(decoderFile('probe-random-tiny-gqa')));
    assert.ok(fused.complete);
    assert.deepEqual([fused.layout, fused.keysPreRope, fused.lengthsFromMask], ['bsh', true, true]);
    // probe-needle's attention is eager (present = Concat(past, new)): rows, but no growing buffer.
    const concat = planKvTaps(readGraphStructureFromFile(decoderFile('probe-needle')));
    assert.ok(concat.complete);
    assert.deepEqual([concat.layout, concat.keysPreRope, concat.lengthsFromMask], ['bhsd', false, false]);
  });

  for (const [name, dtype, tolerance] of [
    ['probe-random-tiny', 'fp32', 1e-6],
    ['probe-random-tiny-gqa', 'fp32', 1e-5],
    ['probe-random-tiny-gqa', 'q4f16', 2e-3],
    ['probe-needle', 'fp32', 1e-6],
  ] as const) {
    describe(`${name} ${dtype}`, () => {
      let model: VisionLanguageModel;
      before(async () => {
        model = await VisionLanguageModel.load(probeModelDir(name), { dtype });
      });
      after(async () => model?.dispose());

      it('a call\'s new rows equal the last rows of its present (keys post-RoPE), logits the same', async () => {
        assert.ok(model.decoder.info.kvTaps, `${name} loads with kv taps`);
        const past = (await model.decoder.step({ inputsEmbeds: await model.embed(randomTokenIds(23, 5, 1000)), past: model.decoder.emptyCache(), logits: 'none' })).present;
        const embeds = await model.embed(randomTokenIds(4, 6, 1000));
        const full = await model.decoder.step({ inputsEmbeds: embeds, past, logits: 'all' });
        const rows = await model.decoder.stepRows({ inputsEmbeds: embeds, past, logits: 'all', kv: 'new' });
        assert.equal(rows.newRows!.length, 4);
        const diff = rowsDiff(full.present, rows.newRows!, 23);
        assert.ok(diff <= tolerance, `rows differ by ${diff.toExponential(2)} (relative)`);
        assert.deepEqual(rows.logits, full.logits);
      });

      it('generation in place gives the tokens of the present path', async () => {
        const past = (await model.decoder.step({ inputsEmbeds: await model.embed(randomTokenIds(31, 7, 1000)), past: model.decoder.emptyCache(), logits: 'none' })).present;
        const prompt = await model.embed(randomTokenIds(5, 8, 1000));
        const viaPresent = await generate(model, { inputsEmbeds: prompt, past }, { maxNewTokens: 10, inPlace: false });
        const inPlace = await generate(model, { inputsEmbeds: prompt, past }, { maxNewTokens: 10 });
        assert.equal(inPlace.tokenIds.length, 10);
        assert.deepEqual(inPlace.tokenIds, viaPresent.tokenIds);
      });

      it(name !== 'probe-needle' ? 'a past fed from a longer buffer reads only its valid rows' : 'a past longer than its context is refused where attention reads it all', async () => {
        const past = (await model.decoder.step({ inputsEmbeds: await model.embed(randomTokenIds(17, 9, 1000)), past: model.decoder.emptyCache(), logits: 'none' })).present;
        const buffer = new KvBuffer(model.decoder.info, 17 + 40, new BufferPool(0));
        try {
          buffer.append(past);
          const embeds = await model.embed(randomTokenIds(3, 10, 1000));
          const call = () => model.decoder.stepRows({ inputsEmbeds: embeds, past: buffer.cache, pastLength: buffer.length, kv: 'new', logits: 'all' });
          if (!model.decoder.info.kvTaps!.lengthsFromMask) {
            await assert.rejects(call, /reads its whole past input/);
            return;
          }
          const fromBuffer = await call();
          const exact = await model.decoder.stepRows({ inputsEmbeds: embeds, past, kv: 'new', logits: 'all' });
          assert.deepEqual(fromBuffer.logits, exact.logits);
          buffer.append(fromBuffer.newRows!);
          assert.equal(buffer.length, 20);
        } finally {
          buffer.dispose();
        }
      });
    });
  }

  it('concatKvInto lays past then rows out head by head, in either float type', () => {
    for (const type of ['float32', 'float16'] as const) {
      const spec = { numLayers: 2, numKvHeads: 2, headDim: 3, type };
      const [past, rows, into] = [emptyKvCache(spec, 2), emptyKvCache(spec, 1), emptyKvCache(spec, 3)];
      // Element value = 100 * head + 10 * token + dim; rows' tokens numbered after the past's.
      const fill = (cache: KvCache, first: number) =>
        cache.layers.forEach((l) => [l.key, l.value].forEach((t) => (t.data as Float32Array | Uint16Array).forEach((_, j, a) => {
          const [h, rest] = [Math.floor(j / (cache.length * 3)), j % (cache.length * 3)];
          a[j] = 100 * h + 10 * (first + Math.floor(rest / 3)) + (rest % 3);
        })));
      fill(past, 0);
      fill(rows, 2);
      concatKvInto(past, rows, into);
      const expected = emptyKvCache(spec, 3);
      fill(expected, 0);
      into.layers.forEach((l, i) => assert.deepEqual([...(l.value.data as Float32Array)], [...(expected.layers[i]!.value.data as Float32Array)], type));
      assert.throws(() => concatKvInto(past, rows, past), /cannot lay 2 \+ 1 rows/);
    }
  });

  it('a cache Vigil cannot write costs the kv taps, not the query taps a graph already outputs', async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-kvtaps-'));
    try {
      // A regular file where the cache folder should be: every write under it fails (even as root).
      fs.writeFileSync(path.join(scratch, 'not-a-folder'), '');
      const loaded = await openDecoderWithQueryTaps(decoderFile('probe-needle'), 'auto', path.join(scratch, 'not-a-folder', 'cache'));
      try {
        assert.equal(loaded.status.state, 'exposed');
        assert.equal(loaded.graph.file, decoderFile('probe-needle'));
        assert.ok(loaded.tapNames?.length);
        assert.equal(loaded.kvTaps, undefined);
      } finally {
        await loaded.graph.dispose();
      }
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('without query-tap surgery (queryTaps off) there are no kv taps and generation fetches present', async () => {
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'), { queryTaps: 'off' });
    try {
      assert.equal(model.decoder.info.kvTaps, undefined);
      await assert.rejects(model.decoder.stepRows({ inputsEmbeds: await model.embed([5]), past: model.decoder.emptyCache(), kv: 'new' }), /no kv taps/);
      const result = await generate(model, { inputsEmbeds: await model.embed(randomTokenIds(4, 3, 1000)) }, { maxNewTokens: 3 });
      assert.equal(result.tokenIds.length, 3);
    } finally {
      await model.dispose();
    }
  });
});
