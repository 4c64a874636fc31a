import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayerIndex } from '../../retrieval/layerIndex.js';
import { syntheticFrames } from './syntheticFrames.js';

// The graph path end to end (offset, hnswlib 'ip', score conversion, ranking) against exact search
// on 20k chunks of 192-d (smolvlm2-256m: 3 KV heads x 64), with the default graph parameters.
// The data are camera-like scenes with motion; on near-static scenes recall is lower (bench/index.ts
// and docs/retrieval.md report both).
test('HNSW recall@64 >= 0.99 against exact search on 20k x 192-d scene data', (t) => {
  const count = 20_000;
  const dim = 192;
  const frames = syntheticFrames({ count, dim, seed: 1 });
  const entries = Array.from({ length: count }, (_, i) => ({ id: i, vector: frames.vectors.subarray(i * dim, (i + 1) * dim) }));
  const started = performance.now();
  const graph = LayerIndex.rebuild({ dim, hnswThreshold: 0 }, entries);
  const buildMs = performance.now() - started;
  const exact = LayerIndex.rebuild({ dim, hnswThreshold: Infinity }, entries);
  assert.equal(graph.mode, 'hnsw');
  assert.equal(exact.mode, 'exact');

  const queries = 50;
  let found = 0;
  for (let q = 0; q < queries; q++) {
    const query = frames.query(1000 + q);
    const want = new Set(exact.search(query, 64).ids);
    const got = graph.search(query, 64);
    assert.equal(got.ids.length, 64);
    for (const id of got.ids) if (want.has(id)) found++;
    // Scores come back as true dot products (hnswlib's 1 - distance plus the graph's offset term).
    const exactScores = exact.scoreIds(query, Uint32Array.from(got.ids).sort());
    const byId = new Map(Array.from(Uint32Array.from(got.ids).sort(), (id, i) => [id, exactScores[i]!]));
    got.ids.forEach((id, i) => {
      const e = byId.get(id)!;
      assert.ok(Math.abs(got.scores[i]! - e) <= 1e-4 * Math.max(1, Math.abs(e)), `score of chunk ${id}: ${got.scores[i]} vs ${e}`);
    });
  }
  const recall = found / (queries * 64);
  t.diagnostic(`recall@64 ${recall.toFixed(4)}, graph build ${(buildMs / 1000).toFixed(1)} s`);
  assert.ok(recall >= 0.99, `recall@64 ${recall.toFixed(4)} < 0.99`);
});
