/**
 * kernels/bilinearResize.ts against references it does not share code with: hand-computed small
 * cases, and onnxruntime's Resize op (mode linear, coordinate_transformation_mode half_pixel, which
 * samples as torch's interpolate(mode='bilinear', align_corners=False) does) in a graph written by
 * Vigil's ONNX writer, NHWC -> NCHW -> Resize -> NHWC, so the reference also checks the layout.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { poolFrameGrids, pooledGridSide, resizeBilinear } from '../../kernels/bilinearResize.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { seededData as data } from '../helpers/seededData.js';

let scratch: string;

/** onnxruntime's Resize of a [1, inH, inW, dim] grid to [1, outH, outW, dim]. */
async function ortResize(src: Float32Array, inH: number, inW: number, dim: number, outH: number, outW: number): Promise<Float32Array> {
  const file = path.join(scratch, `resize-${inH}x${inW}x${dim}-${outH}x${outW}.onnx`);
  const writer = new OnnxModelWriter({ path: file, graphName: 'resize', opset: 17 });
  const g = writer.graph;
  const x = g.input('x', 'float32', [1, inH, inW, dim]);
  const nchw = g.op('Transpose', [x], { perm: [0, 3, 1, 2] });
  const resized = g.op('Resize', [nchw, '', '', g.int64s([1, dim, outH, outW])], {
    mode: 'linear',
    coordinate_transformation_mode: 'half_pixel',
  });
  g.output(g.op('Transpose', [resized], { perm: [0, 2, 3, 1] }), 'y', 'float32', [1, outH, outW, dim]);
  writer.save();
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ x: new ort.Tensor('float32', src, [1, inH, inW, dim]) });
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function assertClose(got: Float32Array, want: Float32Array, tolerance: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const diff = Math.abs(got[i]! - want[i]!);
    if (diff > worst) {
      worst = diff;
      at = i;
    }
  }
  assert.ok(worst <= tolerance, `${what}: max |diff| ${worst} at ${at} (got ${got[at]}, want ${want[at]})`);
}

describe('resizeBilinear', () => {
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bilinear-'));
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('hand-checked: 2x2 -> 1x1 is the mean; 3x1 -> 2x1 samples at 0.25 and 1.75', () => {
    assert.deepEqual([...resizeBilinear(new Float32Array([1, 10, 3, 30, 5, 50, 7, 70]), 2, 2, 2, 1, 1)], [4, 40]);
    // scale 1.5: (0 + 0.5) * 1.5 - 0.5 = 0.25 -> 0.75*a + 0.25*b; (1 + 0.5) * 1.5 - 0.5 = 1.75 -> 0.25*b + 0.75*c.
    assert.deepEqual([...resizeBilinear(new Float32Array([0, 4, 8]), 3, 1, 1, 2, 1)], [1, 7]);
    // Upsampling clamps below 0 and at the last index: 2 -> 4 samples at 0, 0.25, 0.75, 1.
    assert.deepEqual([...resizeBilinear(new Float32Array([0, 8]), 1, 2, 1, 1, 4)], [0, 2, 6, 8]);
  });

  it('LLaVA-OneVision video pooling: 27x27 -> 14x14 (hidden 64) matches onnxruntime Resize half_pixel', async () => {
    assert.equal(pooledGridSide(27), 14);
    const src = data(27 * 27 * 64, 11);
    const want = await ortResize(src, 27, 27, 64, 14, 14);
    const got = resizeBilinear(src, 27, 27, 64, 14, 14);
    assert.equal(got.length, 196 * 64);
    assertClose(got, want, 2e-6, '27 -> 14');
  });

  for (const [inH, inW, outH, outW, dim] of [
    [28, 28, 14, 14, 64],
    [5, 7, 3, 4, 16],
    [4, 6, 2, 3, 8],
    [6, 9, 3, 5, 5],
    [3, 3, 5, 4, 7],
  ] as const) {
    it(`${inH}x${inW} -> ${outH}x${outW} (dim ${dim}) matches onnxruntime`, async () => {
      const src = data(inH * inW * dim, inH * 100 + inW, 3, 0.5);
      const want = await ortResize(src, inH, inW, dim, outH, outW);
      assertClose(resizeBilinear(src, inH, inW, dim, outH, outW), want, 5e-6, `${inH}x${inW} -> ${outH}x${outW}`);
    });
  }

  it('fails against a wrong reference: transposed grids do not match', async () => {
    // Guards the test itself: a kernel that swapped rows and columns would be caught.
    const src = data(5 * 7 * 4, 3);
    const want = await ortResize(src, 5, 7, 4, 3, 4);
    const swapped = resizeBilinear(src, 7, 5, 4, 4, 3);
    assert.throws(() => assertClose(swapped, want, 1e-3, 'swapped'), assert.AssertionError);
  });

  it('writes into out, and validates sizes', () => {
    const out = new Float32Array(4);
    assert.equal(resizeBilinear(new Float32Array([1, 2, 3, 4]), 2, 2, 1, 2, 2, out), out);
    assert.deepEqual([...out], [1, 2, 3, 4]);
    assert.throws(() => resizeBilinear(new Float32Array(3), 2, 2, 1, 1, 1), RangeError);
    assert.throws(() => resizeBilinear(new Float32Array(4), 2, 2, 1, 0, 1), RangeError);
    assert.throws(() => resizeBilinear(new Float32Array(4), 2, 2, 1, 2, 2, new Float32Array(3)), RangeError);
    assert.throws(() => pooledGridSide(0), RangeError);
  });
});

describe('poolFrameGrids', () => {
  it('pools each frame on its own: [frames * 27*27, dim] -> [frames * 196, dim]', () => {
    const dim = 8;
    const frames = [data(729 * dim, 21), data(729 * dim, 22), data(729 * dim, 23)];
    const joined = new Float32Array(3 * 729 * dim);
    frames.forEach((f, i) => joined.set(f, i * 729 * dim));
    const pooled = poolFrameGrids(joined, 3, 27, dim);
    assert.equal(pooled.length, 3 * 196 * dim);
    frames.forEach((f, i) => {
      assert.deepEqual(pooled.subarray(i * 196 * dim, (i + 1) * 196 * dim), resizeBilinear(f, 27, 27, dim, 14, 14), `frame ${i}`);
    });
    assert.throws(() => poolFrameGrids(joined, 4, 27, dim), RangeError);
  });
});
