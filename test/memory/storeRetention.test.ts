import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ChunkStore } from '../../memory/store/index.js';
import { selectSegmentsToDelete, type RetentionSegment } from '../../memory/store/retention.js';
import { assertChunkBitExact, makeChunk, tempDir, TINY } from './helpers.js';

const LEN = 1992; // one float32 TINY record of 5 tokens
const SEG = 32 + 3 * LEN; // three records per segment

function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.kvseg')).sort();
}

/** Manifest, files and reads agree: every listed chunk reads back exactly, files are the stats' segments. */
async function assertConsistent(store: ChunkStore, dir: string, ids: number[]): Promise<void> {
  assert.deepEqual(store.listChunks({ limit: 10_000 }).map((m) => m.chunkId), ids);
  const s = store.stats();
  assert.deepEqual(segmentFiles(dir), s.segments.map((x) => `seg-${String(x.segment).padStart(6, '0')}.kvseg`));
  assert.equal(s.segmentBytes, segmentFiles(dir).reduce((n, f) => n + fs.statSync(`${dir}/${f}`).size, 0));
  const got = await store.readChunks(ids);
  assert.deepEqual(got.failed, []);
  for (const id of ids) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  const v = await store.verify();
  assert.deepEqual([v.damaged, v.unreferencedSegments], [[], []]);
}

test('retention by bytes deletes whole oldest segments after each commit and reports the removed ids', async (t) => {
  const dir = tempDir(t);
  const removed: number[][] = [];
  const store = ChunkStore.open({
    dir,
    geometry: TINY,
    segmentBytes: SEG,
    retention: { maxBytes: 3 * SEG },
    onChunksRemoved: (ids) => removed.push(ids),
  });
  for (let id = 0; id < 20; id++) {
    await store.append(makeChunk(id));
    assert.ok(store.stats().segmentBytes <= 3 * SEG, `after chunk ${id}: ${store.stats().segmentBytes} bytes on disk`);
  }
  // Chunk 9 opened segment 4 (4 files > 3 * SEG): segment 1 went, and so on every three chunks.
  assert.deepEqual(removed, [
    [0, 1, 2],
    [3, 4, 5],
    [6, 7, 8],
    [9, 10, 11],
  ]);
  assert.deepEqual(segmentFiles(dir), ['seg-000005.kvseg', 'seg-000006.kvseg', 'seg-000007.kvseg']);
  const kept = Array.from({ length: 8 }, (_, i) => 12 + i);
  await assertConsistent(store, dir, kept);
  const old = await store.readChunks([0, 11]);
  assert.deepEqual(old.failed.map((f) => f.reason), ['not-found', 'not-found']);
  await store.dispose();

  const reopened = ChunkStore.open({ dir, segmentBytes: SEG, retention: { maxBytes: 3 * SEG } });
  assert.deepEqual(reopened.recovery.droppedChunks, []);
  assert.deepEqual(reopened.recovery.deletedSegments, []);
  await assertConsistent(reopened, dir, kept);
  await reopened.append(makeChunk(20));
  await assertConsistent(reopened, dir, [...kept, 20]);
  await reopened.dispose();
});

test('retention by stream age deletes segments whose newest chunk is older than the limit', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEG });
  for (let id = 0; id < 12; id++) await store.append(makeChunk(id)); // tEnd = 2 * id + 2
  store.recordGap({ tStart: 3, tEnd: 4, reason: 'old outage' });
  store.recordGap({ tStart: 19, tEnd: 20, reason: 'recent outage' });
  // Newest tEnd 24. Segment 1 ends at 6, 2 at 12, 3 at 18, 4 at 24. Limit 11 s: keep tEnd >= 13.
  const r = store.applyRetention({ maxStreamAgeSec: 11 });
  assert.deepEqual(r.deletedSegments, [1, 2]);
  assert.deepEqual(r.removedChunkIds, [0, 1, 2, 3, 4, 5]);
  assert.equal(r.freedBytes, 2 * SEG);
  assert.deepEqual(store.gaps().map((g) => g.reason), ['recent outage'], 'gaps before the kept span go too');
  await assertConsistent(store, dir, [6, 7, 8, 9, 10, 11]);
  assert.deepEqual(store.applyRetention({ maxStreamAgeSec: 11 }).removedChunkIds, [], 'idempotent');
  // The newest segment is never deleted, however old.
  const all = store.applyRetention({ maxStreamAgeSec: 0 });
  assert.deepEqual(all.deletedSegments, [3]);
  await assertConsistent(store, dir, [9, 10, 11]);
  await store.dispose();

  const reopened = ChunkStore.open({ dir });
  assert.deepEqual(reopened.recovery.droppedChunks, []);
  await assertConsistent(reopened, dir, [9, 10, 11]);
  await reopened.dispose();
});

test('a read in flight survives retention deleting its segment', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEG, cacheBytes: 0 });
  for (let id = 0; id < 6; id++) await store.append(makeChunk(id));
  const reading = store.readChunks([0, 1, 2]); // segment 1; its read is now on the thread pool
  const r = store.applyRetention({ maxStreamAgeSec: 0 });
  assert.deepEqual(r.deletedSegments, [1]);
  const got = await reading;
  assert.deepEqual(got.failed, []);
  for (const id of [0, 1, 2]) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  await store.dispose();
});

test('selectSegmentsToDelete: oldest prefix only, stops at busy segments', () => {
  const seg = (segment: number, fileBytes: number, tEnd: number | null, busy = false): RetentionSegment => ({
    segment,
    fileBytes,
    tEnd,
    busy,
  });
  const segs = [seg(1, 100, 10), seg(2, 100, 20), seg(3, 100, 30), seg(4, 100, 40, true)];
  const cases: Array<[string, Parameters<typeof selectSegmentsToDelete>[2], number[]]> = [
    ['no policy', {}, []],
    ['bytes fit', { maxBytes: 400 }, []],
    ['bytes over by one segment', { maxBytes: 350 }, [1]],
    ['bytes need all but busy', { maxBytes: 100 }, [1, 2, 3]],
    ['age', { maxStreamAgeSec: 15 }, [1, 2]],
    ['age boundary kept', { maxStreamAgeSec: 20 }, [1]],
    ['age or bytes, whichever deletes more', { maxStreamAgeSec: 25, maxBytes: 250 }, [1, 2]],
  ];
  for (const [name, policy, want] of cases) assert.deepEqual(selectSegmentsToDelete(segs, 40, policy), want, name);
  // A busy segment in the middle protects everything after it.
  assert.deepEqual(selectSegmentsToDelete([seg(1, 100, 1), seg(2, 100, 2, true), seg(3, 100, 3)], 40, { maxBytes: 1 }), [1]);
  // Out-of-order time stops the age prefix.
  assert.deepEqual(selectSegmentsToDelete([seg(1, 100, 58), seg(2, 100, 2), seg(3, 1, 60, true)], 60, { maxStreamAgeSec: 5 }), []);
});
