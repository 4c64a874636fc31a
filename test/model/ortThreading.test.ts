/**
 * onnxruntime threading from the environment: every core by default (onnxruntime's own default
 * ran one thread on 2-core VMs), explicit counts and spinning honoured, bad values refused with
 * a clear error instead of being passed on. A real session opens with the chosen options.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { OnnxGraph, ortThreading } from '../../src/model/onnxGraph.js';

const saved = { threads: process.env.VIGIL_THREADS, spinning: process.env.VIGIL_ORT_SPINNING };

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

describe('onnxruntime threading', () => {
  afterEach(() => {
    restore('VIGIL_THREADS', saved.threads);
    restore('VIGIL_ORT_SPINNING', saved.spinning);
  });

  it('defaults to every core, spinning on except in the decoder', () => {
    delete process.env.VIGIL_THREADS;
    delete process.env.VIGIL_ORT_SPINNING;
    assert.deepEqual(ortThreading(), { intraOpThreads: os.availableParallelism(), spinning: true, decoderSpinning: false });
  });

  it('takes explicit counts (0: onnxruntime decides) and spinning for every graph', () => {
    process.env.VIGIL_THREADS = '0';
    process.env.VIGIL_ORT_SPINNING = '0';
    assert.deepEqual(ortThreading(), { intraOpThreads: 0, spinning: false, decoderSpinning: false });
    process.env.VIGIL_ORT_SPINNING = '1';
    assert.deepEqual(ortThreading(), { intraOpThreads: 0, spinning: true, decoderSpinning: true });
    process.env.VIGIL_THREADS = '3';
    assert.equal(ortThreading().intraOpThreads, 3);
  });

  it('refuses bad values by name', () => {
    for (const bad of ['-1', '1.5', 'two']) {
      process.env.VIGIL_THREADS = bad;
      assert.throws(() => ortThreading(), /VIGIL_THREADS must be a whole number/);
    }
    process.env.VIGIL_THREADS = '1';
    process.env.VIGIL_ORT_SPINNING = 'yes';
    assert.throws(() => ortThreading(), /VIGIL_ORT_SPINNING must be 0 or 1/);
  });

  it('opens and runs a real session with each setting', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ort-threads-'));
    try {
      const file = path.join(dir, 'add.onnx');
      const writer = new OnnxModelWriter({ path: file, graphName: 'g', opset: 17 });
      const x = writer.graph.input('x', 'float32', [2]);
      writer.graph.output(writer.graph.op('Add', [x, x]), 'y', 'float32', [2]);
      writer.save();
      for (const [threads, spinning] of [['2', '1'], ['1', '0'], ['0', '1']] as const) {
        process.env.VIGIL_THREADS = threads;
        process.env.VIGIL_ORT_SPINNING = spinning;
        for (const role of ['decoder', 'other'] as const) {
          const graph = await OnnxGraph.open(file, role);
          const out = await graph.session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
          assert.deepEqual([...(out.y!.data as Float32Array)], [2, 4]);
          await graph.dispose();
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
