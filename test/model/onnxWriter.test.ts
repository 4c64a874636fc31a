/**
 * Vigil's ONNX writer: what it writes decodes back to the intended protobuf (names, symbolic dims,
 * opset, external data records) and onnxruntime runs it with the expected numbers; probe model
 * folders are deterministic for a seed.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { isVigilError } from '../../common/errors.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { OnnxGraph } from '../../src/model/onnxGraph.js';
import { buildProbeModel } from '../../src/model/probe/probeModelFolder.js';

let scratch: string;

/** y = x·W + b (fp32, W external), present = Concat(past, y) on axis 1, h = Cast(y, fp16) + c (fp16 I/O). */
function writeTestModel(file: string): { w: Float32Array; b: Float32Array; c: Float32Array } {
  const w = Float32Array.from({ length: 4 * 64 }, (_, i) => (i % 7) - 3);
  const b = Float32Array.from({ length: 64 }, (_, i) => i / 8);
  const c = Float32Array.from({ length: 64 }, (_, i) => -i / 4);
  const writer = new OnnxModelWriter({ path: file, graphName: 'test', opset: 17, externalDataThresholdBytes: 512 });
  const g = writer.graph;
  const x = g.input('x', 'float32', ['batch_size', 'sequence_length', 4]);
  const past = g.input('past', 'float32', ['batch_size', 'past_sequence_length', 64]);
  const y = g.scope('/model/layers.0/self_attn', () => {
    const mm = g.op('MatMul', [x, g.initializer('w', 'float32', [4, 64], w)], {}, { name: 'q_proj/MatMul' });
    return g.op('Add', [mm, g.initializer('b', 'float32', [64], b)], {}, { name: 'q_proj/Add' });
  });
  g.output(g.op('Concat', [past, y], { axis: 1 }), 'present', 'float32', ['batch_size', 'total_sequence_length', 64]);
  const half = g.op('Add', [g.op('Cast', [y], { to: 10 }), g.initializer('c', 'float16', [64], float32ToFloat16(c))]);
  g.output(half, 'half', 'float16', ['batch_size', 'sequence_length', 64]);
  g.output(y, y, 'float32', ['batch_size', 'sequence_length', 64]);
  writer.save();
  return { w, b, c };
}

describe('ONNX writer', () => {
  let file: string;
  let weights: ReturnType<typeof writeTestModel>;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-onnx-writer-'));
    file = path.join(scratch, 'model.onnx');
    weights = writeTestModel(file);
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('writes the intended protobuf: opset, symbolic dims, torch-style names, external data', () => {
    const type = modelProtoType();
    const model = type.toObject(type.decode(fs.readFileSync(file)), { longs: Number, defaults: true }) as {
      ir_version: number;
      opset_import: Array<{ domain: string; version: number }>;
      graph: {
        input: Array<{ name: string; type: { tensor_type: { elem_type: number; shape: { dim: Array<{ dim_value?: number; dim_param?: string }> } } } }>;
        node: Array<{ name: string; op_type: string; output: string[] }>;
        initializer: Array<{ name: string; data_location: number; external_data: Array<{ key: string; value: string }>; raw_data: Uint8Array }>;
      };
    };
    assert.equal(model.ir_version, 8);
    assert.deepEqual(model.opset_import.map((o) => [o.domain, o.version]), [['', 17]]);
    const x = model.graph.input[0]!;
    assert.equal(x.name, 'x');
    assert.deepEqual(x.type.tensor_type.shape.dim.map((d) => d.dim_param || d.dim_value), ['batch_size', 'sequence_length', 4]);
    const q = model.graph.node.find((n) => n.op_type === 'MatMul')!;
    assert.equal(q.name, '/model/layers.0/self_attn/q_proj/MatMul');
    assert.deepEqual(q.output, ['/model/layers.0/self_attn/q_proj/MatMul_output_0']);
    const w = model.graph.initializer.find((i) => i.name === 'w')!;
    assert.equal(w.data_location, 1, 'the 1 KiB weight goes to external data');
    const record = Object.fromEntries(w.external_data.map((e) => [e.key, e.value]));
    assert.equal(record.location, 'model.onnx_data');
    assert.equal(Number(record.offset) % 64, 0);
    assert.equal(Number(record.length), 4 * 64 * 4);
    const data = fs.readFileSync(`${file}_data`);
    const start = data.byteOffset + Number(record.offset);
    const stored = new Float32Array(data.buffer.slice(start, start + Number(record.length)));
    assert.deepEqual(stored, weights.w);
    const b = model.graph.initializer.find((i) => i.name === 'b')!;
    assert.equal(b.data_location, 0, 'the 256-byte bias stays inline');
  });

  it('onnxruntime runs it: external weights, empty past, float16 output', async () => {
    const graph = await OnnxGraph.open(file);
    try {
      assert.deepEqual(graph.outputNames, ['present', 'half', '/model/layers.0/self_attn/q_proj/Add_output_0']);
      const xs = Float32Array.of(1, 2, 3, 4, -1, 0, 0.5, 2);
      const out = await graph.run({
        x: new ort.Tensor('float32', xs, [1, 2, 4]),
        past: new ort.Tensor('float32', new Float32Array(0), [1, 0, 64]),
      });
      assert.deepEqual(out.present!.dims, [1, 2, 64]);
      const present = out.present!.data as Float32Array;
      const half = float16ToFloat32(out.half!.data as Uint16Array);
      for (let row = 0; row < 2; row++) {
        for (let j = 0; j < 64; j++) {
          let expected = weights.b[j]!;
          for (let k = 0; k < 4; k++) expected += xs[row * 4 + k]! * weights.w[k * 64 + j]!;
          assert.ok(Math.abs(present[row * 64 + j]! - expected) < 1e-5);
          assert.ok(Math.abs(half[row * 64 + j]! - (expected + weights.c[j]!)) < 0.05);
        }
      }
    } finally {
      await graph.dispose();
    }
  });

  it('a missing .onnx_data file is a clear CORRUPT_MODEL error', async () => {
    // Same graph in another folder, without the model.onnx_data it points to.
    fs.mkdirSync(path.join(scratch, 'alone'));
    const copy = path.join(scratch, 'alone', 'no-data.onnx');
    fs.copyFileSync(file, copy);
    await assert.rejects(OnnxGraph.open(copy), (error: unknown) => {
      assert.ok(isVigilError(error));
      assert.equal(error.code, 'CORRUPT_MODEL');
      assert.match(error.message, /no-data\.onnx/);
      return true;
    });
  });
});

describe('probe model folders', () => {
  const hashFolder = (dir: string) => {
    const hash = crypto.createHash('sha256');
    for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/decoder_model_merged.onnx', 'onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx']) {
      hash.update(name).update(fs.readFileSync(path.join(dir, name)));
    }
    return hash.digest('hex');
  };

  it('have the Hugging Face layout and are deterministic for a seed', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-probe-determinism-'));
    try {
      const a = buildProbeModel('probe-random-tiny', { outDir: path.join(root, 'a'), seed: 5 });
      const b = buildProbeModel('probe-random-tiny', { outDir: path.join(root, 'b'), seed: 5 });
      const c = buildProbeModel('probe-random-tiny', { outDir: path.join(root, 'c'), seed: 6 });
      for (const f of ['config.json', 'generation_config.json', 'preprocessor_config.json', 'processor_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
        assert.ok(fs.existsSync(path.join(a.dir, f)), f);
      }
      assert.equal(hashFolder(a.dir), hashFolder(b.dir));
      assert.notEqual(hashFolder(a.dir), hashFolder(c.dir));
      assert.equal(buildProbeModel('probe-random-tiny', { outDir: a.dir, seed: 5 }).reused, true);
      assert.equal(fs.readdirSync(root).filter((n) => n.includes('.partial-')).length, 0, 'no partial folders left');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('an unknown name lists the available ones', () => {
    assert.throws(() => buildProbeModel('probe-nope'), /unknown probe model 'probe-nope'; available: probe-random-tiny/);
  });
});
