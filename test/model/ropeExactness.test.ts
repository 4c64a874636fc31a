/**
 * RoPE exactness: keys the decoder returns in `present` (post-RoPE) can be un-rotated by their
 * positions and re-rotated to any other positions with kernels/rope, giving the keys the decoder
 * itself computes at those positions. This is what lets Vigil store keys pre-RoPE and place
 * retrieved chunks at compact positions. Checked for full and partial rotary.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rerotateHeads, ropeInvFreq, rotateHeads } from '../../kernels/rope.js';
import { buildProbeFolder } from '../../src/model/probe/probeModelFolder.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import { toFloat32 } from '../../src/model/tensors.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { maxAbsDiff, randomTokenIds } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

const FROM = [0, 1, 2, 3, 4, 5];
// Far, unordered and large positions: float64 angles would be off by ~1e-3 rad at 16000.
const TO = [7, 3, 16000, 901, 4096, 12];
const TOLERANCE = 2e-5;

function partialRotaryDir(): string {
  const tiny = findProbeSpec('probe-random-tiny')!;
  const spec = { ...tiny, name: 'probe-test-partial-rotary', text: { ...tiny.text, rotaryDim: 8 } };
  const outDir = path.join(os.tmpdir(), `vigil-test-partial-rotary-${process.pid}`);
  return buildProbeFolder(spec, { outDir }).dir;
}

const MODELS: Array<{ label: string; dir: () => string }> = [
  { label: 'full rotary (probe-random-tiny)', dir: () => probeModelDir('probe-random-tiny') },
  { label: 'partial rotary (8 of 16 dims)', dir: partialRotaryDir },
];

for (const m of MODELS) {
  describe(`RoPE exactness, ${m.label}`, () => {
    let model: VisionLanguageModel;
    let dir: string;
    before(async () => {
      dir = m.dir();
      model = await VisionLanguageModel.load(dir);
    });
    after(async () => {
      await model?.dispose();
      if (dir.includes('vigil-test-partial-rotary')) fs.rmSync(dir, { recursive: true, force: true });
    });

    /** present keys (float32, [KV, S, D]) of every layer, decoding `ids` at `positions` with no past. */
    async function keysAt(ids: number[], positions: number[]): Promise<Float32Array[]> {
      const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache(), positions });
      return out.present.layers.map((layer) => toFloat32(layer.key));
    }

    it('layer 0: un-rotate by the old positions, rotate to new ones = the decoder at the new positions', async () => {
      const { numKvHeads, headDim } = model.decoder.info;
      const invFreq = ropeInvFreq(model.config.text.rotaryDim, model.config.text.ropeTheta);
      const ids = randomTokenIds(FROM.length, 11);
      const atFrom = (await keysAt(ids, FROM))[0]!;
      const atTo = (await keysAt(ids, TO))[0]!;
      const preRope = rotateHeads(atFrom, numKvHeads, FROM.length, headDim, FROM, invFreq, -1);
      const moved = rotateHeads(preRope, numKvHeads, FROM.length, headDim, TO, invFreq, 1);
      assert.ok(maxAbsDiff(moved, atTo) <= TOLERANCE, `two-step diff ${maxAbsDiff(moved, atTo)}`);
      const fused = rerotateHeads(atFrom, numKvHeads, FROM.length, headDim, FROM, TO, invFreq);
      assert.ok(maxAbsDiff(fused, atTo) <= TOLERANCE, `fused diff ${maxAbsDiff(fused, atTo)}`);
      // Pre-RoPE keys do not depend on position.
      const preRopeTo = rotateHeads(atTo, numKvHeads, FROM.length, headDim, TO, invFreq, -1);
      assert.ok(maxAbsDiff(preRope, preRopeTo) <= TOLERANCE);
      // And the check has teeth: leaving the keys at their old positions is far off.
      assert.ok(maxAbsDiff(atFrom, atTo) > 100 * TOLERANCE);
    });

    it('every layer: a lone token at one position re-rotates to the decoder keys at another', async () => {
      const { numKvHeads, headDim, numLayers } = model.decoder.info;
      const invFreq = ropeInvFreq(model.config.text.rotaryDim, model.config.text.ropeTheta);
      const ids = randomTokenIds(3, 5);
      for (const [id, from, to] of [[ids[0]!, 0, 16000], [ids[1]!, 17, 3], [ids[2]!, 4095, 4096]] as const) {
        // One token with no past attends only to itself, so every layer's pre-RoPE key is position-free.
        const a = await keysAt([id], [from]);
        const b = await keysAt([id], [to]);
        for (let layer = 0; layer < numLayers; layer++) {
          const moved = rerotateHeads(a[layer]!, numKvHeads, 1, headDim, [from], [to], invFreq);
          const diff = maxAbsDiff(moved, b[layer]!);
          assert.ok(diff <= TOLERANCE, `layer ${layer}, ${from} -> ${to}: diff ${diff}`);
        }
      }
    });

    it('dims past the rotary part are position-free, and query taps are pre-RoPE', async () => {
      const { numKvHeads, headDim } = model.decoder.info;
      const rotaryDim = model.config.text.rotaryDim;
      const ids = randomTokenIds(FROM.length, 13);
      const run = async (positions: number[]) =>
        model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache(), positions, queries: true });
      const a = await run(FROM);
      const b = await run(TO);
      const keyA = toFloat32(a.present.layers[0]!.key);
      const keyB = toFloat32(b.present.layers[0]!.key);
      for (let h = 0; h < numKvHeads; h++) {
        for (let t = 0; t < FROM.length; t++) {
          for (let d = rotaryDim; d < headDim; d++) {
            const i = (h * FROM.length + t) * headDim + d;
            assert.equal(keyA[i], keyB[i], `tail dim ${d} moved`);
          }
        }
      }
      assert.equal(a.queries!.length, model.decoder.info.numLayers);
      assert.deepEqual(a.queries![0], b.queries![0], 'layer-0 queries must not depend on position');
    });
  });
}
