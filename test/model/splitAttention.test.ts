/**
 * Split decode attention (issue 19): GroupQueryAttention rewritten to read the past in place
 * (src/model/onnx/splitAttention.ts). The rewritten decoder must give the logits, new rows and
 * `present` of the export's GroupQueryAttention: from an empty past, after a past, from a longer
 * buffer whose extra rows are garbage, with padding in the mask, and token for token in generation.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BufferPool } from '../../src/model/bufferPool.js';
import { generate } from '../../src/model/generate.js';
import { KvBuffer } from '../../src/model/kvBuffer.js';
import type { KvCache } from '../../src/model/kvCache.js';
import { readGraphStructureFromFile } from '../../src/model/onnx/onnxStructure.js';
import { planSplitAttention } from '../../src/model/onnx/splitAttention.js';
import { OnnxGraph } from '../../src/model/onnxGraph.js';
import { openDecoderWithQueryTaps } from '../../src/model/queryTapLoader.js';
import { toFloat32 } from '../../src/model/tensors.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { randomTokenIds } from '../helpers/decoderInputs.js';
import { probeModelDir } from '../helpers/probeModels.js';

const decoderFile = (name: string) => `${probeModelDir(name)}/onnx/decoder_model_merged.onnx`;

/** Max |a - b| relative to max |a|. */
function relativeDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!));
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  return scale > 0 ? worst / scale : worst;
}

function cacheDiff(a: KvCache, b: KvCache): number {
  assert.equal(a.length, b.length);
  return Math.max(...a.layers.flatMap((l, i) => [relativeDiff(toFloat32(l.key), toFloat32(b.layers[i]!.key)), relativeDiff(toFloat32(l.value), toFloat32(b.layers[i]!.value))]));
}

const TOLERANCE = 1e-5;

describe('split decode attention', () => {
  it('is planned for GroupQueryAttention with RoPE outside, and refused where it does not apply', () => {
    const plan = planSplitAttention(readGraphStructureFromFile(decoderFile('probe-random-tiny')));
    assert.ok(plan.complete, plan.complete ? '' : plan.reason);
    assert.ok(plan.layers.every((l) => l.node.opType === 'GroupQueryAttention' && l.replacement.at(-1)!.output[0] === l.node.outputs[0]), 'each replacement ends in the attention output');
    assert.equal(plan.removedOutputs.length, 2 * plan.layers.length);
    const rotary = planSplitAttention(readGraphStructureFromFile(decoderFile('probe-random-tiny-gqa')));
    assert.ok(rotary.complete && rotary.layers.every((l) => l.rotatedKey && l.replacement.some((n) => n.op_type === 'RotaryEmbedding')), 'do_rotary graphs rotate with their own caches');
    const concat = planSplitAttention(readGraphStructureFromFile(decoderFile('probe-needle')));
    assert.ok(!concat.complete && /reads present|not a GroupQueryAttention/.test(concat.reason), 'eager attention (present = Concat) is left alone');
  });

  it('a split copy onnxruntime refuses falls back to GroupQueryAttention with the taps, once', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-split-refused-'));
    // Stands in an onnxruntime that refuses graphs without present outputs (the real one loads them).
    const refused: string[] = [];
    const open = async (file: string) => {
      const graph = await OnnxGraph.open(file, 'decoder');
      if (graph.outputNames.includes('present.0.key')) return graph;
      await graph.dispose();
      refused.push(file);
      throw new Error('refused by the test');
    };
    try {
      for (let load = 0; load < 2; load++) {
        const loaded = await openDecoderWithQueryTaps(decoderFile('probe-random-tiny'), 'auto', cacheDir, open, true);
        try {
          assert.equal(loaded.status.state, 'exposed');
          assert.ok(loaded.kvTaps?.lengthsFromMask, 'the kv taps are kept');
          assert.ok(loaded.graph.outputNames.includes('present.0.key'), 'GroupQueryAttention as exported');
        } finally {
          await loaded.graph.dispose();
        }
      }
      assert.equal(refused.length, 1, 'the refusal is remembered: the second load does not rewrite the graph again');
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  // probe-random-tiny: RoPE outside the attention (position_ids); -gqa: model-builder style, do_rotary.
  for (const name of ['probe-random-tiny', 'probe-random-tiny-gqa']) describe(`${name}: split against GroupQueryAttention`, () => {
    let split: VisionLanguageModel;
    let gqa: VisionLanguageModel;
    before(async () => {
      split = await VisionLanguageModel.load(probeModelDir(name), { decodeAttention: 'split' });
      gqa = await VisionLanguageModel.load(probeModelDir(name), { decodeAttention: 'gqa' });
    });
    after(async () => {
      await split?.dispose();
      await gqa?.dispose();
    });

    it('the split graph has no present outputs, still has its taps, and no GroupQueryAttention runs', () => {
      assert.ok(!split.decoder.graph.outputNames.some((n) => n.startsWith('present.')), 'no present outputs');
      assert.ok(gqa.decoder.graph.outputNames.includes('present.0.key'));
      assert.ok(split.decoder.info.kvTaps?.lengthsFromMask);
      assert.ok(split.decoder.info.queryTapNames);
      const structure = readGraphStructureFromFile(split.decoder.graph.file);
      assert.ok(!structure.nodes.some((n) => n.opType === 'GroupQueryAttention'));
    });

    it('prefill from an empty past, then a call after it: same logits and present', async () => {
      const first = await split.embed(randomTokenIds(9, 11, 1000));
      const a = await split.decoder.step({ inputsEmbeds: first, past: split.decoder.emptyCache(), logits: 'all' });
      const b = await gqa.decoder.step({ inputsEmbeds: first, past: gqa.decoder.emptyCache(), logits: 'all' });
      assert.ok(relativeDiff(b.logits, a.logits) <= TOLERANCE, `prefill logits ${relativeDiff(b.logits, a.logits)}`);
      assert.ok(cacheDiff(b.present, a.present) <= TOLERANCE, `prefill present ${cacheDiff(b.present, a.present)}`);
      const next = await split.embed(randomTokenIds(4, 12, 1000));
      const c = await split.decoder.step({ inputsEmbeds: next, past: b.present, logits: 'all' });
      const d = await gqa.decoder.step({ inputsEmbeds: next, past: b.present, logits: 'all' });
      assert.ok(relativeDiff(d.logits, c.logits) <= TOLERANCE, `logits after a past ${relativeDiff(d.logits, c.logits)}`);
      assert.ok(cacheDiff(d.present, c.present) <= TOLERANCE);
      const rows = await split.decoder.stepRows({ inputsEmbeds: next, past: b.present, logits: 'none', kv: 'new' });
      assert.equal(rows.newRows!.length, 4);
    });

    it('padding in the mask is honoured as GroupQueryAttention honours it', { skip: name.endsWith('-gqa') && 'do_rotary graphs take no padding (Decoder refuses it)' }, async () => {
      const past = (await gqa.decoder.step({ inputsEmbeds: await gqa.embed(randomTokenIds(12, 13, 1000)), past: gqa.decoder.emptyCache(), logits: 'none' })).present;
      const embeds = await split.embed(randomTokenIds(3, 14, 1000));
      const attentionMask = [0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1];
      const a = await split.decoder.step({ inputsEmbeds: embeds, past, logits: 'all', attentionMask });
      const b = await gqa.decoder.step({ inputsEmbeds: embeds, past, logits: 'all', attentionMask });
      assert.ok(relativeDiff(b.logits, a.logits) <= TOLERANCE, `masked logits ${relativeDiff(b.logits, a.logits)}`);
      const unmasked = await split.decoder.step({ inputsEmbeds: embeds, past, logits: 'all' });
      assert.ok(relativeDiff(a.logits, unmasked.logits) > 1e-3, 'the mask changes the logits');
    });

    it('a past fed from a longer buffer (garbage after its valid rows) reads only its valid rows', async () => {
      const past = (await gqa.decoder.step({ inputsEmbeds: await gqa.embed(randomTokenIds(17, 15, 1000)), past: gqa.decoder.emptyCache(), logits: 'none' })).present;
      const buffer = new KvBuffer(split.decoder.info, 17 + 40, new BufferPool(0));
      try {
        for (const layer of buffer.cache.layers) for (const t of [layer.key, layer.value]) (t.data as Float32Array).fill(1e4);
        buffer.append(past);
        for (const seqLen of [1, 3]) {
          const embeds = await split.embed(randomTokenIds(seqLen, 16 + seqLen, 1000));
          const a = await split.decoder.stepRows({ inputsEmbeds: embeds, past: buffer.cache, pastLength: buffer.length, kv: 'new', logits: 'all' });
          const b = await gqa.decoder.stepRows({ inputsEmbeds: embeds, past, kv: 'new', logits: 'all' });
          assert.ok(relativeDiff(b.logits, a.logits) <= TOLERANCE, `S=${seqLen}: ${relativeDiff(b.logits, a.logits)}`);
          assert.ok(cacheDiff(b.newRows!, a.newRows!) <= TOLERANCE);
        }
      } finally {
        buffer.dispose();
      }
    });

    it('generation gives the tokens of GroupQueryAttention', async () => {
      const past = (await gqa.decoder.step({ inputsEmbeds: await gqa.embed(randomTokenIds(31, 7, 1000)), past: gqa.decoder.emptyCache(), logits: 'none' })).present;
      const prompt = await split.embed(randomTokenIds(5, 8, 1000));
      const viaGqa = await generate(gqa, { inputsEmbeds: prompt, past }, { maxNewTokens: 12 });
      const viaSplit = await generate(split, { inputsEmbeds: prompt, past }, { maxNewTokens: 12 });
      assert.deepEqual(viaSplit.tokenIds, viaGqa.tokenIds);
      const viaPresent = await generate(split, { inputsEmbeds: prompt, past }, { maxNewTokens: 12, inPlace: false });
      assert.deepEqual(viaPresent.tokenIds, viaGqa.tokenIds);
    });

    it('the keys it hands over are post-RoPE, rotated by the graph where it rotates them', async () => {
      assert.equal(split.decoder.info.kvTaps!.keysPreRope, false);
      // Decoder.verifyImplicitRope compared the graph's rotation with config.json's at load (graphs without position_ids).
      assert.equal(split.decoder.info.hasPositionIds, !name.endsWith('-gqa'));
      if (!split.decoder.info.hasPositionIds) assert.ok((await split.decoder.verifyImplicitRope())! <= 1e-4);
    });
  });
});
