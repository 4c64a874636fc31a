// Narrow reads: ids and times without the representatives, metadata for chosen ids in batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ChunkStore } from '../../memory/store/index.js';
import { checkAcrossReopen, makeChunk, rejectsWithCode, tempDir, TINY } from './helpers.js';

test('chunkIds, chunkTimes and readMetas agree with listChunks, after drops, across reopen and read-only', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: 4096 });
  const empty = store.chunkTimes();
  assert.equal(store.chunkIds().length, 0);
  assert.deepEqual([empty.ids.length, empty.tStart.length, empty.tEnd.length], [0, 0, 0]);
  // Ids with holes, so order and absence both show.
  const ids = [0, 1, 2, 5, 6, 9, 10, 11, 40, 41];
  for (const id of ids) await store.append(makeChunk(id));
  assert.deepEqual(store.dropChunks([6, 40]), [6, 40]);
  const kept = ids.filter((id) => id !== 6 && id !== 40);

  const check = (s: ChunkStore): void => {
    const all = s.listChunks({ limit: 1000 });
    assert.deepEqual(Array.from(s.chunkIds()), kept);
    assert.ok(s.chunkIds() instanceof Uint32Array);
    const times = s.chunkTimes();
    assert.deepEqual(Array.from(times.ids), kept);
    assert.deepEqual(Array.from(times.tStart), all.map((m) => m.tStart));
    assert.deepEqual(Array.from(times.tEnd), all.map((m) => m.tEnd));
    // Unsorted, duplicated, missing and dropped ids: ascending, present ones only.
    const metas = s.readMetas([41, 0, 3, 6, 41, 9, 1000]);
    assert.deepEqual(metas.map((m) => m.chunkId), [0, 9, 41]);
    for (const m of metas) assert.deepEqual(m, all.find((x) => x.chunkId === m.chunkId));
    assert.deepEqual(s.readMetas([]), []);
  };
  store = await checkAcrossReopen(store, dir, check);
  await rejectsWithCode(() => store.readMetas([1, -1]), 'BAD_INPUT');
  await store.dispose();
  await rejectsWithCode(() => store.chunkIds(), 'STORE_CLOSED');
});

test('readMetas: more ids than one query batch, every one returned once in order', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, fsync: 'none' });
  t.after(() => store.dispose());
  const n = 1300;
  const pending: Array<Promise<unknown>> = [];
  for (let id = 0; id < n; id++) pending.push(store.append(makeChunk(id, TINY, 1)));
  await Promise.all(pending);
  // Every third id, descending, plus ids past the end: crosses the 512-id batches.
  const want: number[] = [];
  for (let id = n + 50; id >= 0; id -= 3) want.push(id);
  const got = store.readMetas(want).map((m) => m.chunkId);
  assert.deepEqual(got, want.filter((id) => id < n).sort((a, b) => a - b));
  assert.equal(store.chunkIds().length, n);
  const times = store.chunkTimes();
  assert.equal(times.ids[n - 1], n - 1);
  assert.equal(times.tEnd[n - 1], 2 * (n - 1) + 2);
});

test('the narrow scans read the covering index, created on open in a store made without it', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY });
  for (const id of [3, 4, 5]) await store.append(makeChunk(id));
  await store.dispose();
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  db.exec('DROP INDEX chunks_times');
  db.close();
  // A reader cannot create it: the scans fall back to the table, same answer.
  const reader = ChunkStore.open({ dir, readOnly: true });
  assert.deepEqual(Array.from(reader.chunkIds()), [3, 4, 5]);
  await reader.dispose();
  store = ChunkStore.open({ dir });
  assert.deepEqual(Array.from(store.chunkTimes().tStart), [6, 8, 10]);
  await store.dispose();
  const db2 = new Database(path.join(dir, 'manifest.sqlite'), { readonly: true });
  t.after(() => db2.close());
  const plan = (sql: string) => (db2.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail).join('; ');
  assert.match(plan('SELECT chunk_id, t_start, t_end FROM chunks INDEXED BY chunks_times WHERE chunk_id > 0 ORDER BY chunk_id'), /COVERING INDEX chunks_times/);
});
