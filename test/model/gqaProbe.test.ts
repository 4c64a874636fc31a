/**
 * Model-builder-style ("fused") decoder exports (issue 16), on the probe variants that have them:
 * GroupQueryAttention with do_rotary and cos/sin caches, no position_ids (positions come from the
 * mask), num_logits_to_keep, MatMulNBits 4-bit weights (q4) and float16 KV/logits around float32
 * inputs_embeds (q4f16), use_cache_branch and q_norm variants. Checked: the graphs' I/O and structure,
 * loading through VisionLanguageModel.load for fp32/q4/q4f16, streamed prefill = full prefill, the
 * fp32 graph against the eager probe with the same weights, the decoder's position and
 * num_logits_to_keep rules, the RoPE self-check, and the needle circuit streamed on probe-needle-gqa.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { isVigilError } from '../../common/errors.js';
import { mulberry32 } from '../../kernels/sampling.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { Decoder } from '../../src/model/decoder.js';
import { generate } from '../../src/model/generate.js';
import { loadModelConfig } from '../../src/model/modelConfig.js';
import type { GraphDtype } from '../../src/model/graphFiles.js';
import { emptyKvCache, type KvCache } from '../../src/model/kvCache.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { OnnxGraph } from '../../src/model/onnxGraph.js';
import { toFloat32 } from '../../src/model/tensors.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { maxAbsDiff, randomTokenIds, sliceRows } from '../helpers/decoderInputs.js';
import { haystackFrame, needleFrame, preprocessFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { RamStream } from '../helpers/ramStream.js';
import { runVigil } from '../helpers/runVigil.js';
import type { VniahResults } from '../../src/eval/vniahRunner.js';

interface DecodedNode {
  name: string;
  op_type: string;
  domain: string;
  attribute: Array<{ name: string; i?: number }>;
}

function graphNodes(file: string): DecodedNode[] {
  const type = modelProtoType();
  const model = type.toObject(type.decode(fs.readFileSync(file)), { longs: Number, defaults: true }) as { graph: { node: DecodedNode[] } };
  return model.graph.node;
}

function decoderFile(dir: string, dtype: GraphDtype): string {
  return path.join(dir, 'onnx', `decoder_model_merged${dtype === 'fp32' ? '' : `_${dtype}`}.onnx`);
}

/** Logits of `ids` by one full prefill, and by a prefill of `prefill` tokens, single tokens, then a 3-token chunk. */
async function fullAndStreamed(model: VisionLanguageModel, ids: number[], prefill: number): Promise<{ full: Float32Array; streamed: Float32Array }> {
  const vocab = model.decoder.info.vocabSize;
  const embeds = await model.embed(ids);
  const full = await model.decoder.step({ inputsEmbeds: embeds, past: model.decoder.emptyCache() });
  assert.equal(full.logitRows, ids.length);
  const streamed = new Float32Array(ids.length * vocab);
  const first = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, prefill), past: model.decoder.emptyCache() });
  streamed.set(first.logits, 0);
  let past: KvCache = first.present;
  let position = prefill;
  while (position < ids.length) {
    const count = ids.length - position === 3 ? 3 : 1;
    const step = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, position, position + count), past });
    assert.equal(step.present.length, position + count);
    assert.equal(step.logitRows, count);
    streamed.set(step.logits, position * vocab);
    past = step.present;
    position += count;
  }
  return { full: full.logits, streamed };
}

function relativeRms(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i]! - b[i]!) ** 2;
    norm += b[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}

const DTYPES: Array<{ dtype: GraphDtype; kv: string; logits: string; tolerance: number }> = [
  { dtype: 'fp32', kv: 'float32', logits: 'float32', tolerance: 1e-4 },
  // MatMulNBits at accuracy level 4 (the int8 compute path CPU int4 builds ask for) quantizes activations to int8 per
  // row and block: rows are independent (measured: a row alone = the row among 10, bit for bit), but the
  // ~1e-6 float differences between GroupQueryAttention's S = 1 and S > 1 paths can flip an int8
  // rounding. Measured at the 256M geometry: streamed vs full 2.1e-2 (max |logit| 2.2); fp32 1.7e-6, and
  // 2.6e-6 for the same q4 graph at accuracy_level 0.
  { dtype: 'q4', kv: 'float32', logits: 'float32', tolerance: 3e-2 },
  // float16 KV and activations: a few half ulps at the logits' scale.
  { dtype: 'q4f16', kv: 'float16', logits: 'float16', tolerance: 2e-3 },
];

describe('probe-random-tiny-gqa: the graphs are shaped like model-builder exports', () => {
  let dir: string;
  before(() => {
    dir = probeModelDir('probe-random-tiny-gqa');
  });

  for (const c of DTYPES) {
    it(`${c.dtype}: I/O (no position_ids, num_logits_to_keep, float32 inputs_embeds, ${c.kv} KV, ${c.logits} logits), no query-tap outputs`, async () => {
      const graph = await OnnxGraph.open(decoderFile(dir, c.dtype));
      try {
        assert.ok(!graph.hasInput('position_ids'));
        assert.ok(!graph.hasInput('use_cache_branch'));
        assert.equal(graph.input('num_logits_to_keep').type, 'int64');
        assert.deepEqual(graph.input('num_logits_to_keep').shape, []);
        assert.equal(graph.input('inputs_embeds').type, 'float32');
        assert.equal(graph.input('past_key_values.0.key').type, c.kv);
        assert.equal(graph.output('present.1.value').type, c.kv);
        assert.equal(graph.output('logits').type, c.logits);
        assert.deepEqual(graph.outputNames, ['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value']);
      } finally {
        await graph.dispose();
      }
    });

    it(`${c.dtype}: GroupQueryAttention do_rotary with cos/sin caches, model-builder node names`, () => {
      const nodes = graphNodes(decoderFile(dir, c.dtype));
      const gqa = nodes.filter((n) => n.op_type === 'GroupQueryAttention');
      assert.deepEqual(gqa.map((n) => n.name), ['/model/layers.0/attn/GroupQueryAttention', '/model/layers.1/attn/GroupQueryAttention']);
      for (const n of gqa) {
        assert.equal(n.domain, 'com.microsoft');
        assert.equal(n.attribute.find((a) => a.name === 'do_rotary')?.i, 1);
      }
      const names = new Set(nodes.map((n) => n.name));
      const matmul = c.dtype === 'fp32' ? 'MatMul' : 'MatMul_Quant';
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) assert.ok(names.has(`/model/layers.1/attn/${proj}/${matmul}`), `${proj}/${matmul}`);
      const nbits = nodes.filter((n) => n.op_type === 'MatMulNBits').length;
      assert.equal(nbits, c.dtype === 'fp32' ? 0 : 2 * 7 + 1, 'every projection and the lm_head are 4-bit');
      assert.ok(!nodes.some((n) => n.name.includes('self_attn')), 'no torch.onnx-style names');
    });
  }
});

describe('probe-random-tiny-gqa through VisionLanguageModel.load', () => {
  const models = new Map<GraphDtype, VisionLanguageModel>();
  let eager: VisionLanguageModel;
  before(async () => {
    const dir = probeModelDir('probe-random-tiny-gqa');
    for (const c of DTYPES) models.set(c.dtype, await VisionLanguageModel.load(dir, { dtype: c.dtype, queryTaps: 'off' }));
    eager = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'), { queryTaps: 'off' });
  });
  after(async () => {
    for (const m of models.values()) await m.dispose();
    await eager?.dispose();
  });

  for (const c of DTYPES) {
    it(`${c.dtype}: decoder info, logits rows for all / last / none, and streamed prefill = full prefill within ${c.tolerance}`, async (t) => {
      const model = models.get(c.dtype)!;
      const info = model.decoder.info;
      assert.equal(info.hasPositionIds, false);
      assert.equal(info.hasNumLogitsToKeep, true);
      assert.equal(info.type, c.kv);
      assert.equal(info.embedType, 'float32');
      const embeds = await model.embed(randomTokenIds(6, 2));
      for (const [logits, rows] of [['all', 6], ['last', 1], ['none', 0]] as const) {
        const out = await model.decoder.step({ inputsEmbeds: embeds, past: model.decoder.emptyCache(), logits });
        assert.equal(out.logitRows, rows, logits);
        assert.equal(out.logits.length, rows * info.vocabSize);
        assert.equal(out.present.length, 6);
      }
      const { full, streamed } = await fullAndStreamed(model, randomTokenIds(20, 7), 12);
      const diff = maxAbsDiff(streamed, full);
      t.diagnostic(`${c.dtype}: max |streamed - full| = ${diff.toExponential(2)}`);
      assert.ok(diff <= c.tolerance, `max |streamed - full| = ${diff}`);
    });
  }

  it('negative control: a past that lost one token changes the logits (the exactness check can fail)', async (t) => {
    const model = models.get('fp32')!;
    const embeds = await model.embed(randomTokenIds(12, 7));
    const prefill = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, 11), past: model.decoder.emptyCache() });
    const short = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 1, 11), past: model.decoder.emptyCache() });
    const right = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 11, 12), past: prefill.present, logits: 'last' });
    const wrong = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 11, 12), past: short.present, logits: 'last' });
    const diff = maxAbsDiff(right.logits, wrong.logits);
    t.diagnostic(`one token missing from the past: max diff ${diff.toExponential(2)}`);
    assert.ok(diff > 1e-2, `diff ${diff}`);
  });

  it('fp32: same logits as the eager probe-random-tiny (same weights; RoPE inside GroupQueryAttention at mask-derived positions)', async (t) => {
    const model = models.get('fp32')!;
    const ids = randomTokenIds(16, 5);
    const a = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache() });
    const b = await eager.decoder.step({ inputsEmbeds: await eager.embed(ids), past: eager.decoder.emptyCache() });
    const diff = maxAbsDiff(a.logits, b.logits);
    // And after a past: the GQA graph places the new tokens at P.. by itself, the eager one by position_ids.
    const pa = await model.decoder.step({ inputsEmbeds: await model.embed(ids.slice(0, 10)), past: model.decoder.emptyCache(), logits: 'none' });
    const pb = await eager.decoder.step({ inputsEmbeds: await eager.embed(ids.slice(0, 10)), past: eager.decoder.emptyCache(), logits: 'none' });
    const na = await model.decoder.step({ inputsEmbeds: await model.embed(ids.slice(10)), past: pa.present });
    const nb = await eager.decoder.step({ inputsEmbeds: await eager.embed(ids.slice(10)), past: pb.present });
    const diffPast = maxAbsDiff(na.logits, nb.logits);
    const keyDiff = maxAbsDiff(toFloat32(na.present.layers[1]!.key), toFloat32(nb.present.layers[1]!.key));
    t.diagnostic(`|gqa - eager| logits ${diff.toExponential(2)}, after a past ${diffPast.toExponential(2)}, layer-1 keys ${keyDiff.toExponential(2)}`);
    assert.ok(diff <= 1e-4 && diffPast <= 1e-4 && keyDiff <= 1e-4, 'fused and eager graphs agree');
  });

  it('q4 / q4f16 track fp32 (4-bit weights: close, not equal)', async (t) => {
    const ids = randomTokenIds(16, 5);
    const ref = await models.get('fp32')!.decoder.step({ inputsEmbeds: await models.get('fp32')!.embed(ids), past: models.get('fp32')!.decoder.emptyCache() });
    const lines: string[] = [];
    for (const dtype of ['q4', 'q4f16'] as const) {
      const model = models.get(dtype)!;
      const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache() });
      const rel = relativeRms(out.logits, ref.logits);
      lines.push(`${dtype}: relative rms vs fp32 ${rel.toFixed(3)}`);
      assert.ok(rel < 0.3 && rel > 1e-3, `${dtype}: relative rms ${rel}`);
    }
    t.diagnostic(lines.join('; '));
  });

  it('positions: compact positions are accepted, any other refused; a mask with padding is refused', async () => {
    const model = models.get('fp32')!;
    const embeds = await model.embed(randomTokenIds(8, 3));
    const first = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, 5), past: model.decoder.emptyCache(), positions: [0, 1, 2, 3, 4] });
    const ok = await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 5, 8), past: first.present, positions: [5, 6, 7] });
    assert.equal(ok.present.length, 8);
    const badInput = (pattern: RegExp) => (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT' && pattern.test(e.message);
    await assert.rejects(
      model.decoder.step({ inputsEmbeds: sliceRows(embeds, 5, 8), past: first.present, positions: [0, 1, 2] }),
      badInput(/no position_ids input: its new tokens sit at positions 5\.\.7 .*position 0 was asked/),
    );
    await assert.rejects(
      model.decoder.step({ inputsEmbeds: sliceRows(embeds, 5, 8), past: first.present, positions: [5, 6, 9] }),
      badInput(/position 9 was asked for token 2/),
    );
    await assert.rejects(
      model.decoder.step({ inputsEmbeds: sliceRows(embeds, 5, 8), past: first.present, attentionMask: [1, 1, 0, 1, 1, 1, 1, 1] }),
      badInput(/cannot take a mask with padding \(slot 2 is 0\)/),
    );
  });

  it('a context past the cos/sin caches (max_position_embeddings 16384) is a clear BAD_INPUT, the last position that fits works', async () => {
    const model = models.get('fp32')!;
    const embeds = await model.embed([5]);
    const fits = await model.decoder.step({ inputsEmbeds: embeds, past: emptyKvCache(model.decoder.info, 16383), logits: 'last' });
    assert.equal(fits.present.length, 16384);
    await assert.rejects(
      model.decoder.step({ inputsEmbeds: embeds, past: emptyKvCache(model.decoder.info, 16384), logits: 'last' }),
      (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT' && /shorter than this call's 16385 tokens .*max_position_embeddings \(16384\)/.test(e.message),
    );
  });

  it("num_logits_to_keep: 0 for 'all', 1 for 'last' and for 'none' (never all rows when none are wanted)", async () => {
    const model = models.get('q4')!;
    const graph = model.decoder.graph;
    const fed: bigint[] = [];
    const run = graph.run.bind(graph);
    graph.run = (feeds, fetches, into) => {
      fed.push((feeds.num_logits_to_keep!.data as BigInt64Array)[0]!);
      return run(feeds, fetches, into);
    };
    try {
      const embeds = await model.embed(randomTokenIds(5, 4));
      for (const logits of ['all', 'last', 'none', undefined] as const) {
        await model.decoder.step({ inputsEmbeds: embeds, past: model.decoder.emptyCache(), ...(logits ? { logits } : {}) });
      }
    } finally {
      graph.run = run;
    }
    assert.deepEqual(fed, [0n, 1n, 1n, 0n]);
  });

  it('RoPE self-check: the graph rotates as kernels/rope does; a config with another rope_theta is refused', async (t) => {
    const measured = await models.get('fp32')!.decoder.verifyImplicitRope();
    const half = await models.get('q4f16')!.decoder.verifyImplicitRope();
    t.diagnostic(`relative key difference at position 255: fp32 ${measured!.toExponential(2)}, q4f16 ${half!.toExponential(2)}`);
    assert.ok(measured! <= 1e-5);
    assert.equal(await eager.decoder.verifyImplicitRope(), undefined, 'graphs with position_ids are rotated by the caller');

    // The same graphs with a config.json that claims another theta: streaming would re-rotate keys wrongly.
    const source = probeModelDir('probe-random-tiny-gqa');
    const lying = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-gqa-theta-'));
    try {
      for (const entry of fs.readdirSync(source)) {
        if (entry !== 'config.json') fs.symlinkSync(path.join(source, entry), path.join(lying, entry));
      }
      const config = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8')) as { text_config: { rope_theta: number } };
      config.text_config.rope_theta = 10000;
      fs.writeFileSync(path.join(lying, 'config.json'), JSON.stringify(config));
      const refused = (e: unknown) => isVigilError(e) && e.code === 'UNSUPPORTED_MODEL' && /applies RoPE inside the graph .*rope_theta 10000/.test(e.message);
      await assert.rejects(VisionLanguageModel.load(lying, { queryTaps: 'off' }), refused, 'refused at load');
      // A Decoder made without VisionLanguageModel.load runs the check before its first step.
      const graph = await OnnxGraph.open(decoderFile(source, 'fp32'));
      try {
        const decoder = new Decoder(graph, loadModelConfig(lying));
        const embeds = new ort.Tensor('float32', new Float32Array(2 * decoder.info.hiddenSize).fill(0.5), [1, 2, decoder.info.hiddenSize]);
        await assert.rejects(decoder.step({ inputsEmbeds: embeds, past: decoder.emptyCache() }), refused, 'refused at the first step');
      } finally {
        await graph.dispose();
      }
    } finally {
      fs.rmSync(lying, { recursive: true, force: true });
    }
  });
});

function randomFeatures(rows: number, hidden: number, seed: number): ort.Tensor {
  const random = mulberry32(seed);
  return new ort.Tensor('float32', Float32Array.from({ length: rows * hidden }, () => (random() * 2 - 1) * 0.1), [rows, hidden]);
}

function concatEmbeds(parts: ort.Tensor[]): ort.Tensor {
  const hidden = parts[0]!.dims[2]!;
  const data = new Float32Array(parts.reduce((n, p) => n + (p.data as Float32Array).length, 0));
  let offset = 0;
  for (const p of parts) {
    data.set(p.data as Float32Array, offset);
    offset += (p.data as Float32Array).length;
  }
  return new ort.Tensor('float32', data, [1, data.length / hidden, hidden]);
}

/**
 * The engine's path on a do_rotary graph: each frame encoded over [prefix | earlier frames], its keys
 * un-rotated from `present` (post-RoPE, placed by the graph at P..) and stored pre-RoPE, re-rotated to
 * compact positions at assembly; the question over that context must give the logits of one full
 * prefill of the same tokens (as test/engine/streamExactness.test.ts checks for the eager probes).
 */
describe('probe-random-tiny-gqa: streaming encode exactness (pre-RoPE storage, re-rotation to compact positions)', () => {
  const CASES: Array<{ dtype: GraphDtype; tolerance: number }> = [
    { dtype: 'fp32', tolerance: 1e-4 },
    { dtype: 'q4', tolerance: 3e-2 },
    // float16 KV: keys are un-rotated in float32 and re-rotated, then rounded to float16 again.
    { dtype: 'q4f16', tolerance: 2e-2 },
  ];
  for (const c of CASES) {
    it(`${c.dtype}: question logits over the streamed context = one full prefill within ${c.tolerance}; window 1 differs`, async (t) => {
      const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny-gqa'), { dtype: c.dtype, queryTaps: 'off' });
      try {
        const run = async (windowFrames: number) => {
          const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames });
          const frameEmbeds: ort.Tensor[] = [];
          for (let i = 0; i < 5; i++) {
            const t = 3 * i + 0.5;
            const features = randomFeatures(model.tokensPerImage, model.decoder.info.hiddenSize, 100 + i);
            await stream.encodeFeatures(features, t);
            frameEmbeds.push(await model.embedWithImages(stream.frameTokenIds(t), features));
          }
          const questionIds = model.tokenizer.encode(stream.format.question('What color was the square on the red screen?'));
          const questionEmbeds = await model.embed(questionIds);
          const context = stream.assembleContext(stream.window.contextChunks);
          const streamed = await model.decoder.step({ inputsEmbeds: questionEmbeds, past: stream.toCache(context) });
          const all = concatEmbeds([await model.embed(model.tokenizer.encode(stream.format.prefix)), ...frameEmbeds, questionEmbeds]);
          const full = await model.decoder.step({ inputsEmbeds: all, past: model.decoder.emptyCache() });
          const vocab = model.decoder.info.vocabSize;
          return maxAbsDiff(streamed.logits, full.logits, (all.dims[1]! - questionIds.length) * vocab, questionIds.length * vocab);
        };
        const exact = await run(100);
        const evicted = await run(1);
        t.diagnostic(`${c.dtype}: max |streamed - full| ${exact.toExponential(2)}; window 1: ${evicted.toExponential(2)}`);
        assert.ok(exact <= c.tolerance, `diff ${exact}`);
        assert.ok(evicted > 3 * c.tolerance && evicted > 0.1, `control diff ${evicted}`);
      } finally {
        await model.dispose();
      }
    });
  }
});

/** The SmolVLM2-256M geometry (30 layers, 9/3 heads of 64, full rotary): also built by queryTapGqaProbe.test.ts. */
describe('probe-random-smolvlm2-256m-gqa (real geometry)', () => {
  for (const c of DTYPES) {
    it(`${c.dtype}: loads, RoPE self-check passes at 64 rotary dims, streamed prefill = full prefill`, async (t) => {
      const model = await VisionLanguageModel.load(probeModelDir('probe-random-smolvlm2-256m-gqa'), { dtype: c.dtype, queryTaps: 'off' });
      try {
        const info = model.decoder.info;
        assert.deepEqual([info.numLayers, info.numHeads, info.numKvHeads, info.headDim, info.type], [30, 9, 3, 64, c.kv]);
        const rope = await model.decoder.verifyImplicitRope();
        const { full, streamed } = await fullAndStreamed(model, randomTokenIds(10, 7), 6);
        const diff = maxAbsDiff(streamed, full);
        t.diagnostic(`${c.dtype}: RoPE check ${rope!.toExponential(2)}; max |streamed - full| ${diff.toExponential(2)}`);
        assert.ok(diff <= c.tolerance, `diff ${diff}`);
      } finally {
        await model.dispose();
      }
    });
  }
});

describe('probe-random-tiny-gqa variants: q_norm and use_cache_branch', () => {
  it('q_norm: loads, streamed = full prefill, and q_norm changes the logits', async (t) => {
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny-gqa-qnorm'), { queryTaps: 'off' });
    const plain = await VisionLanguageModel.load(probeModelDir('probe-random-tiny-gqa'), { queryTaps: 'off' });
    try {
      const nodes = graphNodes(decoderFile(probeModelDir('probe-random-tiny-gqa-qnorm'), 'fp32')).map((n) => n.name);
      assert.ok(nodes.some((n) => n.startsWith('/model/layers.0/attn/q_norm/')) && nodes.some((n) => n.startsWith('/model/layers.0/attn/k_norm/')));
      const { full, streamed } = await fullAndStreamed(model, randomTokenIds(20, 7), 12);
      const diff = maxAbsDiff(streamed, full);
      const ids = randomTokenIds(8, 1);
      const a = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache() });
      const b = await plain.decoder.step({ inputsEmbeds: await plain.embed(ids), past: plain.decoder.emptyCache() });
      t.diagnostic(`max |streamed - full| ${diff.toExponential(2)}; |qnorm - plain| ${maxAbsDiff(a.logits, b.logits).toExponential(2)}`);
      assert.ok(diff <= 1e-4);
      assert.ok(maxAbsDiff(a.logits, b.logits) > 1e-2);
    } finally {
      await model.dispose();
      await plain.dispose();
    }
  });

  it('use_cache_branch: fed (P > 0), streamed = full prefill; a wrong flag drops the past', async (t) => {
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny-gqa-cache-branch'), { queryTaps: 'off' });
    try {
      assert.equal(model.decoder.info.hasUseCacheBranch, true);
      const { full, streamed } = await fullAndStreamed(model, randomTokenIds(20, 7), 12);
      const diff = maxAbsDiff(streamed, full);
      t.diagnostic(`max |streamed - full| ${diff.toExponential(2)}`);
      assert.ok(diff <= 1e-4);
      // The graph really reads the flag: false with a non-empty past is not the cached branch.
      const graph = model.decoder.graph;
      const run = graph.run.bind(graph);
      graph.run = (feeds, fetches, into) => run({ ...feeds, use_cache_branch: new ort.Tensor('bool', Uint8Array.of(0), [1]) }, fetches, into);
      try {
        const embeds = await model.embed(randomTokenIds(6, 9));
        const past = (await model.decoder.step({ inputsEmbeds: sliceRows(embeds, 0, 5), past: model.decoder.emptyCache() })).present;
        await assert.rejects(model.decoder.step({ inputsEmbeds: sliceRows(embeds, 5, 6), past }));
      } finally {
        graph.run = run;
      }
    } finally {
      await model.dispose();
    }
  });
});

describe('probe-needle-gqa: the needle circuit on a model-builder-style decoder', () => {
  let model: VisionLanguageModel;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle-gqa'));
  });
  after(async () => model?.dispose());

  async function answer(stream: RamStream, color: string, context: readonly FrameChunk[]): Promise<string> {
    const ids = model.tokenizer.encode(stream.format.question(`What color was the square on the ${color} screen?`));
    const past = stream.toCache(stream.assembleContext(context));
    const result = await generate(model, { inputsEmbeds: await model.embed(ids), past }, { maxNewTokens: 4 });
    assert.equal(result.stopReason, 'eos');
    return result.text;
  }

  it('streamed through a sliding window (pre-RoPE chunks re-rotated to compact positions): evicted needle -> unknown, its chunk back -> the color', async (t) => {
    const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames: 8 });
    const haystack = await model.encodeImages(await preprocessFrame(model, await haystackFrame({ sigma: 30 })));
    let needle: FrameChunk | undefined;
    for (let i = 0; i < 30; i++) {
      const encoded = i === 6
        ? await stream.encodeFrame(await preprocessFrame(model, await needleFrame({ background: 'magenta', square: 'white' })), i)
        : await stream.encodeFeatures(haystack, i);
      if (i === 6) needle = encoded.chunk;
    }
    const window = stream.window.contextChunks;
    assert.ok(!window.includes(needle!), 'the needle left the window');
    assert.equal(await answer(stream, 'magenta', window), ' unknown');
    assert.equal(await answer(stream, 'magenta', [...window, needle!]), ' white');
    assert.equal(await answer(stream, 'cyan', [...window, needle!]), ' unknown');
    t.diagnostic(`query taps: ${model.decoder.info.queryTapNames ? 'found' : 'none'}`);
  });
});

describe('V-NIAH on probe-needle-gqa (vigil eval vniah)', () => {
  it('fp32, q4 and q4f16 decoders: rekv answers every needle (recall 1) and the control; the window loses the needle that left it', async (t) => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-gqa-vniah-'));
    try {
      const source = probeModelDir('probe-needle-gqa');
      for (const dtype of ['fp32', 'q4', 'q4f16'] as const) {
        // eval vniah loads the folder's default dtype: a copy whose config.json names this one.
        const folder = path.join(scratch, `model-${dtype}`);
        fs.mkdirSync(folder);
        for (const entry of fs.readdirSync(source)) {
          if (entry !== 'config.json') fs.symlinkSync(path.join(source, entry), path.join(folder, entry));
        }
        const config = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
        config['transformers.js_config']!.dtype = dtype;
        fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(config));
        const run = await runVigil(
          ['eval', 'vniah', '--lengths', '1', '--depths', '50,100', '--modes', 'rekv,window', '--dtypes', 'float32', '--retrieve', '4', '--repeats', '1',
            '--model', folder, '--out', path.join(scratch, `out-${dtype}`), '--json'],
          { VIGIL_CACHE_DIR: path.join(scratch, 'cache') },
        );
        assert.equal(run.code, 0, run.stderr);
        const cells = (JSON.parse(run.stdout) as VniahResults).cells;
        t.diagnostic(`${dtype}: ${cells.map((c) => `${c.mode} ${c.kind} ${c.depthPct ?? '-'}: '${c.answer}' (recall ${c.recall ?? '-'})`).join('; ')}`);
        for (const c of cells.filter((x) => x.mode === 'rekv')) {
          assert.equal(c.correct, true, `${dtype} rekv ${c.kind} ${c.depthPct}: '${c.answer}' for '${c.expected}'`);
          if (c.kind === 'needle') assert.equal(c.recall, 1);
        }
        const window50 = cells.find((c) => c.mode === 'window' && c.depthPct === 50)!;
        assert.equal(window50.answer, 'unknown', `${dtype}: the 50% needle left the 16-frame window`);
        assert.equal(cells.find((c) => c.mode === 'window' && c.depthPct === 100)!.correct, true);
      }
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});
