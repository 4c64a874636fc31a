import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupQueryHeads } from '../../kernels/groupHeads.js';
import { mulberry32 } from '../../kernels/sampling.js';

/** Values k/64 in [-4, 4]: float64 sums of these are exact in any order. */
function dyadic(n: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (Math.floor(random() * 513) - 256) / 64);
}

function uniformData(n: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);
}

/** The definition, literally: qbar_h = mean over tokens of head h; then add up the heads of each group. */
function reference(src: Float32Array, S: number, H: number, G: number, D: number): Float64Array {
  const qbar = new Float64Array(H * D);
  for (let h = 0; h < H; h++) {
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let t = 0; t < S; t++) s += src[t * H * D + h * D + d]!;
      qbar[h * D + d] = s / S;
    }
  }
  const out = new Float64Array(G * D);
  const n = H / G;
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / n);
    for (let d = 0; d < D; d++) out[g * D + d]! += qbar[h * D + d]!;
  }
  return out;
}

test('hand-checked: 2 tokens, 4 heads in 2 groups, headDim 2', () => {
  // token 0 heads: [1,2] [3,4] [5,6] [7,8]; token 1 heads: [3,4] [5,6] [7,8] [9,10]
  const src = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8, 9, 10]);
  // qbar heads: [2,3] [4,5] [6,7] [8,9]; group 0 = heads 0,1 -> [6,8]; group 1 = heads 2,3 -> [14,16]
  assert.deepEqual([...groupQueryHeads(src, 2, 4, 2, 2)], [6, 8, 14, 16]);
  // No grouping (MHA): the output is the plain per-head mean.
  assert.deepEqual([...groupQueryHeads(src, 2, 4, 4, 2)], [2, 3, 4, 5, 6, 7, 8, 9]);
  // One KV head (MQA): all heads add up.
  assert.deepEqual([...groupQueryHeads(src, 2, 4, 1, 2)], [20, 24]);
});

test('equals the reference exactly on dyadic data (smolvlm2-256m geometry: 9 heads, 3 KV heads, 64 dims)', () => {
  for (const S of [1, 4, 16]) {
    const src = dyadic(S * 9 * 64, S);
    const got = groupQueryHeads(src, S, 9, 3, 64);
    const want = reference(src, S, 9, 3, 64);
    assert.equal(got.length, 3 * 64);
    for (let i = 0; i < got.length; i++) assert.equal(got[i], Math.fround(want[i]!), `S=${S} i=${i}`);
  }
});

test('matches the reference within float32 rounding on arbitrary data and token counts', () => {
  for (const [S, H, G, D] of [[7, 9, 3, 64], [13, 14, 2, 64], [3, 8, 8, 16], [5, 6, 1, 8]] as const) {
    const src = uniformData(S * H * D, 100 + S, 3);
    const got = groupQueryHeads(src, S, H, G, D);
    const want = reference(src, S, H, G, D);
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-6 * Math.max(1, Math.abs(want[i]!)), `S=${S} H=${H} G=${G} i=${i}: ${got[i]} vs ${want[i]}`);
    }
  }
});

test('dot(grouped query, KV-head mean key) equals the dot of the GQA-expanded vectors', () => {
  // The reference (ReKV) scores a chunk with qbar over all numHeads heads dotted with the mean key
  // repeated to numHeads heads (repeat_kv: query head h reads KV head floor(h / (H / G))).
  const S = 11;
  const H = 9;
  const G = 3;
  const D = 64;
  const taps = uniformData(S * H * D, 7, 2);
  const key = uniformData(G * D, 8, 2); // the chunk's representative: KV heads concatenated
  const qbar = new Float64Array(H * D);
  for (let t = 0; t < S; t++) for (let i = 0; i < H * D; i++) qbar[i]! += taps[t * H * D + i]! / S;
  let expanded = 0;
  let magnitude = 0;
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / G));
    for (let d = 0; d < D; d++) {
      const term = qbar[h * D + d]! * key[g * D + d]!;
      expanded += term;
      magnitude += Math.abs(term);
    }
  }
  const grouped = groupQueryHeads(taps, S, H, G, D);
  let ours = 0;
  for (let i = 0; i < G * D; i++) ours += grouped[i]! * key[i]!;
  assert.ok(Math.abs(ours - expanded) <= 1e-6 * magnitude, `${ours} vs ${expanded}`);

  // The interleaved mapping (h -> h % G) is a different, wrong score: the test can tell them apart.
  let interleaved = 0;
  for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) interleaved += qbar[h * D + d]! * key[(h % G) * D + d]!;
  assert.ok(Math.abs(interleaved - expanded) > 1e-3 * magnitude, 'the wrong head mapping should give a different score');
});

test('accumulates in float64 and writes into out', () => {
  // 1e8 then ones: a float32 running sum would never move off 1e8.
  const S = 1001;
  const src = new Float32Array(S).fill(1);
  src[0] = 1e8;
  const out = new Float32Array(1);
  assert.equal(groupQueryHeads(src, S, 1, 1, 1, out), out);
  assert.equal(out[0], Math.fround((1e8 + 1000) / S));
});

test('rejects bad geometry', () => {
  const src = new Float32Array(2 * 4 * 2);
  assert.throws(() => groupQueryHeads(src, 2, 4, 3, 2), RangeError); // 4 heads do not split into 3 groups
  assert.throws(() => groupQueryHeads(src, 3, 4, 2, 2), RangeError); // length is not tokens*heads*dim
  assert.throws(() => groupQueryHeads(src, 0, 4, 2, 2), RangeError);
  assert.throws(() => groupQueryHeads(src, 2, 4, 2, 2, new Float32Array(3)), RangeError);
});
