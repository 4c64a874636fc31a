import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ChunkStore } from '../../memory/store/index.js';
import { assertChunkBitExact, makeChunk, segmentFile, tempDir, TINY } from './helpers.js';

const LEN = 1992; // one float32 TINY record of 5 tokens
const SEG_HEADER = 32;

/** A closed store with chunks 0..n-1 in one segment, every record LEN bytes. */
async function filledStore(dir: string, n: number, segmentBytes?: number): Promise<void> {
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes });
  for (let id = 0; id < n; id++) await store.append(makeChunk(id));
  await store.dispose();
}

function flipByte(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0]! ^= 0x40;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

test('a corrupted payload byte: read reports that chunk by checksum, the others read fine; verify() finds it', async (t) => {
  const dir = tempDir(t);
  await filledStore(dir, 6);
  flipByte(segmentFile(dir, 1), SEG_HEADER + 3 * LEN + 72 + 500); // inside chunk 3's payload

  const store = ChunkStore.open({ dir });
  assert.deepEqual(store.recovery.droppedChunks, [], 'a clean store is not re-read at open');
  const got = await store.readChunks([1, 2, 3, 4]);
  assert.deepEqual([...got.chunks.keys()], [1, 2, 4]);
  assert.deepEqual(got.failed.map((f) => [f.chunkId, f.reason]), [[3, 'checksum']]);
  for (const id of [1, 2, 4]) assertChunkBitExact(got.chunks.get(id), makeChunk(id));

  const v = await store.verify();
  assert.equal(v.checkedChunks, 6);
  assert.deepEqual(v.damaged.map((f) => [f.chunkId, f.reason]), [[3, 'checksum']]);
  assert.deepEqual(v.unreferencedSegments, []);
  assert.equal(v.bytesRead, 6 * LEN);

  assert.deepEqual(store.dropChunks([3]), [3]);
  assert.deepEqual((await store.verify()).damaged, []);
  await store.dispose();
});

test('a corrupted header byte is caught as bad-header; recoveryCheck full drops it at open', async (t) => {
  const dir = tempDir(t);
  await filledStore(dir, 4);
  flipByte(segmentFile(dir, 1), SEG_HEADER + 1 * LEN + 13); // chunk 1's id field

  const store = ChunkStore.open({ dir, recoveryCheck: 'full' });
  assert.equal(store.recovery.checkedPayloads, 4);
  assert.deepEqual(store.recovery.droppedChunks.map((f) => [f.chunkId, f.reason]), [[1, 'bad-header']]);
  assert.deepEqual(store.recovery.truncatedSegments, []);
  const got = await store.readChunks([0, 1, 2, 3]);
  assert.deepEqual([...got.chunks.keys()], [0, 2, 3]);
  assert.deepEqual(got.failed.map((f) => f.reason), ['not-found']);
  await store.dispose();
});

test('torn tail: bytes past the last committed record are truncated at open; committed chunks intact', async (t) => {
  const dir = tempDir(t);
  await filledStore(dir, 3);
  const file = segmentFile(dir, 1);
  const committed = SEG_HEADER + 3 * LEN;
  // Half of a record that never committed (what a crash mid-write leaves).
  const partial = fs.readFileSync(file).subarray(SEG_HEADER, SEG_HEADER + LEN / 2);
  fs.appendFileSync(file, partial);

  const store = ChunkStore.open({ dir });
  assert.deepEqual(store.recovery.truncatedSegments, [{ segment: 1, fromBytes: committed + LEN / 2, toBytes: committed }]);
  assert.equal(fs.statSync(file).size, committed);
  const got = await store.readChunks([0, 1, 2]);
  for (const id of [0, 1, 2]) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  // Appends continue at the cut: the next record starts where the torn one did.
  const r = await store.append(makeChunk(3));
  assert.deepEqual([r.segment, r.offset], [1, committed]);
  await store.dispose();
});

test('a segment cut short drops the chunks past the cut; a missing segment drops its chunks', async (t) => {
  const dir = tempDir(t);
  await filledStore(dir, 9, SEG_HEADER + 3 * LEN); // segments 1..3, three chunks each
  fs.truncateSync(segmentFile(dir, 2), SEG_HEADER + LEN + 100); // chunk 3 whole, 4 cut, 5 gone
  fs.rmSync(segmentFile(dir, 1));

  const store = ChunkStore.open({ dir });
  assert.deepEqual(
    store.recovery.droppedChunks.map((f) => [f.chunkId, f.reason]),
    [
      [0, 'missing-segment'],
      [1, 'missing-segment'],
      [2, 'missing-segment'],
      [4, 'truncated'],
      [5, 'truncated'],
    ],
  );
  assert.deepEqual(store.recovery.truncatedSegments, [{ segment: 2, fromBytes: SEG_HEADER + LEN + 100, toBytes: SEG_HEADER + LEN }]);
  const got = await store.readChunks([3, 6, 7, 8]);
  assert.equal(got.chunks.size, 4);
  assert.equal(store.stats().chunkCount, 4);
  assert.deepEqual((await store.verify()).damaged, []);
  await store.dispose();
});

test('after an unclean shutdown under fsync none, open checksums the unsynced segments and drops damage', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, fsync: 'none', segmentBytes: SEG_HEADER + 3 * LEN });
  for (let id = 0; id < 7; id++) await store.append(makeChunk(id)); // segments 1, 2 full and retired; 3 active
  await store.dispose();
  // Simulate a crash of that session: not clean, policy none, only segment 2 known synced.
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  db.prepare(`UPDATE stream SET clean_shutdown = 0, session_fsync = '"none"', synced_through_segment = 2`).run();
  db.close();
  flipByte(segmentFile(dir, 1), SEG_HEADER + 72 + 8); // chunk 0: in a synced segment, not checked
  flipByte(segmentFile(dir, 3), SEG_HEADER + 72 + 8); // chunk 6: unsynced, checked and dropped

  const reopened = ChunkStore.open({ dir, segmentBytes: SEG_HEADER + 3 * LEN });
  assert.equal(reopened.recovery.cleanShutdown, false);
  assert.equal(reopened.recovery.checkedPayloads, 1);
  assert.deepEqual(reopened.recovery.droppedChunks.map((f) => [f.chunkId, f.reason]), [[6, 'checksum']]);
  // Segment 3 now holds no committed record: deleted; the next append starts segment 4.
  assert.deepEqual(reopened.recovery.deletedSegments, [3]);
  assert.equal((await reopened.append(makeChunk(7))).segment, 4);
  await reopened.dispose();

  // Under an fsync policy, committed payloads were synced before commit: no payload re-read.
  const db2 = new Database(path.join(dir, 'manifest.sqlite'));
  db2.prepare(`UPDATE stream SET clean_shutdown = 0, session_fsync = '"every-chunk"'`).run();
  db2.close();
  const again = ChunkStore.open({ dir });
  assert.equal(again.recovery.checkedPayloads, 0);
  await again.dispose();
});

test('unreferenced segment files are reported by verify and deleted at open; a foreign segment header is rejected', async (t) => {
  const dir = tempDir(t);
  await filledStore(dir, 2);
  fs.copyFileSync(segmentFile(dir, 1), segmentFile(dir, 7));
  const store = ChunkStore.open({ dir, recoveryCheck: 'auto' });
  // Segment 7 has a header naming segment 1 and no rows: deleted.
  assert.deepEqual(store.recovery.deletedSegments, [7]);
  assert.equal(fs.existsSync(segmentFile(dir, 7)), false);
  await store.dispose();

  fs.writeFileSync(segmentFile(dir, 9), Buffer.alloc(64));
  const s2 = ChunkStore.open({ dir });
  assert.deepEqual(s2.recovery.deletedSegments, [9]);
  fs.writeFileSync(segmentFile(dir, 20), Buffer.alloc(64)); // appears while open
  const v = await s2.verify();
  assert.deepEqual(v.unreferencedSegments, [20]);
  assert.deepEqual(v.damaged, []);
  await s2.dispose();
  // A segment written by a newer format is not touched: the store refuses to open.
  const newer = fs.readFileSync(segmentFile(dir, 1));
  newer.writeUInt32LE(99, 8);
  const { crc32 } = await import('../../kernels/checksum.js');
  newer.writeUInt32LE(crc32(newer.subarray(0, 28)), 28);
  fs.writeFileSync(segmentFile(dir, 30), newer.subarray(0, 32));
  assert.throws(() => ChunkStore.open({ dir }), (e: Error & { code?: string }) => e.code === 'STORE_CORRUPT' && /newer/.test(e.message));
  assert.ok(fs.existsSync(segmentFile(dir, 30)));
});
