/**
 * reconcileIndex / rebuildIndex / openStreamIndex on a real ChunkStore and a real StreamIndex (tiny
 * geometry, temp folders). Each case checks the ids against the test's own bookkeeping and the
 * retrieval results against StreamIndex.rebuild over the original chunks (retrieval's own bulk
 * builder, independent of the code under test); the common cases also check what was read.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { mulberry32 } from '../../kernels/sampling.js';
import { ChunkStore } from '../../memory/store/index.js';
import { StreamIndex, type SimilaritySpace } from '../../retrieval/index.js';
import { diffSortedIds, openStreamIndex, rebuildIndex, reconcileIndex } from '../../src/engine/indexReconcile.js';
import { asStoredRepresentatives } from '../../memory/store/representatives.js';
import { makeChunk, tempDir, TINY } from '../memory/helpers.js';

const DIM = TINY.numKvHeads * TINY.headDim;
const OPTIONS = { numLayers: TINY.numLayers, dim: DIM };
const LEN = 1992; // one float32 TINY record of 5 tokens (test/memory/storeRetention.test.ts)
const SEG = 32 + 3 * LEN; // three records per segment

interface Fixture {
  storeDir: string;
  indexDir: string;
}

function fixture(t: TestContext): Fixture {
  const dir = tempDir(t, 'vigil-reconcile-');
  return { storeDir: path.join(dir, 'kv'), indexDir: path.join(dir, 'index') };
}

function openStore(f: Fixture, t: TestContext, segmentBytes = SEG): ChunkStore {
  const store = ChunkStore.open({ dir: f.storeDir, geometry: TINY, segmentBytes, fsync: 'none' });
  t.after(() => store.dispose());
  return store;
}

async function appendRange(store: ChunkStore, from: number, to: number): Promise<void> {
  for (let id = from; id < to; id++) await store.append(makeChunk(id));
  await store.flush();
}

/** makeChunk(id) with the representatives the manifest gives back (what the engine indexes). */
function indexedChunk(id: number): ReturnType<typeof makeChunk> {
  const chunk = makeChunk(id);
  return { ...chunk, representatives: asStoredRepresentatives(chunk.representatives) };
}

/** An index over indexedChunk(ids), saved to dir: the state a session leaves at its last save. */
async function saveIndex(dir: string, ids: readonly number[], space: SimilaritySpace = 'ip'): Promise<void> {
  const index = await StreamIndex.rebuild({ ...OPTIONS, space }, ids.map(indexedChunk));
  await index.save(dir);
}

/**
 * Spy (documented as such): replaces this store instance's row-reading methods with wrappers that
 * count manifest rows returned with representatives (listChunks, readMetas) and full id listings
 * (chunkIds). The store itself stays real.
 */
function spyOnReads(store: ChunkStore): { rows: number; idListings: number } {
  const counts = { rows: 0, idListings: 0 };
  const listChunks = store.listChunks.bind(store);
  const readMetas = store.readMetas.bind(store);
  const chunkIds = store.chunkIds.bind(store);
  store.listChunks = (options) => {
    const rows = listChunks(options);
    counts.rows += rows.length;
    return rows;
  };
  store.readMetas = (ids) => {
    const rows = readMetas(ids);
    counts.rows += rows.length;
    return rows;
  };
  store.chunkIds = () => {
    counts.idListings++;
    return chunkIds();
  };
  return counts;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** Same ids as `want`, and the same retrieval as an index built from scratch over those chunks. */
async function assertMatchesScratch(index: StreamIndex, want: readonly number[]): Promise<void> {
  assert.deepEqual(Array.from(index.chunkIdRange()), [...want]);
  assert.deepEqual(index.chunkIds(), [...want]);
  const scratch = await StreamIndex.rebuild({ ...OPTIONS, space: index.space }, want.map(indexedChunk));
  const random = mulberry32(11);
  for (let q = 0; q < 4; q++) {
    const queries = Array.from({ length: TINY.numLayers }, () => Float32Array.from({ length: DIM }, () => random() * 2 - 1));
    for (const options of [{}, { timeRange: { start: 10, end: 30 } }]) {
      const got = index.retrieve(queries, 4, options);
      const ref = scratch.retrieve(queries, 4, options);
      assert.deepEqual(got, ref);
    }
  }
}

test('a complete saved index: nothing changes and no row is read', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 20);
  await saveIndex(f.indexDir, range(0, 20));
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  const r = reconcileIndex(index, store);
  assert.deepEqual(r, { added: 0, removed: 0, skipped: [] });
  assert.deepEqual(reads, { rows: 0, idListings: 0 });
  await assertMatchesScratch(index, range(0, 20));
});

test('an index behind the manifest (chunks committed after the last save, then a crash): only the new rows are read', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 12);
  await saveIndex(f.indexDir, range(0, 12));
  await appendRange(store, 12, 20);
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  const r = reconcileIndex(index, store);
  assert.deepEqual(r, { added: 8, removed: 0, skipped: [] });
  assert.deepEqual(reads, { rows: 8, idListings: 0 });
  await assertMatchesScratch(index, range(0, 20));
});

test('retention deleted old segments since the save: their ids leave the index, nothing is read', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 20);
  await saveIndex(f.indexDir, range(0, 20));
  const gone = store.applyRetention({ maxBytes: 3 * SEG }).removedChunkIds;
  assert.ok(gone.length >= 9, `retention removed ${gone.length} chunks`);
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  const r = reconcileIndex(index, store);
  assert.deepEqual(r, { added: 0, removed: gone.length, skipped: [] });
  assert.deepEqual(reads, { rows: 0, idListings: 0 });
  await assertMatchesScratch(index, range(gone.length, 20));
});

test('an index ahead of the manifest (rows a crash took back): the extra ids are removed', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 15);
  await saveIndex(f.indexDir, range(0, 19));
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  assert.deepEqual(reconcileIndex(index, store), { added: 0, removed: 4, skipped: [] });
  assert.deepEqual(reads, { rows: 0, idListings: 0 });
  await assertMatchesScratch(index, range(0, 15));
});

test('rows dropped in the middle (repair) plus rows added after the save: one id-only diff, representatives read only for missing rows', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 20);
  await saveIndex(f.indexDir, range(0, 20));
  assert.deepEqual(store.dropChunks([5, 9, 13]), [5, 9, 13]);
  await appendRange(store, 20, 23);
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  const r = reconcileIndex(index, store);
  assert.deepEqual(r, { added: 3, removed: 3, skipped: [] });
  assert.deepEqual(reads, { rows: 3, idListings: 1 });
  const want = range(0, 23).filter((id) => ![5, 9, 13].includes(id));
  await assertMatchesScratch(index, want);
  // Once agreed, the next reconcile is the common case again.
  const again = spyOnReads(store);
  assert.deepEqual(reconcileIndex(index, store), { added: 0, removed: 0, skipped: [] });
  assert.deepEqual(again, { rows: 0, idListings: 0 });
});

test('an index missing a middle row (an add that once failed) gets it back from the full diff', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 10);
  await saveIndex(f.indexDir, range(0, 10).filter((id) => id !== 4));
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const reads = spyOnReads(store);
  assert.deepEqual(reconcileIndex(index, store), { added: 1, removed: 0, skipped: [] });
  assert.deepEqual(reads, { rows: 1, idListings: 1 });
  await assertMatchesScratch(index, range(0, 10));
});

/** Overwrites a manifest row's representatives with raw SQL (the store closed): layer 1, value 3 becomes NaN. */
function poisonRepresentatives(storeDir: string, chunkId: number): void {
  const db = new Database(path.join(storeDir, 'manifest.sqlite'));
  try {
    const reps = makeChunk(chunkId).representatives.map((v) => v.slice());
    reps[1]![3] = NaN;
    const blob = Buffer.concat(reps.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
    assert.equal(db.prepare('UPDATE chunks SET representatives = ? WHERE chunk_id = ?').run(blob, chunkId).changes, 1);
  } finally {
    db.close();
  }
}

test('a row with a NaN representative is skipped and reported by reconcile, rebuild and open, never thrown', async (t) => {
  const f = fixture(t);
  {
    const store = ChunkStore.open({ dir: f.storeDir, geometry: TINY, segmentBytes: SEG, fsync: 'none' });
    await appendRange(store, 0, 12);
    await store.dispose();
  }
  poisonRepresentatives(f.storeDir, 7);
  await saveIndex(f.indexDir, range(0, 6));
  const store = openStore(f, t);
  const want = range(0, 12).filter((id) => id !== 7);

  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  const r = reconcileIndex(index, store);
  assert.equal(r.added, 5);
  assert.equal(r.removed, 0);
  assert.equal(r.skipped.length, 1);
  assert.equal(r.skipped[0]!.chunkId, 7);
  assert.match(r.skipped[0]!.reason, /chunk 7, layer 1.*NaN/);
  await assertMatchesScratch(index, want);

  // The row stays in the manifest, so later restarts take the full diff and report it again.
  const reads = spyOnReads(store);
  const again = reconcileIndex(index, store);
  assert.deepEqual([again.added, again.removed, again.skipped.map((s) => s.chunkId)], [0, 0, [7]]);
  assert.deepEqual(reads, { rows: 1, idListings: 1 });

  const rebuilt = await rebuildIndex(store, OPTIONS);
  assert.deepEqual(rebuilt.skipped.map((s) => s.chunkId), [7]);
  await assertMatchesScratch(rebuilt.index, want);

  const opened = await openStreamIndex(path.join(f.indexDir, '..', 'no-index-here'), store, OPTIONS);
  assert.equal(opened.rebuilt, true);
  assert.deepEqual(opened.skipped.map((s) => s.chunkId), [7]);
  assert.equal(opened.added, 11);
  await assertMatchesScratch(opened.index, want);
});

test('openStreamIndex: a saved index is loaded and reconciled; a missing one or one of another similarity space is rebuilt', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 14);

  const missing = await openStreamIndex(f.indexDir, store, OPTIONS);
  assert.deepEqual([missing.rebuilt, missing.rebuildReason, missing.added, missing.removed], [true, 'no saved index', 14, 0]);
  await assertMatchesScratch(missing.index, range(0, 14));

  await saveIndex(f.indexDir, range(0, 10));
  const loaded = await openStreamIndex(f.indexDir, store, OPTIONS);
  assert.deepEqual([loaded.rebuilt, loaded.rebuildReason, loaded.added, loaded.removed], [false, null, 4, 0]);
  await assertMatchesScratch(loaded.index, range(0, 14));

  await saveIndex(f.indexDir, range(0, 14), 'cosine');
  const other = await openStreamIndex(f.indexDir, store, { ...OPTIONS, space: 'ip' });
  assert.equal(other.rebuilt, true);
  assert.match(other.rebuildReason!, /space 'cosine'/);
  assert.equal(other.index.space, 'ip');
  await assertMatchesScratch(other.index, range(0, 14));
  // And the cosine index is used as is when cosine is asked for.
  const cosine = await openStreamIndex(f.indexDir, store, { ...OPTIONS, space: 'cosine' });
  assert.deepEqual([cosine.rebuilt, cosine.index.space, cosine.added], [false, 'cosine', 0]);
  await assertMatchesScratch(cosine.index, range(0, 14));
});

test('an empty store empties the index', async (t) => {
  const f = fixture(t);
  const store = openStore(f, t);
  await appendRange(store, 0, 3);
  await saveIndex(f.indexDir, range(0, 3));
  store.dropChunks([0, 1, 2]);
  const index = await StreamIndex.load(f.indexDir, OPTIONS);
  assert.deepEqual(reconcileIndex(index, store), { added: 0, removed: 3, skipped: [] });
  assert.equal(index.size, 0);
  assert.equal(index.maxChunkId(), null);
});

test('diffSortedIds and the index id range helpers', async () => {
  const { onlyInA, onlyInB } = diffSortedIds(Uint32Array.of(1, 2, 4, 7, 9), Uint32Array.of(0, 2, 3, 7, 10, 11));
  assert.deepEqual([Array.from(onlyInA), Array.from(onlyInB)], [[1, 4, 9], [0, 3, 10, 11]]);
  const index = await StreamIndex.rebuild(OPTIONS, [3, 5, 8, 13].map((id) => makeChunk(id)));
  assert.deepEqual([index.minChunkId(), index.maxChunkId()], [3, 13]);
  assert.deepEqual(Array.from(index.chunkIdRange(4, 13)), [5, 8]);
  assert.deepEqual(Array.from(index.chunkIdRange(5, 9)), [5, 8]);
  assert.deepEqual(Array.from(index.chunkIdRange(14)), []);
  assert.deepEqual(Array.from(index.chunkIdRange(9, 4)), []);
  assert.deepEqual(Array.from(StreamIndex.create(OPTIONS).chunkIdRange()), []);
});
