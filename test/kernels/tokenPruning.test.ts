import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attentionReceived, gatherTokens, keepTopTokens, tokenNorms } from '../../kernels/tokenPruning.js';
import { seededData as data } from '../helpers/seededData.js';

test('tokenNorms: mean over heads of each token row L2 norm', () => {
  const heads = 2;
  const tokens = 3;
  const headDim = 2;
  // head 0 rows: (3,4) (0,0) (1,0); head 1 rows: (0,1) (6,8) (0,0)
  const src = Float32Array.from([3, 4, 0, 0, 1, 0, 0, 1, 6, 8, 0, 0]);
  assert.deepEqual(Array.from(tokenNorms(src, heads, tokens, headDim)), [(5 + 1) / 2, (0 + 10) / 2, (1 + 0) / 2]);
  assert.throws(() => tokenNorms(new Float32Array(5), heads, tokens, headDim), /src length 5/);
});

test('keepTopTokens: non-candidates always kept, top-k candidates by score, ascending, ties to the earlier token', () => {
  const scores = [9, 1, 5, 5, 3, 8, 0];
  const candidates = [false, true, true, true, true, true, false];
  assert.deepEqual(Array.from(keepTopTokens(scores, candidates, 2)), [0, 2, 5, 6]);
  // Tie between tokens 2 and 3 (score 5): the earlier one.
  assert.deepEqual(Array.from(keepTopTokens(scores, candidates, 2).filter((t) => t === 2 || t === 3)), [2]);
  assert.deepEqual(Array.from(keepTopTokens(scores, candidates, 0)), [0, 6]);
  assert.deepEqual(Array.from(keepTopTokens(scores, candidates, 5)), [0, 1, 2, 3, 4, 5, 6]);
  // Equal scores everywhere (the needle model's identical image tokens): the first k.
  assert.deepEqual(Array.from(keepTopTokens([1, 1, 1, 1], [true, true, true, true], 2)), [0, 1]);
  assert.throws(() => keepTopTokens(scores, candidates, 6), /k must be an integer in 0..5/);
  assert.throws(() => keepTopTokens([0, NaN], [true, true], 1), /token 1 is NaN/);
  assert.throws(() => keepTopTokens([0, 1], [true], 1), /1 candidate flags for 2 scores/);
  // A NaN score of a token that is not a candidate does not matter.
  assert.deepEqual(Array.from(keepTopTokens([NaN, 2, 1], [false, true, true], 1)), [0, 1]);
});

test('keepTopTokens: agrees with a brute-force choice on random scores', () => {
  const scores = Array.from(data(64, 5));
  const candidates = scores.map((_, i) => i >= 10);
  for (const k of [0, 1, 16, 32, 54]) {
    const byScore = candidates.flatMap((c, i) => (c ? [i] : [])).sort((a, b) => scores[b]! - scores[a]!);
    const expected = [...Array.from({ length: 10 }, (_, i) => i), ...byScore.slice(0, k)].sort((a, b) => a - b);
    assert.deepEqual(Array.from(keepTopTokens(scores, candidates, k)), expected);
  }
});

test('gatherTokens: packs the chosen token rows of every head in the given order', () => {
  const heads = 2;
  const tokens = 4;
  const headDim = 3;
  const src = Float32Array.from({ length: heads * tokens * headDim }, (_, i) => i);
  const out = gatherTokens(src, heads, tokens, headDim, [1, 3]);
  assert.deepEqual(Array.from(out), [3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23]);
  assert.deepEqual(gatherTokens(src, heads, tokens, headDim, [0, 1, 2, 3]), src);
  assert.equal(gatherTokens(src, heads, tokens, headDim, []).length, 0);
  assert.throws(() => gatherTokens(src, heads, tokens, headDim, [4]), /index 4 is not a token of 4/);
});

test('attentionReceived: matches a direct causal softmax over past + block, GQA head mapping', () => {
  const numHeads = 4;
  const numKvHeads = 2;
  const headDim = 8;
  const past = 5;
  const S = 6;
  const total = past + S;
  const q = data(numHeads * S * headDim, 1);
  const k = data(numKvHeads * total * headDim, 2);
  for (let i = 0; i < q.length; i++) q[i] = q[i]! * 3;
  const got = attentionReceived(q, k, numHeads, numKvHeads, past, S, headDim);
  const expected = new Array<number>(S).fill(0);
  for (let h = 0; h < numHeads; h++) {
    const g = Math.floor(h / 2);
    for (let i = 0; i < S; i++) {
      const logits: number[] = [];
      for (let j = 0; j <= past + i; j++) {
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[(h * S + i) * headDim + d]! * k[(g * total + j) * headDim + d]!;
        logits.push(s / Math.sqrt(headDim));
      }
      const z = logits.reduce((a, s) => a + Math.exp(s), 0);
      for (let j = 0; j <= i; j++) expected[j] = expected[j]! + Math.exp(logits[past + j]!) / z / (numHeads * (S - j));
    }
  }
  got.forEach((v, j) => assert.ok(Math.abs(v - expected[j]!) < 1e-12, `token ${j}: ${v} vs ${expected[j]}`));
  // With no past, the first query sees only token 0 (weight 1): token S-1 is seen only by the last query.
  const alone = attentionReceived(q, k.subarray(0), numHeads, numKvHeads, 0, 1, headDim);
  assert.ok(Math.abs(alone[0]! - 1) < 1e-15);
  assert.throws(() => attentionReceived(q, k, 3, 2, past, S, headDim), /do not group/);
  assert.throws(() => attentionReceived(q, k.subarray(0, 10), numHeads, numKvHeads, past, S, headDim), /keys length 10/);
});
