/**
 * Decoder conformance: incremental decoding with the KV cache (prefill, then single tokens and a
 * short chunk on top of `present`) gives the logits of one full re-prefill of the whole sequence.
 * A negative control (positions restarted at 0) must break the match, so the check can fail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import type { KvCache } from '../../src/model/kvCache.js';
import { maxAbsDiff, randomTokenIds, sliceRows } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

interface Case {
  name: string;
  tolerance: number;
  total: number;
  prefill: number;
}

const CASES: Case[] = [
  { name: 'probe-random-tiny', tolerance: 1e-4, total: 24, prefill: 12 },
  { name: 'probe-random-smolvlm2-256m', tolerance: 1e-4, total: 20, prefill: 12 },
  // float16 KV and activations: a few half-precision ulps at the logits' scale (~0.5, ulp 2.4e-4).
  { name: 'probe-random-tiny-fp16', tolerance: 1e-3, total: 24, prefill: 12 },
];

for (const c of CASES) {
  describe(`conformance ${c.name}`, () => {
    let model: VisionLanguageModel;
    before(async () => {
      model = await VisionLanguageModel.load(probeModelDir(c.name));
    });
    after(async () => model?.dispose());

    async function incrementalLogits(restartPositions: boolean): Promise<{ full: Float32Array; rows: Float32Array[] }> {
      const vocab = model.decoder.info.vocabSize;
      const embeds = await model.embed(randomTokenIds(c.total, 7));
      const full = await model.decoder.step({ inputsEmbeds: embeds, past: model.decoder.emptyCache() });
      assert.equal(full.logitRows, c.total);

      const rows: Float32Array[] = [];
      const prefill = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, c.prefill), past: model.decoder.emptyCache() });
      for (let r = 0; r < c.prefill; r++) rows.push(prefill.logits.slice(r * vocab, (r + 1) * vocab));
      let past: KvCache = prefill.present;
      // Single tokens, then the last three as one chunk (S > 1 on top of a past).
      let position = c.prefill;
      while (position < c.total) {
        const count = c.total - position === 3 ? 3 : 1;
        const step = await model.decoder.step({
          inputsEmbeds: sliceRows(embeds, position, position + count),
          past,
          ...(restartPositions ? { positions: Array.from({ length: count }, (_, i) => i) } : {}),
        });
        assert.equal(step.present.length, position + count);
        for (let r = 0; r < count; r++) rows.push(step.logits.slice(r * vocab, (r + 1) * vocab));
        past = step.present;
        position += count;
      }
      return { full: full.logits, rows };
    }

    it(`incremental decoding equals full re-prefill within ${c.tolerance}`, async (t) => {
      const vocab = model.decoder.info.vocabSize;
      const { full, rows } = await incrementalLogits(false);
      let worst = 0;
      rows.forEach((row, r) => {
        worst = Math.max(worst, maxAbsDiff(row, full, r * vocab, vocab));
      });
      t.diagnostic(`max |incremental - full| = ${worst.toExponential(2)}`);
      assert.ok(worst <= c.tolerance, `max |incremental - full| = ${worst} > ${c.tolerance}`);
    });

    it('present written into reused buffers equals present in fresh ones, bit for bit', async () => {
      const { emptyKvCache } = await import('../../src/model/kvCache.js');
      const embeds = await model.embed(randomTokenIds(c.total, 11));
      const first = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, c.prefill), past: model.decoder.emptyCache(), logits: 'none' });
      const next = sliceRows(embeds, c.prefill, c.total);
      const fresh = await model.decoder.step({ inputsEmbeds: next, past: first.present, logits: 'last' });
      const into = emptyKvCache(model.decoder.info, c.total);
      // Twice into the same buffers: stale contents from the first call must not leak into the second.
      for (let round = 0; round < 2; round++) {
        const reused = await model.decoder.step({ inputsEmbeds: next, past: first.present, logits: 'last', presentInto: into });
        assert.deepEqual(reused.logits, fresh.logits);
        reused.present.layers.forEach((layer, i) => {
          assert.equal(layer.key.data, into.layers[i]!.key.data, 'the caller\'s buffer is the one returned');
          assert.deepEqual(layer.key.data, fresh.present.layers[i]!.key.data, `layer ${i} keys`);
          assert.deepEqual(layer.value.data, fresh.present.layers[i]!.value.data, `layer ${i} values`);
        });
      }
      await assert.rejects(
        model.decoder.step({ inputsEmbeds: next, past: first.present, presentInto: emptyKvCache(model.decoder.info, c.total + 1) }),
        /presentInto must be/,
      );
    });

    it("negative control: wrong positions change the logits", async (t) => {
      const vocab = model.decoder.info.vocabSize;
      const { full, rows } = await incrementalLogits(true);
      const last = rows.length - 1;
      const diff = maxAbsDiff(rows[last]!, full, last * vocab, vocab);
      t.diagnostic(`wrong positions: max diff ${diff.toExponential(2)}`);
      assert.ok(diff > 5 * c.tolerance, `restarted positions should break the match, diff ${diff}`);
    });
  });
}

describe('float16 variant tracks float32', () => {
  it('probe-random-tiny-fp16 logits stay within 2e-2 of probe-random-tiny (same weights, rounded)', async (t) => {
    const fp32 = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
    const fp16 = await VisionLanguageModel.load(probeModelDir('probe-random-tiny-fp16'));
    try {
      assert.equal(fp16.decoder.info.type, 'float16');
      assert.equal(fp16.embedType, 'float16');
      const ids = randomTokenIds(16, 3);
      const a = await fp32.decoder.step({ inputsEmbeds: await fp32.embed(ids), past: fp32.decoder.emptyCache() });
      const b = await fp16.decoder.step({ inputsEmbeds: await fp16.embed(ids), past: fp16.decoder.emptyCache() });
      const diff = maxAbsDiff(a.logits, b.logits);
      t.diagnostic(`max |fp16 - fp32| logits = ${diff.toExponential(2)}`);
      assert.ok(diff < 2e-2, `fp16 drifted ${diff} from fp32`);
    } finally {
      await fp32.dispose();
      await fp16.dispose();
    }
  });
});
