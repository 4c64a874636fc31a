/**
 * The probe graphs' fused attention path (onnxruntime's com.microsoft GroupQueryAttention in the
 * decoder, MultiHeadAttention in the vision encoder) computes what the eager path computes, on the
 * tiny geometry: prefill with an empty past, a chunk over a given (arbitrary, pre-rotated) past,
 * one decode step, a padding zero in attention_mask, and a vision batch with a partial pixel mask.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { buildDecoderGraph } from '../../src/model/probe/decoderGraph.js';
import type { AttentionPath, FloatType } from '../../src/model/probe/graphHelpers.js';
import { buildProbeFolder } from '../../src/model/probe/probeModelFolder.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';
import { randomWeightSource } from '../../src/model/probe/randomWeights.js';
import { buildVisionGraph } from '../../src/model/probe/visionGraph.js';

const tiny = findProbeSpec('probe-random-tiny')!;
let scratch: string;

function writeGraph(file: string, dtype: FloatType, build: (ctx: Parameters<typeof buildVisionGraph>[0]) => void): string {
  const writer = new OnnxModelWriter({ path: file, graphName: 'g', opset: 17 });
  build({ g: writer.graph, weights: randomWeightSource(3), dtype });
  writer.save();
  return file;
}

async function open(file: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
}

function randoms(count: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: count }, () => (2 * random() - 1) * scale);
}

function floatTensor(dtype: FloatType, values: Float32Array, dims: number[]): ort.Tensor {
  return dtype === 'float16' ? new ort.Tensor('float16', float32ToFloat16(values), dims) : new ort.Tensor('float32', values, dims);
}

function values(tensor: ort.Tensor): Float32Array {
  return tensor.type === 'float16' ? float16ToFloat32(tensor.data as Uint16Array) : (tensor.data as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** Runs both sessions on the same feeds; returns the worst difference over all outputs (same names, same dims). */
async function compare(eager: ort.InferenceSession, fused: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  const [a, b] = [await eager.run(feeds), await fused.run(feeds)];
  assert.deepEqual(eager.outputNames, fused.outputNames);
  let worst = 0;
  for (const name of eager.outputNames) {
    assert.deepEqual(b[name]!.dims, a[name]!.dims, name);
    worst = Math.max(worst, maxAbsDiff(values(a[name]!), values(b[name]!)));
  }
  return worst;
}

describe('fused attention path (tiny geometry)', () => {
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-attention-paths-'));
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('declares the com.microsoft opset only when a fused op is used', () => {
    const type = modelProtoType();
    const opsets = (attention: AttentionPath) => {
      const file = writeGraph(path.join(scratch, `opsets-${attention}.onnx`), 'float32', (ctx) => buildDecoderGraph(ctx, tiny.text, { attention }));
      const model = type.toObject(type.decode(fs.readFileSync(file)), { longs: Number }) as { opset_import: Array<{ domain?: string; version: number }> };
      return model.opset_import.map((o) => `${o.domain ?? ''}:${o.version}`);
    };
    assert.deepEqual(opsets('eager'), [':17']);
    assert.deepEqual(opsets('fused'), [':17', 'com.microsoft:1']);
  });

  it('registry: float32 random probes default to fused; float16 and the needle model stay eager', () => {
    assert.equal(findProbeSpec('probe-random-tiny')!.attention, 'fused');
    assert.equal(findProbeSpec('probe-random-smolvlm2-256m')!.attention, 'fused');
    assert.equal(findProbeSpec('probe-random-tiny-fp16')!.attention ?? 'eager', 'eager');
    assert.equal(findProbeSpec('probe-random-smolvlm2-256m-fp16')!.attention ?? 'eager', 'eager');
    assert.equal(findProbeSpec('probe-needle')!.attention ?? 'eager', 'eager');
  });

  it('the attention path is part of the cached folder key', () => {
    const outDir = path.join(scratch, 'folder');
    const decoderOps = () => {
      const type = modelProtoType();
      const model = type.toObject(type.decode(fs.readFileSync(path.join(outDir, 'onnx', 'decoder_model_merged.onnx')))) as {
        graph: { node: Array<{ op_type: string }> };
      };
      return new Set(model.graph.node.map((n) => n.op_type));
    };
    const eager = { ...tiny, attention: 'eager' as const };
    assert.equal(buildProbeFolder(eager, { outDir }).reused, false);
    assert.equal(buildProbeFolder(eager, { outDir }).reused, true);
    assert.ok(!decoderOps().has('GroupQueryAttention'));
    assert.equal(buildProbeFolder({ ...tiny, attention: 'fused' }, { outDir }).reused, false);
    assert.ok(decoderOps().has('GroupQueryAttention'));
  });

  for (const [dtype, tolerance] of [['float32', 1e-4], ['float16', 2e-2]] as const) {
    it(`decoder (${dtype}): fused equals eager within ${tolerance} (logits, presents, query taps)`, async () => {
      const geo = tiny.text;
      const build = (attention: AttentionPath) =>
        open(writeGraph(path.join(scratch, `decoder-${dtype}-${attention}.onnx`), dtype, (ctx) => buildDecoderGraph(ctx, geo, { attention })));
      const [eager, fused] = [await build('eager'), await build('fused')];
      const { hiddenSize: H, numKvHeads: KV, headDim: D } = geo;
      const cases = [
        { past: 0, seq: 5, hole: -1 },
        { past: 6, seq: 3, hole: -1 },
        { past: 9, seq: 1, hole: -1 },
        { past: 7, seq: 4, hole: 2 },
        { past: 11, seq: 1, hole: 5 },
      ];
      for (const [n, c] of cases.entries()) {
        const total = c.past + c.seq;
        const mask = Array.from({ length: total }, (_, j) => BigInt(j === c.hole ? 0 : 1));
        const feeds: Record<string, ort.Tensor> = {
          inputs_embeds: floatTensor(dtype, randoms(c.seq * H, 100 + n), [1, c.seq, H]),
          attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask), [1, total]),
          // Compact positions continue after the past, as the engine lays them out.
          position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: c.seq }, (_, s) => BigInt(c.past + s)), [1, c.seq]),
        };
        for (let i = 0; i < geo.numLayers; i++) {
          feeds[`past_key_values.${i}.key`] = floatTensor(dtype, randoms(KV * c.past * D, 200 + 10 * n + i, 2), [1, KV, c.past, D]);
          feeds[`past_key_values.${i}.value`] = floatTensor(dtype, randoms(KV * c.past * D, 300 + 10 * n + i), [1, KV, c.past, D]);
        }
        const worst = await compare(eager, fused, feeds);
        assert.ok(worst <= tolerance, `past ${c.past}, new ${c.seq}, hole ${c.hole}: max |fused - eager| = ${worst}`);
      }
      await eager.release();
      await fused.release();
    });

    it(`vision encoder (${dtype}): fused equals eager within ${tolerance}, with a partial pixel mask and a padding image`, async () => {
      const geo = tiny.vision;
      const build = (attention: AttentionPath) =>
        open(
          writeGraph(path.join(scratch, `vision-${dtype}-${attention}.onnx`), dtype, (ctx) => buildVisionGraph(ctx, geo, tiny.text.hiddenSize, { attention })),
        );
      const [eager, fused] = [await build('eager'), await build('fused')];
      const S = geo.imageSize;
      const images = 3;
      const pixels = randoms(images * 3 * S * S, 7);
      pixels.fill(0, 2 * 3 * S * S); // the third image is padding (dropped)
      const pixelMask = new Uint8Array(images * S * S).fill(1);
      // Image 1: the right half of its columns is padding (masked out of attention).
      for (let y = 0; y < S; y++) pixelMask.fill(0, S * S + y * S + S / 2, S * S + (y + 1) * S);
      pixelMask.fill(0, 2 * S * S);
      const worst = await compare(eager, fused, {
        pixel_values: floatTensor(dtype, pixels, [1, images, 3, S, S]),
        pixel_attention_mask: new ort.Tensor('bool', pixelMask, [1, images, S, S]),
      });
      assert.ok(worst <= tolerance, `max |fused - eager| = ${worst}`);
      await eager.release();
      await fused.release();
    });
  }
});
