/**
 * Query taps found by the decoder's structure (issue 16): the attention node of each layer, the query
 * it rotates, before RoPE and after q_norm, a Slice of packed QKV, typed from the graph. Each graph
 * style is written with Vigil's writer, the surgery copy is loaded in onnxruntime, and the tapped
 * values are compared with the queries computed here from the weights. Failures fall back to the
 * stock graph, say why, and are cached per surgery version.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { planQueryTaps, planQueryTapsForFile } from '../../src/model/onnx/attentionStructure.js';
import { readGraphStructure, readGraphStructureFromFile } from '../../src/model/onnx/onnxStructure.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { QUERY_TAP_SURGERY_VERSION, queryTapCacheEntry } from '../../src/model/onnx/queryTapSurgery.js';
import { OnnxGraph } from '../../src/model/onnxGraph.js';
import { queryTapName } from '../../src/model/probe/decoderGraph.js';
import { openDecoderWithQueryTaps } from '../../src/model/queryTapLoader.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { float32ToFloat16, float16ToFloat32 } from '../../kernels/fp16.js';
import { toFloat32 } from '../../src/model/tensors.js';
import { referenceQueries, TAP_GEOMETRY, type TapTestGraph, writeEagerDecoder, writeMhaRotaryDecoder, writePackedGqaDecoder } from '../helpers/tapTestGraphs.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { seededData } from '../helpers/seededData.js';

const { hidden: H, heads, headDim: D, layers } = TAP_GEOMETRY;
const SEQ = 5;

let scratch: string;
let cacheDir: string;

function feeds(graph: OnnxGraph, x: Float32Array, firstPosition: number): Record<string, ort.Tensor> {
  const past = graph.input('past_key_values.0.key');
  const kvType = past.type as 'float32' | 'float16';
  const dims = [1, past.shape[1] as number, 0, D];
  const empty = () => (kvType === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims));
  const f: Record<string, ort.Tensor> = {
    inputs_embeds: new ort.Tensor('float32', x, [1, SEQ, H]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(SEQ).fill(1n), [1, SEQ]),
  };
  if (graph.hasInput('position_ids')) f.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: SEQ }, (_, i) => BigInt(firstPosition + i)), [1, SEQ]);
  for (let i = 0; i < layers; i++) {
    f[`past_key_values.${i}.key`] = empty();
    f[`past_key_values.${i}.value`] = empty();
  }
  return f;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Loads with taps, runs, and checks layer 0's tap against the queries computed from the weights; returns the tap. */
async function checkTaps(graph: TapTestGraph, expectState: 'surgery' | 'exposed', tolerance: number): Promise<{ tap: ort.Tensor; tapNames: string[] }> {
  const loaded = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir);
  const stock = await OnnxGraph.open(graph.file);
  try {
    assert.equal(loaded.status.state, expectState, loaded.status.reason);
    assert.equal(loaded.tapNames?.length, layers);
    const x = seededData(SEQ * H, 42, 1);
    // The input the graph actually sees: float16 graphs round inputs_embeds first.
    const seen = graph.internal === 'float16' ? float16ToFloat32(float32ToFloat16(x)) : x;
    const out = await loaded.graph.run(feeds(loaded.graph, x, 7));
    const tap = out[loaded.tapNames![0]!]!;
    assert.equal(tap.type, graph.internal, 'the tap has the type of the value it exposes');
    assert.equal(tap.size, SEQ * heads * D);
    const expected = referenceQueries(graph, seen, SEQ);
    assert.ok(maxAbsDiff(toFloat32(tap), expected) <= tolerance, `tap differs from the pre-RoPE query by ${maxAbsDiff(toFloat32(tap), expected)}`);
    // The surgery adds outputs only: the model's own outputs are unchanged, bit for bit.
    const plain = await stock.run(feeds(stock, x, 7));
    assert.deepEqual(toFloat32(out.logits!), toFloat32(plain.logits!));
    assert.deepEqual(toFloat32(out['present.1.key']!), toFloat32(plain['present.1.key']!));
    for (const name of loaded.tapNames!) assert.ok(out[name]!.size === SEQ * heads * D);
    return { tap, tapNames: loaded.tapNames! };
  } finally {
    await loaded.graph.dispose();
    await stock.dispose();
  }
}

describe('query taps found by structure', () => {
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-tap-structure-'));
    cacheDir = path.join(scratch, 'cache');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('eager attention under names no exporter uses: found from the graph, surgery loads, taps equal x·Wq', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'eager.onnx'), 1, { scope: (i) => `/blocks.${i}/attention` });
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    assert.equal(plan.numLayers, layers);
    for (const [i, l] of plan.layers.entries()) {
      assert.equal(l.layer, i);
      assert.equal(l.status, 'found');
      assert.equal(l.attentionOp, 'eager');
      assert.equal(l.attentionNode, `/blocks.${i}/attention/scores/MatMul`);
      assert.equal(l.rotary, 'rotate_half');
      assert.equal(l.tensorName, `/blocks.${i}/attention/wq/MatMul_output_0`);
      assert.equal(l.dtype, 'float32');
      assert.equal(l.qNorm, false);
      assert.equal(l.exposed, false);
    }
    await checkTaps(graph, 'surgery', 1e-4);
    // Loaded again: from the cache, the same taps.
    const again = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir);
    try {
      assert.equal(again.status.state, 'surgery');
      assert.equal(again.status.plan, undefined, 'taken from the cache, not planned again');
      assert.deepEqual(again.tapNames, plan.layers.map((l) => l.tensorName));
    } finally {
      await again.graph.dispose();
    }
  });

  it('torch.onnx export of HF sdpa attention (q bias, repeat_kv by Expand, q and K^T scaled from Shape): the biased projection', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'sdpa.onnx'), 9, { scope: (i) => `/model/layers.${i}/self_attn`, torchSdpa: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    assert.deepEqual(
      plan.layers.map((l) => [l.attentionOp, l.attentionNode, l.tensorName]),
      plan.layers.map((l) => ['eager', `/model/layers.${l.layer}/self_attn/scores/MatMul`, `/model/layers.${l.layer}/self_attn/q_proj/Add_output_0`]),
    );
    await checkTaps(graph, 'surgery', 1e-4);
  });

  it('q_norm before RoPE: the tap is the normalized query, not the projection', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'qnorm.onnx'), 2, { scope: (i) => `/model/layers.${i}/self_attn`, qNorm: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    for (const l of plan.layers) {
      assert.equal(l.qNorm, true);
      assert.equal(l.tensorName, `/model/layers.${l.layer}/self_attn/norm_q/Mul_output_0`);
    }
    const { tap } = await checkTaps(graph, 'surgery', 1e-4);
    // Negative control: the raw projection (what name matching on q_proj would tap) is far from it.
    const raw = referenceQueries({ ...graph, qNormWeight: undefined }, seededData(SEQ * H, 42, 1), SEQ);
    assert.ok(maxAbsDiff(toFloat32(tap), raw) > 0.1);
  });

  it('q_norm after the heads transpose (Gemma-3 eager): the normalized [B,heads,S,D] query, transposed back by the surgery', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'qnorm-bhsd.onnx'), 10, { scope: (i) => `/model/layers.${i}/self_attn`, qNorm: true, qNormAfterTranspose: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    for (const l of plan.layers) {
      assert.equal(l.qNorm, true);
      assert.deepEqual(l.transpose, { source: `/model/layers.${l.layer}/self_attn/norm_q/Mul_output_0` });
      assert.equal(l.tensorName, `/vigil/query_taps/layers.${l.layer}/q_transpose`);
    }
    await checkTaps(graph, 'surgery', 1e-4);
  });

  it('GroupQueryAttention with packed QKV and RoPE inside (model builder style): a Slice of the query columns', async () => {
    const graph = writePackedGqaDecoder(path.join(scratch, 'gqa-packed.onnx'), 3);
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    for (const l of plan.layers) {
      assert.equal(l.attentionOp, 'GroupQueryAttention');
      assert.equal(l.attentionNode, `/model/layers.${l.layer}/attn/GroupQueryAttention`);
      assert.equal(l.rotary, 'inside');
      assert.deepEqual(l.slice, { source: `/model/layers.${l.layer}/attn/qkv_proj/MatMul_output_0`, width: heads * D });
    }
    await checkTaps(graph, 'surgery', 1e-4);
  });

  it('MultiHeadAttention with a RotaryEmbedding op before it: the rotary op\'s input', async () => {
    const graph = writeMhaRotaryDecoder(path.join(scratch, 'mha.onnx'), 8);
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    assert.deepEqual(
      plan.layers.map((l) => [l.attentionOp, l.rotary, l.tensorName]),
      plan.layers.map((l) => ['MultiHeadAttention', 'RotaryEmbedding', `/transformer/h.${l.layer}/query/MatMul_output_0`]),
    );
    await checkTaps(graph, 'surgery', 1e-4);
  });

  it('GroupQueryAttention normalizing q inside the op (q_norm_weight input): falls back, since no graph value is the query it rotates', () => {
    // Plan only: onnxruntime's CPU GroupQueryAttention does not take the fused norm.
    const graph = writePackedGqaDecoder(path.join(scratch, 'gqa-fused-norm.onnx'), 3, { fusedQNorm: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.equal(plan.complete, false);
    assert.match(plan.reason, /^layer 0: GroupQueryAttention '\/model\/layers.0\/attn\/GroupQueryAttention' applies q_norm inside the op .*\(2 of 2 layers fell back\)$/);
    assert.deepEqual(plan.layers.map((l) => [l.status, l.attentionOp]), [['fallback', 'GroupQueryAttention'], ['fallback', 'GroupQueryAttention']]);
  });

  it('float16 internals behind float32 inputs_embeds: float16 taps (not the inputs_embeds type)', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'half.onnx'), 4, { scope: (i) => `/h.${i}/attn`, float16: true, qNorm: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.ok(plan.complete, plan.reason);
    assert.ok(plan.layers.every((l) => l.dtype === 'float16'));
    const loaded = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir);
    try {
      assert.equal(loaded.graph.input('inputs_embeds').type, 'float32');
      assert.equal(loaded.graph.output(loaded.tapNames![0]!).type, 'float16');
    } finally {
      await loaded.graph.dispose();
    }
    // Half rounding of x, W and the products: a few 1e-3 on values of order 1.
    await checkTaps(graph, 'surgery', 2e-2);
    // RoPE in float32 on the float16 query: the walk crosses the Cast back to the float16 projection.
    const upcast = writeEagerDecoder(path.join(scratch, 'half-rope32.onnx'), 4, { scope: (i) => `/h.${i}/attn`, float16: true, ropeInFloat32: true });
    const upcastPlan = planQueryTapsForFile(upcast.file);
    assert.ok(upcastPlan.complete, upcastPlan.reason);
    assert.deepEqual(upcastPlan.layers.map((l) => [l.tensorName, l.dtype]), upcastPlan.layers.map((l) => [`/h.${l.layer}/attn/wq/MatMul_output_0`, 'float16']));
    await checkTaps(upcast, 'surgery', 2e-2);
  });

  it('no rotary embedding: falls back to the stock graph, says why, and caches the verdict for this surgery version', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'norope.onnx'), 5, { scope: (i) => `/l${i}`, noRope: true });
    const plan = planQueryTapsForFile(graph.file);
    assert.equal(plan.complete, false);
    assert.match(plan.reason, /layer 0: no rotary embedding/);
    const first = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir);
    await first.graph.dispose();
    assert.equal(first.status.state, 'fallback');
    assert.equal(first.tapNames, undefined);
    assert.equal(first.graph.file, graph.file);
    assert.match(first.status.reason!, /no rotary embedding/);
    const second = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir);
    await second.graph.dispose();
    assert.match(second.status.reason!, /\(cached\)$/);
  });

  it('onnxruntime refusing the surgery copy: stock graph, failure cached; a later surgery version starts afresh', async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'refused.onnx'), 6, { scope: (i) => `/r${i}` });
    const entry = queryTapCacheEntry(graph.file, cacheDir);
    let opens = 0;
    const refuseCopies = (file: string) => {
      opens++;
      if (file.startsWith(cacheDir)) {
        return Promise.reject(new Error('Type Error: Type (tensor(float)) of output arg (/r0/wq/MatMul_output_0) does not match expected type (tensor(float16))'));
      }
      return OnnxGraph.open(file);
    };
    const first = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir, refuseCopies);
    await first.graph.dispose();
    assert.equal(first.status.state, 'fallback');
    assert.match(first.status.reason!, /onnxruntime refused the graph with query taps: Type Error/);
    assert.equal(first.graph.file, graph.file);
    assert.equal(opens, 2, 'the copy, then the stock graph');
    const record = JSON.parse(fs.readFileSync(path.join(entry, 'taps.json'), 'utf8')) as { state: string; version: number };
    assert.deepEqual([record.state, record.version], ['failed', QUERY_TAP_SURGERY_VERSION]);
    assert.deepEqual(fs.readdirSync(entry), ['taps.json'], 'the refused copy is removed');
    // Not retried by this version...
    opens = 0;
    const second = await openDecoderWithQueryTaps(graph.file, 'auto', cacheDir, refuseCopies);
    await second.graph.dispose();
    assert.equal(opens, 1);
    assert.match(second.status.reason!, /\(cached\)$/);
    // ...but a fixed (later) surgery version has its own cache entry, and a record of another version is ignored.
    assert.notEqual(queryTapCacheEntry(graph.file, cacheDir, QUERY_TAP_SURGERY_VERSION + 1), entry);
    fs.writeFileSync(path.join(entry, 'taps.json'), JSON.stringify({ ...record, version: QUERY_TAP_SURGERY_VERSION - 1 }));
    await checkTaps(graph, 'surgery', 1e-4);
  });

  it("'off' loads the stock graph without planning", async () => {
    const graph = writeEagerDecoder(path.join(scratch, 'off.onnx'), 7, { scope: (i) => `/o${i}` });
    const loaded = await openDecoderWithQueryTaps(graph.file, 'off', path.join(scratch, 'unused-cache'));
    await loaded.graph.dispose();
    assert.deepEqual(loaded.status, { state: 'off' });
    assert.equal(loaded.tapNames, undefined);
    assert.equal(fs.existsSync(path.join(scratch, 'unused-cache')), false);
  });
});

describe('a model folder whose decoder has no findable taps', () => {
  it('loads the stock decoder, reports fallback with the reason and warns; retrieval then has no taps', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-tap-fallback-'));
    const cache = process.env.VIGIL_CACHE_DIR;
    try {
      // probe-random-tiny's folder with its decoder replaced by a same-geometry graph without RoPE.
      fs.cpSync(probeModelDir('probe-random-tiny'), path.join(dir, 'model'), { recursive: true });
      const decoder = path.join(dir, 'model', 'onnx', 'decoder_model_merged.onnx');
      writeEagerDecoder(decoder, 11, { scope: (i) => `/x${i}`, noRope: true });
      process.env.VIGIL_CACHE_DIR = path.join(dir, 'cache');
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      const model = await VisionLanguageModel.load(path.join(dir, 'model'));
      try {
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(model.queryTaps.state, 'fallback');
        assert.match(model.queryTaps.reason!, /no rotary embedding/);
        assert.equal(model.decoder.graph.file, decoder);
        assert.equal(model.decoder.info.queryTapNames, undefined);
        assert.ok(warnings.some((w) => (w as Error & { code?: string }).code === 'VIGIL_QUERY_TAPS' && /no rotary embedding/.test(w.message)));
        await assert.rejects(model.decoder.step({ inputsEmbeds: await model.embed([1, 2]), past: model.decoder.emptyCache(), queries: true }), /exposes no query taps/);
      } finally {
        process.off('warning', onWarning);
        await model.dispose();
      }
    } finally {
      if (cache === undefined) delete process.env.VIGIL_CACHE_DIR;
      else process.env.VIGIL_CACHE_DIR = cache;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('query taps of the probe models, by structure', () => {
  // Eager float32 (probe-needle), fused GroupQueryAttention with RoPE outside (probe-random-tiny), eager float16.
  for (const [name, file, op, dtype] of [
    ['probe-needle', 'decoder_model_merged.onnx', 'eager', 'float32'],
    ['probe-random-tiny', 'decoder_model_merged.onnx', 'GroupQueryAttention', 'float32'],
    ['probe-random-tiny-fp16', 'decoder_model_merged_fp16.onnx', 'eager', 'float16'],
  ] as const) {
    it(`${name}: the same taps as before (the q projections the graph already outputs)`, () => {
      const plan = planQueryTapsForFile(path.join(probeModelDir(name), 'onnx', file));
      assert.ok(plan.complete, plan.reason);
      assert.deepEqual(plan.layers.map((l) => l.tensorName), plan.layers.map((l) => queryTapName(l.layer)));
      assert.ok(plan.layers.every((l) => l.exposed && l.attentionOp === op && l.dtype === dtype && l.rotary === 'rotate_half' && !l.qNorm));
    });
  }

  it('the structure read from disk (weight bytes seeked over) equals the one decoded from the whole file', () => {
    for (const [name, file] of [
      ['probe-random-tiny', 'decoder_model_merged.onnx'], // 13 MB of inline weights
      ['probe-random-tiny', 'vision_encoder.onnx'],
      ['probe-random-tiny-gqa', 'decoder_model_merged_q4f16.onnx'], // MatMulNBits, float16
      ['probe-random-tiny-gqa-qnorm', 'decoder_model_merged.onnx'],
    ] as const) {
      const onnx = path.join(probeModelDir(name), 'onnx', file);
      const whole = readGraphStructure(fs.readFileSync(onnx));
      const streamed = readGraphStructureFromFile(onnx);
      assert.deepEqual(streamed.nodes, whole.nodes);
      assert.deepEqual([...streamed.initializers], [...whole.initializers]);
      assert.deepEqual([...streamed.inputs], [...whole.inputs]);
      assert.deepEqual(streamed.outputs, whole.outputs);
      assert.deepEqual([...streamed.opsets], [...whole.opsets]);
      assert.deepEqual(planQueryTaps(streamed), planQueryTaps(whole));
      assert.ok(whole.nodes.length > 10 && whole.initializers.size > 3);
    }
    // External data records: a writer-made graph with weights in .onnx_data.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-structure-'));
    try {
      const external = path.join(dir, 'external.onnx');
      const writer = new OnnxModelWriter({ path: external, graphName: 'x', opset: 17, externalDataThresholdBytes: 64 });
      const x = writer.graph.input('x', 'float32', [1, 32]);
      writer.graph.output(writer.graph.op('MatMul', [x, writer.graph.initializer('w', 'float32', [32, 32], seededData(1024, 1))]), 'y', 'float32', [1, 32]);
      writer.save();
      const streamed = readGraphStructureFromFile(external);
      assert.deepEqual([...streamed.externalDataLocations], ['external.onnx_data']);
      assert.deepEqual([...streamed.initializers], [...readGraphStructure(fs.readFileSync(external)).initializers]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a loaded probe model reports its taps as exposed; the copy it loads adds only the kv taps', async () => {
    const dir = probeModelDir('probe-needle');
    const model = await VisionLanguageModel.load(dir);
    try {
      assert.equal(model.queryTaps.state, 'exposed');
      assert.equal(path.basename(model.decoder.graph.file), 'decoder_model_merged.onnx');
      assert.equal(path.basename(path.dirname(path.dirname(model.decoder.graph.file))), 'query-taps');
      assert.ok(model.decoder.info.kvTaps, 'the copy outputs each layer\'s new key/value rows');
      assert.deepEqual(model.decoder.info.queryTapNames, Array.from({ length: model.decoder.info.numLayers }, (_, i) => queryTapName(i)));
    } finally {
      await model.dispose();
    }
    const off = await VisionLanguageModel.load(dir, { queryTaps: 'off' });
    try {
      assert.equal(off.queryTaps.state, 'off');
      assert.equal(off.decoder.info.queryTapNames, undefined, "'off' means no taps even where the graph outputs them (no name matching left)");
    } finally {
      await off.dispose();
    }
  });
});
