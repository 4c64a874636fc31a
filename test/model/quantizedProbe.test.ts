/**
 * Int8 and 4-bit probe files (issue 19): the int8 weight quantizer against hand-computed values and
 * the DynamicQuantizeLinear -> MatMulInteger pattern against a JS reference of the ONNX spec (run by
 * onnxruntime, exact without its optimizer); the probe's `_quantized` / `_q4` vision encoder and
 * decoder within a stated distance of fp32; query taps found by structure in quantized decoders
 * without tap outputs; `dtype: 'q8'` loads the needle model and it answers from its logits. The
 * quantized files are built only on request (a q8 / q4 dtype): added to a complete folder beside it,
 * the second stamp last, byte-equal to a folder built with them at once; by the CLI path too.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../../kernels/sampling.js';
import { argmaxRow, outputDifference } from '../../src/eval/outputDifference.js';
import { generate } from '../../src/model/generate.js';
import { planQueryTapsForFile } from '../../src/model/onnx/attentionStructure.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { dynamicQuantizeLinear, quantizeInt8, roundHalfEven } from '../../src/model/probe/quantizeInt8.js';
import { buildProbeFolder } from '../../src/model/probe/probeModelFolder.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import { quantizedMatMul } from '../../src/model/probe/quantizedMatMul.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { RamStream } from '../helpers/ramStream.js';

function opTypes(file: string): string[] {
  const type = modelProtoType();
  const model = type.toObject(type.decode(fs.readFileSync(file)), { defaults: true }) as { graph: { node: Array<{ op_type: string }> } };
  return model.graph.node.map((n) => n.op_type);
}

function count(items: readonly string[], value: string): number {
  return items.filter((x) => x === value).length;
}

describe('int8 weight quantizer (quantize_dynamic: symmetric int8, zero point 0)', () => {
  it('rounds half to even, as numpy rint and onnxruntime do', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, 0, -2, -2, 2, -3]);
  });

  it('per tensor and per column: scale = max|w| / 127, q = rint(w / scale), hand-computed', () => {
    const w = Float32Array.of(0.5, -1, 0, 0.25, 0.127, 0);
    const tensor = quantizeInt8(w, 2, 3, 'tensor');
    assert.deepEqual([...tensor.scales], [Math.fround(1 / 127)]);
    // 0.5 / (1/127) = 63.5 -> 64 (even); 0.25 -> 31.75 -> 32; 0.127 -> 16.13 -> 16.
    assert.deepEqual([...tensor.values], [64, -127, 0, 32, 16, 0]);
    const column = quantizeInt8(w, 2, 3, 'column');
    // An all-zero column gets scale 1 (its q are 0).
    assert.deepEqual([...column.scales], [Math.fround(0.5 / 127), Math.fround(1 / 127), 1]);
    assert.deepEqual([...column.values], [127, -127, 0, 64, 16, 0]);
    assert.deepEqual([...column.dequantized], [...column.values].map((q, i) => Math.fround(q * column.scales[i % 3]!)));
  });

  it('DynamicQuantizeLinear reference, hand-computed: range [-1, 3] -> scale 4/255, zero point 64', () => {
    const q = dynamicQuantizeLinear(Float32Array.of(-1, 0, 1.5, 3));
    assert.equal(q.scale, Math.fround(4 / 255));
    assert.equal(q.zeroPoint, 64);
    assert.deepEqual([...q.values], [0, 64, 160, 255]);
  });
});

describe('the q8 MatMul pattern in onnxruntime', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-q8-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('DynamicQuantizeLinear -> MatMulInteger (u8 x s8) -> Cast -> Mul equals the spec reference exactly; fused by the optimizer to 1e-6', async () => {
    const [K, N, rows] = [40, 24, 6];
    const random = mulberry32(3);
    const weight = Float32Array.from({ length: K * N }, () => (random() - 0.5) * 0.2);
    const x = Float32Array.from({ length: rows * K }, () => (random() - 0.3) * 4);
    const file = path.join(dir, 'q8.onnx');
    const writer = new OnnxModelWriter({ path: file, graphName: 'q8', opset: 17 });
    const g = writer.graph;
    const input = g.input('x', 'float32', [2, rows / 2, K]);
    for (const granularity of ['tensor', 'column'] as const) {
      const y = g.scope(`/${granularity}`, () => quantizedMatMul(g, input, `w_${granularity}`, weight, K, N, 'MatMul', { weights: 'q8', granularity }));
      g.output(y, `y_${granularity}`, 'float32', [2, rows / 2, N]);
    }
    writer.save();
    const ops = opTypes(file);
    assert.deepEqual(
      [count(ops, 'DynamicQuantizeLinear'), count(ops, 'MatMulInteger'), count(ops, 'Cast'), count(ops, 'MatMul')],
      [1, 2, 2, 0],
      'one activation quantization shared by both MatMulIntegers, no float MatMul',
    );

    const dq = dynamicQuantizeLinear(x);
    const feeds = { x: new ort.Tensor('float32', x, [2, rows / 2, K]) };
    for (const level of ['disabled', 'all'] as const) {
      const session = await ort.InferenceSession.create(file, { graphOptimizationLevel: level, logSeverityLevel: 3 });
      try {
        const out = await session.run(feeds);
        for (const granularity of ['tensor', 'column'] as const) {
          const q = quantizeInt8(weight, K, N, granularity);
          const expected = new Float32Array(rows * N);
          for (let r = 0; r < rows; r++) {
            for (let n = 0; n < N; n++) {
              let acc = 0;
              for (let k = 0; k < K; k++) acc += (dq.values[r * K + k]! - dq.zeroPoint) * q.values[k * N + n]!;
              const scale = Math.fround(dq.scale * q.scales[granularity === 'column' ? n : 0]!);
              expected[r * N + n] = Math.fround(acc * scale);
            }
          }
          const actual = out[`y_${granularity}`]!.data as Float32Array;
          const { maxAbs } = outputDifference(expected, actual);
          if (level === 'disabled') assert.equal(maxAbs, 0, `${granularity}: the unfused pattern is the spec's arithmetic`);
          else assert.ok(maxAbs < 1e-6, `${granularity}: fused ${maxAbs}`);
        }
      } finally {
        await session.release();
      }
    }
  });
});

describe('probe-random-tiny: _quantized and _q4 files', () => {
  it('every weight MatMul quantized; features and logits near fp32 (q8 rel L2 < 2% / 4%, q4 < 15% / 30%)', async (t) => {
    const dir = probeModelDir('probe-random-tiny', { dtype: 'q8' });
    const onnx = (file: string) => path.join(dir, 'onnx', `${file}.onnx`);
    // 1 vision layer x 6 linears + the projection; 2 decoder layers x 7 + lm_head.
    for (const [graph, expected] of [['vision_encoder', 7], ['decoder_model_merged', 15]] as const) {
      const q8 = opTypes(onnx(`${graph}_quantized`));
      assert.equal(count(q8, 'MatMulInteger'), expected, graph);
      assert.equal(count(opTypes(onnx(`${graph}_q4`)), 'MatMulNBits'), expected, graph);
      assert.equal(count(q8, 'MatMul') + expected, count(opTypes(onnx(graph)), 'MatMul'), `${graph}: only the weight MatMuls are replaced`);
    }

    const models = new Map<string, VisionLanguageModel>();
    try {
      for (const dtype of ['fp32', 'q8', 'q4'] as const) models.set(dtype, await VisionLanguageModel.load(dir, { dtype }));
      const random = mulberry32(11);
      const image = { pixelValues: Float32Array.from({ length: 3 * 64 * 64 }, () => random() * 2 - 1), count: 1, height: 64, width: 64 };
      const ids = models.get('fp32')!.tokenizer.encode('What color was the square on the red screen?');
      const outputs = new Map<string, { features: Float32Array; logits: Float32Array }>();
      for (const [dtype, model] of models) {
        const features = (await model.encodeImages(image as never)).data as Float32Array;
        const { logits } = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache() });
        outputs.set(dtype, { features, logits });
      }
      const fp32 = outputs.get('fp32')!;
      for (const [dtype, [featureLimit, logitLimit]] of [['q8', [0.02, 0.04]], ['q4', [0.15, 0.3]]] as const) {
        const features = outputDifference(fp32.features, outputs.get(dtype)!.features);
        const logits = outputDifference(fp32.logits, outputs.get(dtype)!.logits);
        t.diagnostic(`${dtype}: features max ${features.maxAbs.toExponential(2)} relL2 ${features.relativeL2.toExponential(2)} cos ${features.cosine.toFixed(6)}; logits max ${logits.maxAbs.toExponential(2)} relL2 ${logits.relativeL2.toExponential(2)}`);
        assert.ok(features.relativeL2 < featureLimit, `${dtype} features ${features.relativeL2}`);
        assert.ok(logits.relativeL2 < logitLimit, `${dtype} logits ${logits.relativeL2}`);
        assert.ok(logits.relativeL2 > 0, `${dtype}: the quantized graph differs from fp32 (it is not a copy)`);
      }
      const vocab = models.get('fp32')!.decoder.info.vocabSize;
      const last = ids.length - 1;
      assert.equal(argmaxRow(outputs.get('q8')!.logits, vocab, last), argmaxRow(fp32.logits, vocab, last), 'q8 keeps the top-1 token');
    } finally {
      await Promise.all([...models.values()].map((m) => m.dispose()));
    }
  });
});

describe('query taps of quantized decoders that do not output them (as real quantize_dynamic / q4 exports)', () => {
  it('the structure walk finds each layer\'s q projection output through the MatMulInteger and MatMulNBits forms', () => {
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-q8-notaps-'));
    try {
      const tiny = findProbeSpec('probe-random-tiny')!;
      const { dir } = buildProbeFolder({ ...tiny, name: 'probe-test-q8-no-taps', queryTaps: false }, { outDir: path.join(outDir, 'model'), dtype: 'q4' });
      for (const file of ['decoder_model_merged_quantized', 'decoder_model_merged_q4']) {
        const plan = planQueryTapsForFile(path.join(dir, 'onnx', `${file}.onnx`));
        assert.ok(plan.complete, `${file}: ${plan.layers.map((l) => l.reason).join('; ')}`);
        assert.deepEqual(
          plan.layers.map((l) => [l.tensorName, l.exposed, l.qNorm]),
          [0, 1].map((i) => [`/model/layers.${i}/self_attn/q_proj/MatMul_output_0`, false, false]),
          file,
        );
      }
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  });
});

describe('probe-needle loaded with dtype q8', () => {
  let model: VisionLanguageModel;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle', { dtype: 'q8' }), { dtype: 'q8' });
  });
  after(async () => model?.dispose());

  it('opens the _quantized decoder and answers from its logits: the needle color in context, unknown when it left the window', async () => {
    assert.match(model.decoder.graph.file, /decoder_model_merged_quantized\.onnx$/);
    const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames: 8 });
    const haystack = await model.encodeImages(await preprocessFrame(model, await haystackFrame({ sigma: 30 })));
    let needle: FrameChunk | undefined;
    for (let i = 0; i < 20; i++) {
      const encoded =
        i === 4
          ? await stream.encodeFrame(await preprocessFrame(model, await needleFrame({ background: 'magenta', square: 'white' })), i)
          : await stream.encodeFeatures(haystack, i);
      if (i === 4) needle = encoded.chunk;
    }
    const answer = async (color: string, context: readonly FrameChunk[]) => {
      const ids = model.tokenizer.encode(stream.format.question(`What color was the square on the ${color} screen?`));
      const result = await generate(model, { inputsEmbeds: await model.embed(ids), past: stream.toCache(stream.assembleContext(context)) }, { maxNewTokens: 4 });
      assert.equal(result.stopReason, 'eos');
      return result.text;
    };
    const window = stream.window.contextChunks;
    assert.ok(!window.includes(needle!), 'the needle left the window');
    assert.equal(await answer('magenta', window), ' unknown');
    assert.equal(await answer('magenta', [...window, needle!]), ' white');
    assert.equal(await answer('cyan', [...window, needle!]), ' unknown');
  });
});
