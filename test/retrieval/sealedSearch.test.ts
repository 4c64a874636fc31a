/**
 * The sealed tier's search against literal references: with every list probed, a search returns
 * exactly the top r of the int8 scores of every sealed chunk (each row quantized on its own, so
 * the block's grouping does not change its codes) merged with the exact scores of the recent ones;
 * and the typed top-k merge ranks exactly as rankHits does, ties included.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dotRowsInt8, quantizeRowsInt8 } from '../../kernels/int8Rows.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { StreamIndex } from '../../retrieval/index.js';
import { rankHits } from '../../retrieval/hits.js';
import { rankCollected } from '../../retrieval/sealedTier.js';

const LAYERS = 2;
const DIM = 16;

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-sealed-search-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('with every list probed, a search is exactly the top r of int8 scores (sealed) and exact scores (recent)', async (t) => {
  const dir = tempDir(t);
  const random = mulberry32(31);
  const count = 700;
  const vectors = Array.from({ length: count }, (_, id) => Array.from({ length: LAYERS }, () => Float32Array.from({ length: DIM }, () => (random() - 0.5) * (1 + (id % 7)))));
  const index = StreamIndex.create({ numLayers: LAYERS, dim: DIM, sealing: { dir: path.join(dir, 'blocks'), blockChunks: 64, listChunks: 8, probeLists: 100000 } });
  t.after(() => index.dispose());
  vectors.forEach((v, id) => index.addChunk(id, id * 2, id * 2 + 1, v));
  await index.idle();
  const stats = index.stats();
  const recent = stats.layers[0]!.size;
  const sealedCount = count - recent;
  assert.ok(stats.sealed!.blocks >= 8 && sealedCount >= 512, `sealed ${sealedCount} in ${stats.sealed!.blocks} blocks`);

  const codes = new Int8Array(DIM);
  const scale = new Float32Array(1);
  const one = new Float64Array(1);
  for (let q = 0; q < 6; q++) {
    const queries = Array.from({ length: LAYERS }, () => Float32Array.from({ length: DIM }, () => random() - 0.5));
    for (const r of [1, 17, 64]) {
      const got = index.retrieve(queries, r);
      for (let layer = 0; layer < LAYERS; layer++) {
        const query = queries[layer]!;
        const ids: number[] = [];
        const scores: number[] = [];
        vectors.forEach((v, id) => {
          const row = v[layer]!;
          let s: number;
          if (id < sealedCount) {
            quantizeRowsInt8(row, 1, DIM, codes, scale);
            s = dotRowsInt8(codes, scale, 0, 1, DIM, query, one)[0]!;
          } else {
            // The exact store's sum: four float64 lanes over i % 4, s0 + s1 + (s2 + s3).
            const lanes = [0, 0, 0, 0];
            for (let i = 0; i < DIM; i++) lanes[i % 4]! += query[i]! * row[i]!;
            s = lanes[0]! + lanes[1]! + (lanes[2]! + lanes[3]!);
          }
          ids.push(id);
          scores.push(s);
        });
        const want = rankHits(ids, scores, r);
        const gotScores = new Map(got.chunkIds[layer]!.map((id, i) => [id, got.scores[layer]![i]!]));
        assert.deepEqual([...gotScores.keys()].sort((a, b) => a - b), [...want.ids].sort((a, b) => a - b), `query ${q} r ${r} layer ${layer}`);
        want.ids.forEach((id, i) => assert.equal(gotScores.get(id), want.scores[i], `score of ${id}`));
        // In time order (tStart = 2 id).
        assert.deepEqual(got.chunkIds[layer], [...got.chunkIds[layer]!].sort((a, b) => a - b));
      }
    }
  }
});

test('rankCollected ranks exactly as rankHits: score descending, ties by lower id, any input order', () => {
  const random = mulberry32(5);
  for (let round = 0; round < 200; round++) {
    const n = Math.floor(random() * 300);
    // Few distinct values, so ties (including at the k-th place) are common; ids in random order.
    const levels = 1 + Math.floor(random() * 6);
    const idList = Array.from({ length: n }, (_, i) => i * 3 + Math.floor(random() * 3));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [idList[i], idList[j]] = [idList[j]!, idList[i]!];
    }
    const scoreList = idList.map(() => (Math.floor(random() * levels) - 2) * 0.5 || (random() < 0.5 ? -0 : 0));
    const k = 1 + Math.floor(random() * 80);
    const got = rankCollected(Uint32Array.from(idList), Float64Array.from(scoreList), n, k);
    const want = rankHits(idList, scoreList, k);
    assert.deepEqual(got.ids, want.ids, `round ${round}`);
    assert.deepEqual(got.scores.map((s) => s + 0), want.scores.map((s) => s + 0));
  }
  assert.deepEqual(rankCollected(new Uint32Array(4), new Float64Array(4), 0, 3), { ids: [], scores: [] });
});
