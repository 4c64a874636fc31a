/**
 * Tiny ONNX graphs for bench/roofline.ts, written with Vigil's own ONNX writer (no downloaded models):
 * one large op each, so a session's run time is that op's time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { mulberry32 } from '../kernels/sampling.js';
import { OnnxModelWriter } from '../src/model/onnx/modelWriter.js';

const OPSET = 17;

function write(dir: string, name: string, build: (w: OnnxModelWriter) => void): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.onnx`);
  const writer = new OnnxModelWriter({ path: file, graphName: name, opset: OPSET, externalDataThresholdBytes: 1024 });
  build(writer);
  writer.save();
  return file;
}

/** y[M,N] = a[M,K] (input) x b[K,N] (seeded float32 weights): 2*M*K*N FLOPs per run. */
export function matMulGraph(dir: string, m: number, k: number, n: number): string {
  return write(dir, `matmul_${m}x${k}x${n}`, (w) => {
    const random = mulberry32(7);
    const b = Float32Array.from({ length: k * n }, () => random() - 0.5);
    const g = w.graph;
    const a = g.input('a', 'float32', [m, k]);
    g.output(g.op('MatMul', [a, g.initializer('b', 'float32', [k, n], b)]), 'y', 'float32', [m, n]);
  });
}

/**
 * y[M,N] int32 = a[M,K] uint8 (input) x b[K,N] int8 (weights), with a scalar zero point for a: the
 * u8 x s8 form dynamic int8 quantization (MatMulInteger after DynamicQuantizeLinear) gives.
 */
export function matMulIntegerGraph(dir: string, m: number, k: number, n: number): string {
  return write(dir, `matmulinteger_${m}x${k}x${n}`, (w) => {
    const random = mulberry32(9);
    const b = Int8Array.from({ length: k * n }, () => Math.floor(random() * 255) - 127);
    const g = w.graph;
    const a = g.input('a', 'uint8', [m, k]);
    const zero = g.constant('uint8', [], [128]);
    g.output(g.op('MatMulInteger', [a, g.initializer('b', 'int8', [k, n], b), zero]), 'y', 'int32', [m, n]);
  });
}

/** y = x + 1 over `count` floats: reads count*4 bytes, writes count*4 bytes. */
export function addGraph(dir: string, count: number): string {
  return write(dir, `add_${count}`, (w) => {
    const g = w.graph;
    const x = g.input('x', 'float32', [count]);
    g.output(g.op('Add', [x, g.scalar('float32', 1)]), 'y', 'float32', [count]);
  });
}

/** y = sum(x) over `count` floats: reads count*4 bytes, writes one float (a read-only stream). */
export function reduceSumGraph(dir: string, count: number): string {
  return write(dir, `reducesum_${count}`, (w) => {
    const g = w.graph;
    const x = g.input('x', 'float32', [count]);
    g.output(g.op('ReduceSum', [x], { keepdims: 0 }), 'y', 'float32', []);
  });
}
