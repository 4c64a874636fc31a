import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32 } from '../../kernels/sampling.js';
import { retrievalQueries } from '../../retrieval/queryVectors.js';
import { StreamIndex } from '../../retrieval/streamIndex.js';
import { isVigil, randomVector } from './helpers.js';

// smolvlm2-256m attention geometry: 9 query heads share 3 KV heads of 64 dims.
const H = 9;
const G = 3;
const D = 64;
const LAYERS = 2;

test('retrieval scores from query taps equal the reference GQA-expanded dot products', () => {
  const random = mulberry32(1);
  const S = 6; // question tokens
  const taps = Array.from({ length: LAYERS }, () => randomVector(S * H * D, random));
  const chunks = Array.from({ length: 40 }, (_, i) => ({
    id: i,
    reps: Array.from({ length: LAYERS }, () => randomVector(G * D, random)),
  }));
  const index = StreamIndex.create({ numLayers: LAYERS, dim: G * D });
  for (const c of chunks) index.addChunk(c.id, i2t(c.id), i2t(c.id) + 1, c.reps);
  const got = index.retrieve(retrievalQueries(taps, { numHeads: H, numKvHeads: G, headDim: D }), 5);

  for (let layer = 0; layer < LAYERS; layer++) {
    // ReKV: qbar = mean over tokens of all 9 heads; kbar = the 3 KV heads repeated to 9 (repeat_kv).
    const qbar = new Float64Array(H * D);
    for (let t = 0; t < S; t++) for (let i = 0; i < H * D; i++) qbar[i]! += taps[layer]![t * H * D + i]! / S;
    const expanded = chunks.map((c) => {
      let s = 0;
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / G));
        for (let d = 0; d < D; d++) s += qbar[h * D + d]! * c.reps[layer]![g * D + d]!;
      }
      return { id: c.id, s };
    });
    expanded.sort((a, b) => b.s - a.s || a.id - b.id);
    const top = expanded.slice(0, 5).sort((a, b) => a.id - b.id);
    assert.deepEqual(got.chunkIds[layer], top.map((x) => x.id));
    top.forEach((x, i) => assert.ok(Math.abs(got.scores[layer]![i]! - x.s) <= 1e-5 * Math.max(1, Math.abs(x.s)), `layer ${layer} chunk ${x.id}`));
  }
});

function i2t(id: number): number {
  return 2 * id;
}

test('taps that do not match the geometry are rejected', () => {
  const geometry = { numHeads: H, numKvHeads: G, headDim: D };
  assert.throws(() => retrievalQueries([new Float32Array(H * D * 2 + 1)], geometry), isVigil('SHAPE_MISMATCH', /layer 0/));
  assert.throws(() => retrievalQueries([new Float32Array(0)], geometry), isVigil('SHAPE_MISMATCH'));
  assert.throws(() => retrievalQueries([new Float32Array(H * D)], { numHeads: 9, numKvHeads: 2, headDim: D }), isVigil('BAD_CONFIG'));
  assert.equal(retrievalQueries([new Float32Array(H * D * 3)], geometry)[0]!.length, G * D);
});
