/**
 * Query taps on the model-builder-style probes (GroupQueryAttention do_rotary, `/model/layers.N/attn/`
 * names, MatMulNBits q4, q4f16 with float32 inputs_embeds and float16 internals, q_norm): found by
 * structure, exposed by surgery, and equal to the pre-RoPE queries computed another way: the eager
 * probe-random-tiny has the same weights and outputs its q projections itself, and q_norm is applied
 * here to the plain GQA probe's taps with the weights regenerated from the seed.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { planQueryTapsForFile } from '../../src/model/onnx/attentionStructure.js';
import type { GraphDtype } from '../../src/model/graphFiles.js';
import { GRAPH_DTYPE_SUFFIX } from '../../src/model/graphFiles.js';
import { randomWeightSource } from '../../src/model/probe/randomWeights.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';

const IDS = [1, 5, 900, 17, 42, 3000, 7];

async function taps(model: VisionLanguageModel): Promise<Float32Array[]> {
  const out = await model.decoder.step({ inputsEmbeds: await model.embed(IDS), past: model.decoder.emptyCache(), logits: 'none', queries: true });
  return out.queries!;
}

function relativeError(actual: Float32Array, expected: Float32Array): number {
  assert.equal(actual.length, expected.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('query taps on the model-builder-style probes', () => {
  const models = new Map<string, VisionLanguageModel>();
  const load = async (name: string, dtype: GraphDtype = 'fp32') => {
    const key = `${name}/${dtype}`;
    let model = models.get(key);
    if (!model) {
      model = await VisionLanguageModel.load(probeModelDir(name), { dtype });
      models.set(key, model);
    }
    return model;
  };
  let reference: Float32Array[];
  before(async () => {
    reference = await taps(await load('probe-random-tiny'));
  });
  after(async () => {
    for (const model of models.values()) await model.dispose();
  });

  for (const name of ['probe-random-tiny-gqa', 'probe-random-tiny-gqa-qnorm', 'probe-random-tiny-gqa-cache-branch'] as const) {
    for (const dtype of ['fp32', 'q4', 'q4f16'] as const) {
      it(`${name} ${dtype}: found by structure (GroupQueryAttention, RoPE inside), typed ${dtype === 'q4f16' ? 'float16' : 'float32'}, exposed by surgery`, async () => {
        const file = path.join(probeModelDir(name), 'onnx', `decoder_model_merged${GRAPH_DTYPE_SUFFIX[dtype]}.onnx`);
        const plan = planQueryTapsForFile(file);
        assert.ok(plan.complete, plan.reason);
        const qNorm = name.endsWith('-qnorm');
        for (const l of plan.layers) {
          assert.equal(l.attentionOp, 'GroupQueryAttention');
          assert.equal(l.attentionNode, `/model/layers.${l.layer}/attn/GroupQueryAttention`);
          assert.equal(l.rotary, 'inside');
          assert.equal(l.qNorm, qNorm);
          assert.equal(l.dtype, dtype === 'q4f16' ? 'float16' : 'float32');
          if (!qNorm) assert.equal(l.tensorName, `/model/layers.${l.layer}/attn/q_proj/${dtype === 'fp32' ? 'MatMul' : 'MatMul_Quant'}_output_0`);
        }
        const model = await load(name, dtype);
        assert.equal(model.queryTaps.state, 'surgery', model.queryTaps.reason);
        assert.equal(model.decoder.info.embedType, 'float32');
        const q = await taps(model);
        assert.equal(q.length, plan.numLayers);
        for (const layer of q) assert.ok(layer.length === IDS.length * 4 * 16 && layer.every(Number.isFinite));
      });
    }
  }

  it('fp32: every layer\'s taps equal the q projections the eager probe-random-tiny (same weights) outputs itself', async () => {
    const q = await taps(await load('probe-random-tiny-gqa'));
    for (const [layer, values] of q.entries()) assert.ok(relativeError(values, reference[layer]!) < 1e-5, `layer ${layer}: ${relativeError(values, reference[layer]!)}`);
  });

  it('q4 and q4f16 taps track fp32 (4-bit weights: close, not equal)', async () => {
    const fp32 = await taps(await load('probe-random-tiny-gqa'));
    for (const dtype of ['q4', 'q4f16'] as const) {
      const q = await taps(await load('probe-random-tiny-gqa', dtype));
      for (const [layer, values] of q.entries()) {
        const error = relativeError(values, fp32[layer]!);
        assert.ok(error > 0 && error < 0.2, `${dtype} layer ${layer}: relative error ${error}`);
      }
    }
  });

  it('q_norm: the tap is the per-head RMS-normalized projection (recomputed here), not the projection', async () => {
    const plain = (await taps(await load('probe-random-tiny-gqa')))[0]!;
    const normed = (await taps(await load('probe-random-tiny-gqa-qnorm')))[0]!;
    const D = 16;
    const weight = randomWeightSource(0)('model.layers.0.self_attn.q_norm.weight', [D], 'norm');
    const expected = new Float32Array(plain.length);
    for (let row = 0; row < plain.length / D; row++) {
      let ms = 0;
      for (let d = 0; d < D; d++) ms += plain[row * D + d]! ** 2;
      const rms = Math.sqrt(ms / D + 1e-5);
      for (let d = 0; d < D; d++) expected[row * D + d] = (plain[row * D + d]! / rms) * weight[d]!;
    }
    assert.ok(relativeError(normed, expected) < 1e-5, `q_norm tap vs recomputed: ${relativeError(normed, expected)}`);
    // Negative control: the projection before q_norm is 0.28 away (relative, seed 0), the recomputation within 1e-5.
    assert.ok(relativeError(normed, plain) > 0.1, `negative control: q_norm moved the queries by only ${relativeError(normed, plain)}`);
  });

  it('probe-random-smolvlm2-256m-gqa: all 30 layers found in the fp32, q4 and q4f16 files', () => {
    const dir = probeModelDir('probe-random-smolvlm2-256m-gqa');
    for (const dtype of ['fp32', 'q4', 'q4f16'] as const) {
      const plan = planQueryTapsForFile(path.join(dir, 'onnx', `decoder_model_merged${GRAPH_DTYPE_SUFFIX[dtype]}.onnx`));
      assert.ok(plan.complete, plan.reason);
      assert.equal(plan.numLayers, 30);
      assert.deepEqual(
        plan.layers.map((l) => [l.tensorName, l.dtype, l.rotary]),
        plan.layers.map((l) => [`/model/layers.${l.layer}/attn/q_proj/${dtype === 'fp32' ? 'MatMul' : 'MatMul_Quant'}_output_0`, dtype === 'q4f16' ? 'float16' : 'float32', 'inside']),
      );
    }
  });
});
