// stats() from the persisted per-segment summaries, checked against a brute-force count over the
// chunk rows and the segment files after every kind of change: appends, retention, drops, crash
// recovery, reopen, migration of a store made before the summaries table, and a reader; sizes() with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ChunkStore, type StoreStats } from '../../memory/store/index.js';
import type { KvStorageDtype, RecordDtype } from '../../memory/frameChunk.js';
import { makeChunk, segmentFile, tempDir, TINY } from './helpers.js';
import { CRASH_GEOMETRY, CRASH_TOKENS } from './fixtures/crashGeometry.js';

const SEG_HEADER = 32;
/** float32 record of a TINY chunk with 5 tokens: 72 + 3 layers x K,V x (2 x 5 x 8) x 4. */
const LEN32 = 72 + 3 * 2 * 2 * 5 * 8 * 4;
/** Three float32 records per segment. */
const SEGMENT_BYTES = SEG_HEADER + 3 * LEN32;

type Counted = Pick<
  StoreStats,
  'chunkCount' | 'firstChunkId' | 'lastChunkId' | 'bytesByDtype' | 'segmentBytes' | 'tStart' | 'tEnd' | 'wallStart' | 'wallEnd' | 'segments'
>;

/** The stats fields computed the slow way: every chunk row, every segment file. */
function bruteForce(dir: string): Counted {
  const db = new Database(path.join(dir, 'manifest.sqlite'), { readonly: true });
  const rows = db
    .prepare('SELECT chunk_id AS id, segment_id AS seg, length, t_start AS ts, t_end AS te, wall_time AS wall, dtype FROM chunks')
    .all() as Array<{ id: number; seg: number; length: number; ts: number; te: number; wall: number; dtype: KvStorageDtype }>;
  db.close();
  const lo = (xs: number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => Math.min(a, b)));
  const hi = (xs: number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => Math.max(a, b)));
  const bytesByDtype: Record<RecordDtype, number> = { float32: 0, float16: 0, int8: 0, kivi4: 0, archive: 0 };
  for (const r of rows) bytesByDtype[r.dtype] += r.length;
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^seg-\d+\.kvseg$/.test(f))
    .map((f) => ({ segment: Number(f.slice(4, -6)), fileBytes: fs.statSync(path.join(dir, f)).size }))
    .sort((a, b) => a.segment - b.segment);
  return {
    chunkCount: rows.length,
    firstChunkId: lo(rows.map((r) => r.id)),
    lastChunkId: hi(rows.map((r) => r.id)),
    bytesByDtype,
    segmentBytes: files.reduce((s, f) => s + f.fileBytes, 0),
    tStart: lo(rows.map((r) => r.ts)),
    tEnd: hi(rows.map((r) => r.te)),
    wallStart: lo(rows.map((r) => r.wall)),
    wallEnd: hi(rows.map((r) => r.wall)),
    segments: files.map((f) => {
      const mine = rows.filter((r) => r.seg === f.segment);
      const segmentDtypes: Partial<Record<KvStorageDtype, number>> = {};
      for (const r of mine) segmentDtypes[r.dtype] = (segmentDtypes[r.dtype] ?? 0) + r.length;
      return {
        segment: f.segment,
        fileBytes: f.fileBytes,
        chunkCount: mine.length,
        firstChunkId: lo(mine.map((r) => r.id)),
        lastChunkId: hi(mine.map((r) => r.id)),
        tStart: lo(mine.map((r) => r.ts)),
        tEnd: hi(mine.map((r) => r.te)),
        bytesByDtype: segmentDtypes,
      };
    }),
  };
}

function counted(s: StoreStats): Counted {
  const { chunkCount, firstChunkId, lastChunkId, bytesByDtype, segmentBytes, tStart, tEnd, wallStart, wallEnd, segments } = s;
  return { chunkCount, firstChunkId, lastChunkId, bytesByDtype, segmentBytes, tStart, tEnd, wallStart, wallEnd, segments };
}

function assertStats(store: ChunkStore, dir: string, what: string): Counted {
  const got = counted(store.stats());
  const expected = bruteForce(dir);
  assert.deepEqual(got, expected, what);
  // sizes(): the same two counts without the folder walk (StreamMemory.stats() asks for them).
  assert.deepEqual(store.sizes(), { chunkCount: expected.chunkCount, segmentBytes: expected.segmentBytes }, `${what}: sizes()`);
  return got;
}

function sql(dir: string, statements: string): void {
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  db.exec(statements);
  db.close();
}

test('stats equal a brute-force count after appends, dtype changes, retention, drops, damage, reopen and migration', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEGMENT_BYTES });
  assertStats(store, dir, 'empty');
  assert.equal(store.stats().chunkCount, 0);
  for (let id = 0; id < 10; id++) await store.append(makeChunk(id));
  const afterAppends = assertStats(store, dir, 'appends');
  assert.equal(afterAppends.chunkCount, 10, 'the brute force is not vacuous');
  assert.equal(afterAppends.segments.length, 4);
  await store.dispose();

  // A second session in another dtype: bytes by dtype split.
  store = ChunkStore.open({ dir, dtype: 'float16', segmentBytes: SEGMENT_BYTES });
  for (let id = 10; id < 20; id++) await store.append(makeChunk(id));
  const mixed = assertStats(store, dir, 'two dtypes');
  assert.ok(mixed.bytesByDtype.float16 > 0 && mixed.bytesByDtype.float32 > 0);

  const r = store.applyRetention({ maxBytes: 4 * SEGMENT_BYTES });
  assert.ok(r.deletedSegments.length >= 2, `retention deleted ${JSON.stringify(r.deletedSegments)}`);
  assertStats(store, dir, 'retention');

  // Drops: a whole segment's chunks (its summary goes, its file stays), the oldest kept chunk, the newest.
  const segs = store.stats().segments.filter((s) => s.chunkCount > 0);
  const whole = segs[1]!;
  const wholeIds: number[] = [];
  for (let id = whole.firstChunkId!; id <= whole.lastChunkId!; id++) wholeIds.push(id);
  store.dropChunks([...wholeIds, segs[0]!.firstChunkId!, 19]);
  const dropped = assertStats(store, dir, 'dropChunks');
  assert.equal(dropped.segments.find((s) => s.segment === whole.segment)?.chunkCount, 0);
  assert.equal(dropped.lastChunkId, 18);
  await store.dispose();

  store = ChunkStore.open({ dir, segmentBytes: SEGMENT_BYTES });
  // Recovery deleted the emptied segment and cut the dropped newest record off: files differ, rows not.
  const reopened = assertStats(store, dir, 'reopen');
  const rowsOnly = ({ segments: _s, segmentBytes: _b, ...rest }: Counted) => rest;
  assert.deepEqual(rowsOnly(reopened), rowsOnly(dropped));
  assert.deepEqual(store.recovery.deletedSegments, [whole.segment]);
  // Appends after drops and reopen continue the totals.
  for (let id = 20; id < 24; id++) await store.append(makeChunk(id));
  assertStats(store, dir, 'appends after reopen');
  await store.dispose();

  // Damage found by recovery: a segment cut short mid-record and a segment file gone.
  const live = bruteForce(dir).segments.filter((s) => s.chunkCount > 0);
  fs.truncateSync(segmentFile(dir, live[1]!.segment), live[1]!.fileBytes - 50);
  fs.rmSync(segmentFile(dir, live[2]!.segment));
  store = ChunkStore.open({ dir, segmentBytes: SEGMENT_BYTES });
  assert.ok(store.recovery.droppedChunks.length >= 2, JSON.stringify(store.recovery.droppedChunks));
  const recovered = assertStats(store, dir, 'recovery');
  await store.dispose();

  // A store from before the summaries table: built from the rows on open, same stats.
  sql(dir, 'DROP TABLE segment_summaries');
  store = ChunkStore.open({ dir, segmentBytes: SEGMENT_BYTES });
  assert.deepEqual(assertStats(store, dir, 'migrated'), recovered);
  await store.dispose();

  // Rows changed behind the table (an older Vigil's retention): the end ids disagree, so it is rebuilt.
  sql(dir, `DELETE FROM chunks WHERE chunk_id = ${recovered.firstChunkId}`);
  store = ChunkStore.open({ dir, segmentBytes: SEGMENT_BYTES });
  const rebuilt = assertStats(store, dir, 'stale table rebuilt');
  assert.equal(rebuilt.chunkCount, recovered.chunkCount - 1);
  await store.dispose();
});

test('stats come from RAM in the writer (no query over the rows) and from the summaries table in a reader', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEGMENT_BYTES });
  t.after(() => store.dispose());
  for (let id = 0; id < 7; id++) await store.append(makeChunk(id));
  const reader = ChunkStore.open({ dir, readOnly: true });
  t.after(() => reader.dispose());
  assert.deepEqual(counted(reader.stats()), counted(store.stats()));
  // The writer commits more: the reader's next stats() sees them.
  for (let id = 7; id < 11; id++) await store.append(makeChunk(id));
  assert.deepEqual(counted(reader.stats()), bruteForce(dir));
  assert.equal(reader.stats().chunkCount, 11);

  // A row deleted behind the writer's back (not through the store) does not change its stats:
  // they are not computed from the rows.
  const before = counted(store.stats());
  sql(dir, 'DELETE FROM chunks WHERE chunk_id = 5');
  assert.deepEqual(counted(store.stats()), before);
  assert.equal(bruteForce(dir).chunkCount, before.chunkCount - 1);
});

test('a reader of a store not yet migrated computes the stats from the rows', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEGMENT_BYTES });
  for (let id = 0; id < 5; id++) await store.append(makeChunk(id));
  await store.dispose();
  sql(dir, 'DROP TABLE segment_summaries');
  const reader = ChunkStore.open({ dir, readOnly: true });
  t.after(() => reader.dispose());
  assertStats(reader, dir, 'unmigrated reader');
  assert.equal(reader.stats().chunkCount, 5);
});

test('after a crash between a payload write and its row commit, stats equal the committed rows', async (t) => {
  const dir = tempDir(t);
  const fixture = fileURLToPath(new URL('./fixtures/appendLoop.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, '6'], {
    cwd: fileURLToPath(new URL('../../', import.meta.url)),
    stdio: 'ignore',
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(guard);
  assert.equal(signal, 'SIGKILL');
  const store = ChunkStore.open({ dir });
  t.after(() => store.dispose());
  assert.equal(store.recovery.truncatedSegments.length, 1, 'the uncommitted record was cut');
  const s = assertStats(store, dir, 'after crash');
  assert.deepEqual([s.chunkCount, s.firstChunkId, s.lastChunkId], [6, 0, 5]);
  await store.append(makeChunk(6, CRASH_GEOMETRY, CRASH_TOKENS));
  assert.equal(assertStats(store, dir, 'append after crash').chunkCount, 7);
});
