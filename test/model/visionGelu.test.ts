/**
 * The probe vision encoder's tanh-GELU (issue 19), on the tiny geometry with two layers: the
 * 'export' form is torch.onnx's decomposition node for node and onnxruntime's optimizer leaves it
 * unfused; the 'fast' form (com.microsoft FastGelu with the fc1 bias, as onnxruntime's transformer
 * optimizer writes it) comes out of onnxruntime's optimizer as one FastGelu per layer, float32 and
 * q8, and gives the export form's features within float tolerance. Which form the folders get.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../../kernels/sampling.js';
import { outputDifference } from '../../src/eval/outputDifference.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import type { AttentionPath, FloatType } from '../../src/model/probe/graphHelpers.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import type { QuantizedMatMulOptions } from '../../src/model/probe/quantizedMatMul.js';
import { randomWeightSource } from '../../src/model/probe/randomWeights.js';
import { buildVisionGraph, type GeluForm } from '../../src/model/probe/visionGraph.js';

const tiny = findProbeSpec('probe-random-tiny')!;
// Two layers, so that the fusion is checked per layer and a GELU feeds the next layer's norm.
const geo = { ...tiny.vision, numLayers: 2 };
const S = geo.imageSize;

interface Node {
  op_type: string;
  name: string;
  input: string[];
  output: string[];
}
interface Initializer {
  name: string;
  float_data: number[];
  raw_data: Uint8Array;
}

function readGraph(file: string): { node: Node[]; initializer: Initializer[] } {
  const type = modelProtoType();
  return (type.toObject(type.decode(fs.readFileSync(file)), { defaults: true }) as { graph: { node: Node[]; initializer: Initializer[] } }).graph;
}

function ops(nodes: readonly Node[], op: string): Node[] {
  return nodes.filter((n) => n.op_type === op);
}

let scratch: string;

function write(name: string, options: { attention?: AttentionPath; gelu?: GeluForm; dtype?: FloatType; matmul?: QuantizedMatMulOptions }): string {
  const file = path.join(scratch, `${name}.onnx`);
  const writer = new OnnxModelWriter({ path: file, graphName: 'vision_encoder', opset: 17 });
  const ctx = { g: writer.graph, weights: randomWeightSource(0), dtype: options.dtype ?? 'float32', ...(options.matmul ? { matmul: options.matmul } : {}) };
  buildVisionGraph(ctx, geo, tiny.text.hiddenSize, { attention: options.attention ?? 'fused', ...(options.gelu ? { gelu: options.gelu } : {}) });
  writer.save();
  return file;
}

/** The graph onnxruntime runs after its optimizer ('all', CPU), as it writes it back out. */
async function optimized(file: string): Promise<Node[]> {
  const out = file.replace(/\.onnx$/, '.optimized.onnx');
  const session = await ort.InferenceSession.create(file, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', optimizedModelFilePath: out, logSeverityLevel: 3 });
  await session.release();
  return readGraph(out).node;
}

/** Two real images (the second with its right half masked out) and a padding one. */
function feeds(): Record<string, ort.Tensor> {
  const random = mulberry32(11);
  const pixels = Float32Array.from({ length: 3 * 3 * S * S }, () => random() * 2 - 1);
  pixels.fill(0, 2 * 3 * S * S);
  const mask = new Uint8Array(3 * S * S).fill(1);
  for (let y = 0; y < S; y++) mask.fill(0, S * S + y * S + S / 2, S * S + (y + 1) * S);
  mask.fill(0, 2 * S * S);
  return { pixel_values: new ort.Tensor('float32', pixels, [1, 3, 3, S, S]), pixel_attention_mask: new ort.Tensor('bool', mask, [1, 3, S, S]) };
}

async function features(file: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  try {
    const output = (await session.run(feeds())).image_features!;
    assert.deepEqual(output.dims, [2, 4, tiny.text.hiddenSize]);
    return output.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('probe vision encoder GELU', () => {
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-gelu-'));
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it("'export' is torch.onnx's gelu(approximate='tanh') node for node, and onnxruntime's optimizer keeps it decomposed", async () => {
    const file = write('export', { gelu: 'export' });
    const graph = readGraph(file);
    const scalar = (name: string) => {
      const init = graph.initializer.find((i) => i.name === name);
      if (!init) return undefined;
      return init.float_data.length ? init.float_data[0] : new Float32Array(Uint8Array.from(init.raw_data).buffer)[0];
    };
    const gelu = graph.node.filter((n) => n.name.startsWith('/model/vision_model/encoder/layers.0/mlp/activation_fn/'));
    const x = graph.node.find((n) => n.name === '/model/vision_model/encoder/layers.0/mlp/fc1/Add')!.output[0];
    // Each input as 'x' (the fc1 output), '#i' (the i-th GELU node's output) or a scalar initializer's value.
    const describeInput = (input: string): string | number => {
      if (input === x) return 'x';
      const index = gelu.findIndex((n) => n.output[0] === input);
      if (index >= 0) return `#${index}`;
      const value = scalar(input);
      assert.ok(value !== undefined, `input ${input} is x, a GELU node or a scalar`);
      return value;
    };
    // symbolic_opset9.gelu, approximate='tanh', in torch's order: mul(self, mul(self, self)); mul(kappa, cube);
    // add(self, .); mul(beta, .); Tanh; add(one, .); mul(self, .); mul(half, .).
    const f = Math.fround;
    assert.deepEqual(
      gelu.map((n) => [n.op_type, ...n.input.map(describeInput)]),
      [
        ['Mul', 'x', 'x'],
        ['Mul', 'x', '#0'],
        ['Mul', f(0.044715), '#1'],
        ['Add', 'x', '#2'],
        ['Mul', f(Math.sqrt(2 / Math.PI)), '#3'],
        ['Tanh', '#4'],
        ['Add', 1, '#5'],
        ['Mul', 'x', '#6'],
        ['Mul', 0.5, '#7'],
      ],
    );
    const nodes = await optimized(file);
    assert.equal(ops(nodes, 'FastGelu').length, 0, 'onnxruntime now fuses the exporter form: the probe could write it instead of FastGelu');
    assert.equal(ops(nodes, 'Tanh').length, geo.numLayers);
  });

  for (const [label, matmul] of [['float32', undefined], ['q8', { weights: 'q8' }]] as const) {
    it(`'fast' (${label}): onnxruntime's optimized graph holds one FastGelu per layer with the fc1 bias, no Tanh, and the export form's features within float tolerance`, async () => {
      const fast = write(`fast-${label}`, { gelu: 'fast', ...(matmul ? { matmul } : {}) });
      const exported = write(`export-${label}`, { gelu: 'export', ...(matmul ? { matmul } : {}) });
      const nodes = await optimized(fast);
      const gelus = ops(nodes, 'FastGelu');
      assert.equal(gelus.length, geo.numLayers);
      for (const [i, node] of gelus.entries()) assert.equal(node.input[1], `model.vision_model.encoder.layers.${i}.mlp.fc1.bias`, "the bias is FastGelu's second input");
      assert.equal(ops(nodes, 'Tanh').length, 0);
      if (matmul) assert.ok(ops(nodes, 'DynamicQuantizeMatMul').length + ops(nodes, 'MatMulIntegerToFloat').length > 0, 'the q8 MatMuls are fused too');

      const [a, b] = [await features(exported), await features(fast)];
      const diff = outputDifference(a, b);
      // FastGelu evaluates tanh its own way (~1e-7 relative per element); q8 requantizes fc2's input, so
      // a rounding flip moves a feature by one quantization step.
      const tolerance = matmul ? 1e-3 : 1e-5;
      assert.ok(diff.relativeL2 < tolerance, `${label}: relative L2 ${diff.relativeL2} (max |diff| ${diff.maxAbs}) >= ${tolerance}`);
    });
  }

  it('folders get FastGelu with fused attention in float32, the export form otherwise; FastGelu in float16 is refused', async () => {
    const opsOf = (file: string) => readGraph(file).node.map((n) => n.op_type);
    assert.equal(opsOf(write('default-fused', { attention: 'fused' })).filter((op) => op === 'FastGelu').length, geo.numLayers);
    assert.equal(opsOf(write('default-eager', { attention: 'eager' })).filter((op) => op === 'Tanh').length, geo.numLayers);
    assert.equal(opsOf(write('default-fp16', { attention: 'fused', dtype: 'float16' })).filter((op) => op === 'Tanh').length, geo.numLayers);
    assert.throws(() => write('fast-fp16', { gelu: 'fast', dtype: 'float16' }), /float32 CPU kernel only/);
  });
});

