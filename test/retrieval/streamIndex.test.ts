import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mulberry32 } from '../../kernels/sampling.js';
import { StreamIndex, type IndexedChunk, type StreamIndexOptions } from '../../retrieval/streamIndex.js';
import { assertSameHits, bruteForce, isVigil, randomVector, withTempDir } from './helpers.js';

const LAYERS = 3;
const DIM = 16;

/** Chunks at 2 s spacing (0.5 fps), ids from 0, each layer with its own random data. */
function makeChunks(count: number, seed: number, firstId = 0): IndexedChunk[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => ({
    chunkId: firstId + i,
    tStart: 2 * (firstId + i),
    tEnd: 2 * (firstId + i) + 2,
    representatives: Array.from({ length: LAYERS }, () => randomVector(DIM, random)),
  }));
}

function queriesOf(seed: number): Float32Array[] {
  const random = mulberry32(seed);
  return Array.from({ length: LAYERS }, () => randomVector(DIM, random));
}

function build(options: Partial<StreamIndexOptions>, chunks: IndexedChunk[]): StreamIndex {
  const index = StreamIndex.create({ numLayers: LAYERS, dim: DIM, ...options });
  for (const c of chunks) index.addChunk(c.chunkId, c.tStart, c.tEnd, c.representatives);
  return index;
}

/** Per layer, the reference top-r over the given chunks, returned in time order. */
function reference(chunks: IndexedChunk[], queries: Float32Array[], r: number): { ids: number[][]; scores: number[][] } {
  const ids: number[][] = [];
  const scores: number[][] = [];
  queries.forEach((q, layer) => {
    const top = bruteForce(q, chunks.map((c) => ({ id: c.chunkId, vector: c.representatives[layer]! })), r);
    const byId = new Map(top.ids.map((id, i) => [id, top.scores[i]!]));
    const time = new Map(chunks.map((c) => [c.chunkId, c.tStart]));
    const ordered = [...top.ids].sort((a, b) => time.get(a)! - time.get(b)! || a - b);
    ids.push(ordered);
    scores.push(ordered.map((id) => byId.get(id)!));
  });
  return { ids, scores };
}

test('per-layer retrieval: each layer its own top-r, sorted by time, equal lengths', () => {
  const chunks = makeChunks(200, 1);
  const index = build({}, chunks);
  const queries = queriesOf(2);
  const got = index.retrieve(queries, 10);
  const want = reference(chunks, queries, 10);
  got.chunkIds.forEach((ids, layer) => assertSameHits({ ids, scores: got.scores[layer]! }, { ids: want.ids[layer]!, scores: want.scores[layer]! }, `layer ${layer}`));
  // Layers hold different data, so they pick different sets.
  assert.notDeepEqual(got.chunkIds[0], got.chunkIds[1]);
  assert.notDeepEqual(got.chunkIds[1], got.chunkIds[2]);
  for (const ids of got.chunkIds) {
    assert.equal(ids.length, 10);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, 'time order (time rises with id here)');
  }
  const union = [...new Set(got.chunkIds.flat())].sort((a, b) => a - b);
  assert.deepEqual(got.union, union);
});

test('time order follows tStart, not the id, and ties in time go by id', () => {
  const random = mulberry32(3);
  const times = [50, 10, 30, 10, 0];
  const index = StreamIndex.create({ numLayers: 1, dim: 4 });
  times.forEach((t, id) => index.addChunk(id, t, t + 1, [randomVector(4, random)]));
  const got = index.retrieve([randomVector(4, random)], 5);
  assert.deepEqual(got.chunkIds[0], [4, 1, 3, 2, 0]);
});

test('shared mode returns one set for every layer: summed scores or one layer', () => {
  const chunks = makeChunks(150, 4);
  const index = build({}, chunks);
  const queries = queriesOf(5);
  const summed = index.retrieve(queries, 12, { mode: 'shared' });
  for (const ids of summed.chunkIds) assert.deepEqual(ids, summed.chunkIds[0]);
  assert.deepEqual(summed.union, summed.chunkIds[0]);
  // Reference: score = sum over layers of dot(query_l, representative_l).
  const total = chunks.map((c) => {
    let s = 0;
    c.representatives.forEach((v, l) => {
      let d = 0;
      for (let i = 0; i < DIM; i++) d += queries[l]![i]! * v[i]!;
      s += d;
    });
    return { id: c.chunkId, s };
  });
  total.sort((a, b) => b.s - a.s || a.id - b.id);
  assert.deepEqual(summed.chunkIds[0], total.slice(0, 12).map((t) => t.id).sort((a, b) => a - b));
  const one = index.retrieve(queries, 12, { mode: 'shared', sharedLayer: 1 });
  const perLayer = index.retrieve(queries, 12);
  for (const ids of one.chunkIds) assert.deepEqual(ids, perLayer.chunkIds[1]);
});

test('shared sum in graph mode: exact sums over the union of the layers\' own top-r', () => {
  const chunks = makeChunks(600, 6);
  const exact = build({}, chunks);
  const graph = build({ hnswThreshold: 0, hnsw: { m: 12, ef: 600 } }, chunks);
  assert.equal(graph.stats().layers[0]!.mode, 'hnsw');
  const queries = queriesOf(7);
  const got = graph.retrieve(queries, 8, { mode: 'shared' });
  for (const ids of got.chunkIds) assert.deepEqual(ids, got.chunkIds[0]);
  // The reference: candidates = union of each layer's own graph top-8, ranked by the sum of all
  // layers' dot products.
  const own = graph.retrieve(queries, 8);
  const candidates = new Set(own.union);
  const sum = (c: IndexedChunk): number =>
    c.representatives.reduce((s, v, l) => s + v.reduce((d, x, i) => d + x * queries[l]![i]!, 0), 0);
  const ranked = chunks.filter((c) => candidates.has(c.chunkId)).sort((a, b) => sum(b) - sum(a) || a.chunkId - b.chunkId);
  const want = ranked.slice(0, 8).sort((a, b) => a.chunkId - b.chunkId);
  assert.deepEqual(got.chunkIds[0], want.map((c) => c.chunkId));
  want.forEach((c, i) => assert.ok(Math.abs(got.scores[0]![i]! - sum(c)) < 1e-4, `score of chunk ${c.chunkId}`));
  // On independent random layers the exact sum's winners often lie outside every layer's own top-8:
  // the graph-mode shared sum is an approximation (docs/retrieval.md).
  const full = exact.retrieve(queries, 8, { mode: 'shared' });
  assert.ok(full.chunkIds[0]!.some((id) => !candidates.has(id)), 'this data should show the approximation');
});

test('time range filter and exclusion', () => {
  const chunks = makeChunks(300, 8);
  for (const options of [{}, { hnswThreshold: 0, hnsw: { m: 12, ef: 300 }, exactFilterLimit: 50 }]) {
    const index = build(options, chunks);
    const queries = queriesOf(9);
    // [100 s, 160 s] overlaps chunks whose [2i, 2i+2] touches it: ids 49..80 (ends included).
    const inRange = chunks.filter((c) => c.tEnd >= 100 && c.tStart <= 160);
    assert.equal(inRange[0]!.chunkId, 49);
    assert.equal(inRange.at(-1)!.chunkId, 80);
    const exclude = new Set([50, 51, 60, 999]);
    const got = index.retrieve(queries, 8, { timeRange: { start: 100, end: 160 }, exclude });
    const want = reference(inRange.filter((c) => !exclude.has(c.chunkId)), queries, 8);
    assert.deepEqual(got.chunkIds, want.ids);
    // Exclusion alone, forcing the graph's filtered search (exactFilterLimit 50 < 297 allowed).
    const skip = new Set(index.retrieve(queries, 5).chunkIds[0]);
    const next = index.retrieve(queries, 5, { exclude: skip });
    assert.ok(next.chunkIds[0]!.every((id) => !skip.has(id)), 'an excluded id came back');
    assert.equal(next.chunkIds[0]!.length, 5);
    // An open-ended range and an empty one.
    assert.deepEqual(index.retrieve(queries, 500, { timeRange: { start: 599, end: Infinity } }).chunkIds, [[299], [299], [299]]);
    assert.deepEqual(index.retrieve(queries, 5, { timeRange: { start: 1e6, end: 2e6 } }).chunkIds, [[], [], []]);
  }
});

test('r larger than the count returns every chunk on every layer', () => {
  const chunks = makeChunks(7, 10);
  const index = build({}, chunks);
  const got = index.retrieve(queriesOf(11), 64);
  for (const ids of got.chunkIds) assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(StreamIndex.create({ numLayers: LAYERS, dim: DIM }).retrieve(queriesOf(11), 64).chunkIds, [[], [], []]);
});

test('removeChunks drops chunks from every layer and the catalog', () => {
  const chunks = makeChunks(120, 12);
  for (const options of [{}, { hnswThreshold: 0, hnsw: { m: 12, ef: 200 } }]) {
    const index = build(options, chunks);
    const queries = queriesOf(13);
    const first = index.retrieve(queries, 10);
    const gone = new Set(first.union);
    assert.equal(index.removeChunks([...gone, 5000]), gone.size);
    assert.equal(index.size, 120 - gone.size);
    assert.equal(index.has(first.union[0]!), false);
    const after = index.retrieve(queries, 10);
    assert.ok(after.union.every((id) => !gone.has(id)), 'a removed id came back');
    assert.deepEqual(after.chunkIds, reference(chunks.filter((c) => !gone.has(c.chunkId)), queries, 10).ids);
    // The removed ids may be indexed again.
    index.addChunk(first.union[0]!, 0, 1, chunks[first.union[0]!]!.representatives);
    assert.equal(index.has(first.union[0]!), true);
  }
});

test('save/load round trip and rebuild give identical results', async () => {
  await withTempDir(async (dir) => {
    const chunks = makeChunks(700, 14);
    for (const [name, options] of [
      ['exact', {}],
      ['graph', { hnswThreshold: 300, backfillPerAdd: 1, hnsw: { m: 10, ef: 48 } }],
    ] as const) {
      const index = build(options, chunks);
      await index.completeBackfill();
      index.removeChunks([3, 4, 400]);
      const folder = join(dir, name);
      await index.save(folder);
      // Saving again replaces the folder in place.
      await index.save(folder);
      assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(name)), [name]);
      const loaded = await StreamIndex.load(folder, { numLayers: LAYERS, dim: DIM, space: 'ip' });
      assert.deepEqual(loaded.stats(), { ...index.stats(), layers: index.stats().layers.map((l) => ({ ...l, shortSearches: 0 })) });
      const kept = chunks.filter((c) => ![3, 4, 400].includes(c.chunkId));
      const rebuilt = await StreamIndex.rebuild({ numLayers: LAYERS, dim: DIM, ...options }, [...kept].reverse());
      for (let q = 0; q < 5; q++) {
        const queries = queriesOf(100 + q);
        const opts = q % 2 === 0 ? {} : { timeRange: { start: 200, end: 900 }, exclude: new Set([150]) };
        const want = index.retrieve(queries, 32, opts);
        assert.deepEqual(loaded.retrieve(queries, 32, opts), want, `${name} load q=${q}`);
        if (name === 'exact') assert.deepEqual(rebuilt.retrieve(queries, 32, opts), want, `${name} rebuild q=${q}`);
      }
      // A graph rebuilt from the same list twice is the same graph (ids in order, fixed seed).
      if (name === 'graph') {
        const again = await StreamIndex.rebuild({ numLayers: LAYERS, dim: DIM, ...options }, kept);
        for (let q = 0; q < 5; q++) assert.deepEqual(again.retrieve(queriesOf(200 + q), 32), rebuilt.retrieve(queriesOf(200 + q), 32));
      }
    }
  });
});

test('changes made while a save runs are applied after it', async () => {
  await withTempDir(async (dir) => {
    const chunks = makeChunks(60, 15);
    const index = build({ hnswThreshold: 0, hnsw: { m: 8 } }, chunks.slice(0, 50));
    const saving = index.save(dir);
    for (const c of chunks.slice(50)) index.addChunk(c.chunkId, c.tStart, c.tEnd, c.representatives);
    index.removeChunks([0]);
    assert.throws(() => index.addChunk(55, 0, 1, chunks[55]!.representatives), isVigil('BAD_INPUT', /already indexed/));
    assert.equal(index.size, 50, 'not applied yet');
    await saving;
    assert.equal(index.size, 59);
    assert.equal(index.has(0), false);
    assert.equal((await StreamIndex.load(dir)).size, 50, 'the saved index is the state at the start of the save');
  });
});

test('bad input, bad config and damaged folders are clear VigilErrors', async () => {
  const index = build({}, makeChunks(20, 16));
  const q = queriesOf(17);
  const rep = makeChunks(1, 18, 100)[0]!.representatives;
  assert.throws(() => StreamIndex.create({ numLayers: LAYERS, dim: DIM, space: 'euclid' as never }), isVigil('BAD_CONFIG', /unknown similarity space/));
  assert.throws(() => StreamIndex.create({ numLayers: 0, dim: DIM }), isVigil('BAD_CONFIG', /numLayers/));
  assert.throws(() => index.retrieve(q, 0), isVigil('BAD_INPUT', /r must be an integer >= 1/));
  assert.throws(() => index.retrieve(q.slice(1), 4), isVigil('SHAPE_MISMATCH', /expected 3 layer queries, got 2/));
  assert.throws(() => index.retrieve([q[0]!, new Float32Array(DIM + 3), q[2]!], 4), isVigil('SHAPE_MISMATCH', /query of layer 1 has 19 values/));
  assert.throws(() => index.retrieve(q, 4, { timeRange: { start: 5, end: 1 } }), isVigil('BAD_INPUT', /timeRange/));
  assert.throws(() => index.retrieve(q, 4, { mode: 'shared', sharedLayer: 3 }), isVigil('BAD_INPUT', /sharedLayer/));
  assert.throws(() => index.retrieve(q, 4, { mode: 'both' as never }), isVigil('BAD_INPUT', /mode/));
  assert.throws(() => index.addChunk(100, 0, 1, rep.slice(1)), isVigil('SHAPE_MISMATCH', /2 representatives, the index has 3 layers/));
  assert.throws(() => index.addChunk(100, 0, 1, [rep[0]!, rep[1]!, new Float32Array(8)]), isVigil('SHAPE_MISMATCH', /layer 2 has 8 values/));
  assert.throws(() => index.addChunk(100, 5, 1, rep), isVigil('BAD_INPUT', /ends/));
  assert.throws(() => index.addChunk(100, NaN, 1, rep), isVigil('BAD_INPUT', /tStart/));
  assert.throws(() => index.addChunk(3, 0, 1, rep), isVigil('BAD_INPUT', /already indexed/));
  assert.equal(index.size, 20, 'failed adds left nothing behind');
  await assert.rejects(StreamIndex.rebuild({ numLayers: LAYERS, dim: DIM }, [...makeChunks(3, 19), ...makeChunks(1, 20)]), isVigil('BAD_INPUT', /appears twice/));

  await withTempDir(async (dir) => {
    await assert.rejects(StreamIndex.load(join(dir, 'none')), isVigil('FILE_NOT_FOUND'));
    await index.save(dir);
    await assert.rejects(StreamIndex.load(dir, { space: 'cosine' }), isVigil('BAD_CONFIG', /built for space 'ip'/));
    await assert.rejects(StreamIndex.load(dir, { numLayers: 30 }), isVigil('BAD_CONFIG', /3 layers/));
    await assert.rejects(StreamIndex.load(dir, { space: 'dot' as never }), isVigil('BAD_CONFIG', /unknown similarity space/));
    // A layer that lost a chunk no longer matches the catalog.
    const other = build({}, makeChunks(19, 16));
    await other.save(join(dir, 'other'));
    await rm(join(dir, 'layer-001'), { recursive: true });
    await rename(join(dir, 'other', 'layer-001'), join(dir, 'layer-001'));
    await assert.rejects(StreamIndex.load(dir), isVigil('INDEX_CORRUPT', /does not hold the chunks/));
    await writeFile(join(dir, 'chunks.bin'), 'short');
    await assert.rejects(StreamIndex.load(dir), isVigil('INDEX_CORRUPT', /bytes/));
    await writeFile(join(dir, 'index.json'), JSON.stringify({ format: 'something-else' }));
    await assert.rejects(StreamIndex.load(dir), isVigil('INDEX_CORRUPT', /not a Vigil stream index/));
  });
});
