// Disk budgets at the store level: the real folder (segments, manifest, WAL, -shm, LOCK, and the
// folders the budget also counts) never exceeds budget + one segment, checked with fs after every
// append and at the moment each record is written; segment sizing; bad budgets; the old maxBytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseByteSize } from '../../common/byteSize.js';
import { ChunkStore } from '../../memory/store/index.js';
import {
  checkBudget,
  chunkRecordBytes,
  MANIFEST_RESERVE_BYTES,
  planBudget,
  segmentBytesForBudget,
  SEGMENTS_PER_BUDGET,
} from '../../memory/store/budget.js';
import { DEFAULT_SEGMENT_BYTES } from '../../memory/store/options.js';
import { assertChunkBitExact, makeChunk, rejectsWithCode, tempDir, TINY } from './helpers.js';

/** Bytes of every regular file under `dirs`, walked here (independent of the store's own measure). */
function du(...dirs: string[]): number {
  let total = 0;
  for (const dir of dirs) {
    if (!fs.existsSync(dir)) continue;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) total += du(p);
      else if (e.isFile()) total += fs.statSync(p).size;
    }
  }
  return total;
}

const RECORD = chunkRecordBytes(TINY, 'float32', 5); // 1992 bytes

test('a store with a 1 MiB budget takes 6x its budget and its real folder never exceeds budget + one segment', async (t) => {
  const root = tempDir(t);
  const dir = path.join(root, 'kv');
  const indexDir = path.join(root, 'index');
  fs.mkdirSync(indexDir);
  const budget = 1024 * 1024;
  const plan = planBudget(budget, { geometry: TINY, dtype: 'float32', tokensPerFrame: 5, windowFrames: 4 });
  assert.equal(plan.recordBytes, RECORD);
  assert.equal(plan.segmentBytes, budget / SEGMENTS_PER_BUDGET, 'segments are budget/16');
  const limit = budget + plan.segmentBytes;
  let worst = 0;
  let checks = 0;
  const measure = (when: string) => {
    const used = du(dir, indexDir);
    worst = Math.max(worst, used);
    checks++;
    assert.ok(used <= limit, `${when}: ${used} bytes on disk > budget ${budget} + segment ${plan.segmentBytes}`);
  };
  const removed: number[] = [];
  const store = ChunkStore.open({
    dir,
    geometry: TINY,
    segmentBytes: plan.segmentBytes,
    retention: { budgetBytes: budget, alsoCount: [indexDir] },
    onChunksRemoved: (ids) => removed.push(...ids),
    // The moment a record is on disk but its row not yet committed: the folder is at its fullest.
    afterPayloadWrite: (id) => measure(`chunk ${id} written`),
  });
  const total = Math.ceil((6 * budget) / RECORD);
  // A stand-in for the retrieval index: a file that grows with the chunks kept (as an index saved
  // at shutdown does), which the budget must count too.
  const indexFile = path.join(indexDir, 'layers.bin');
  for (let id = 0; id < total; id++) {
    if (id % 50 === 48) {
      // A burst of appends not awaited one by one (the engine commits behind the ingest): rows pending across a roll.
      await Promise.all([store.append(makeChunk(id)), store.append(makeChunk(id + 1)), store.append(makeChunk(id + 2))]);
      measure(`after burst at ${id}`);
      id += 2;
      continue;
    }
    await store.append(makeChunk(id));
    measure(`after chunk ${id}`);
    if (id % 100 === 0) fs.writeFileSync(indexFile, Buffer.alloc(store.stats().chunkCount * 64));
  }
  const s = store.stats();
  assert.ok(removed.length > total / 2, `retention removed ${removed.length} of ${total} chunks`);
  assert.equal(s.budgetBytes, budget);
  assert.equal(s.diskBytes, du(dir, indexDir), "stats' diskBytes is the real folder");
  // The kept history is most of the budget, not a sliver: at least budget - reserve - 2 segments of records.
  const floor = Math.floor((budget - MANIFEST_RESERVE_BYTES - 2 * plan.segmentBytes) / RECORD);
  assert.ok(s.chunkCount >= floor, `kept ${s.chunkCount} chunks, expected >= ${floor}`);
  // One contiguous span, every kept chunk intact.
  const ids = Array.from(store.chunkIds());
  const got = await store.readChunks(ids);
  assert.deepEqual(got.failed, []);
  for (const id of ids.slice(-5)) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  assert.ok(checks > 2 * total - 300, `${checks} checks`);
  t.diagnostic(`1 MiB budget, ${total} chunks of ${RECORD} B appended (${((total * RECORD) / budget).toFixed(1)}x the budget): worst folder ${worst} B = ${((100 * worst) / budget).toFixed(1)} % of budget (limit ${limit}); kept ${s.chunkCount} chunks`);
  await store.dispose();
  // Closing (checkpoint, clean mark) stays within too, and a reopen keeps the budget.
  assert.ok(du(dir, indexDir) <= limit);
  const reopened = ChunkStore.open({ dir, segmentBytes: plan.segmentBytes, retention: { budgetBytes: budget, alsoCount: [indexDir] } });
  for (let id = total + 2000_000; id < total + 2000_000 + 200; id++) {
    await reopened.append(makeChunk(id));
    assert.ok(du(dir, indexDir) <= limit);
  }
  await reopened.dispose();
});

test('room is made before a record (and so before a new segment) is written, not after its commit', async (t) => {
  const dir = tempDir(t);
  const segmentBytes = 32 + 4 * RECORD;
  const budget = MANIFEST_RESERVE_BYTES + 6 * segmentBytes;
  let atWrite = 0;
  let newSegments = 0;
  const store = ChunkStore.open({
    dir,
    geometry: TINY,
    segmentBytes,
    fsync: 'none',
    retention: { budgetBytes: budget },
    // Runs after the record is written and before its row commits (so before after-commit retention):
    // the folder already fits, so the deletion ran before the write, new segment file included.
    afterPayloadWrite: (id) => {
      const used = du(dir);
      atWrite = Math.max(atWrite, used);
      if (store.stats().segments.at(-1)?.fileBytes === 32 + RECORD) newSegments++;
      assert.ok(used <= budget, `chunk ${id} written: ${used} > ${budget}`);
    },
  });
  for (let id = 0; id < 400; id++) await store.append(makeChunk(id));
  assert.ok(newSegments >= 90, `${newSegments} segments started`);
  assert.ok(store.stats().chunkCount < 400);
  t.diagnostic(`worst folder at a write: ${atWrite} of budget ${budget}`);
  await store.dispose();
});

test('segment size follows the budget: budget/16, at least one record, at most 256 MiB', () => {
  const g256 = { numLayers: 30, numKvHeads: 3, headDim: 64 };
  const rec256 = chunkRecordBytes(g256, 'float32', 74);
  assert.equal(rec256, 72 + 30 * 2 * 3 * 74 * 64 * 4);
  assert.equal(segmentBytesForBudget(20e9, rec256), DEFAULT_SEGMENT_BYTES, '20 GB: the 256 MiB cap');
  assert.equal(segmentBytesForBudget(1e9, rec256), 62_500_000, '1 GB: budget/16');
  assert.equal(segmentBytesForBudget(4e6, RECORD), 250_000, '4 MB tiny model: budget/16');
  assert.equal(segmentBytesForBudget(20_000, RECORD), 32 + RECORD, 'a budget/16 under one record: one record');
  assert.equal(segmentBytesForBudget(20e9, RECORD) % 8, 0);
});

test('bad budgets: too small for one segment, for the window, zero, negative or garbage: BAD_INPUT naming the limit', async (t) => {
  const shape = { geometry: TINY, dtype: 'float32' as const, tokensPerFrame: 5, windowFrames: 16 };
  const plan = planBudget(1, shape);
  assert.throws(() => checkBudget(100_000, shape), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'BAD_INPUT');
    assert.match(e.message, new RegExp(`too small for one segment: the minimum is ${plan.minForSegments} bytes`));
    assert.match(e.message, /1992-byte chunk record/);
    return true;
  });
  const big = { ...shape, geometry: { numLayers: 30, numKvHeads: 3, headDim: 64 }, tokensPerFrame: 74 };
  const bigPlan = planBudget(1, big);
  assert.ok(bigPlan.minForWindow > bigPlan.minForSegments);
  assert.throws(() => checkBudget(bigPlan.minForSegments + 1, big), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'BAD_INPUT');
    assert.match(e.message, new RegExp(`cannot hold the sliding window of 16 frames: the minimum is ${bigPlan.minForWindow} bytes`));
    return true;
  });
  // The minimum itself is accepted, one byte under it is not.
  assert.equal(checkBudget(bigPlan.minForWindow, big).budgetBytes, bigPlan.minForWindow);
  assert.throws(() => checkBudget(bigPlan.minForWindow - 1, big), /sliding window/);
  for (const bad of [0, -5, '0', '-1GB', 'lots', '20G', '1.5 XB', '', Number.NaN, 1.5, '1e9', null, {}]) {
    assert.throws(() => parseByteSize(bad, 'budget'), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /^budget: /.test(e.message), `accepted ${String(bad)}`);
  }
  // The store itself refuses a budget under one segment, and nonsense, at open and in setRetention.
  const dir = tempDir(t);
  for (const budgetBytes of [0, -1, 1.5, 1000]) {
    await rejectsWithCode(() => ChunkStore.open({ dir, geometry: TINY, segmentBytes: 4096, retention: { budgetBytes } }), 'BAD_CONFIG', /retention\.budgetBytes/);
  }
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: 4096 });
  await rejectsWithCode(() => store.setRetention({ budgetBytes: 100 }), 'BAD_CONFIG', /below segmentBytes 4096/);
  assert.equal(store.retention, undefined, 'a refused policy changes nothing');
  await store.dispose();
});

test('sizes: GB = 1e9, GiB = 2^30, case-insensitive units, plain bytes', () => {
  assert.equal(parseByteSize('20GB'), 20e9);
  assert.equal(parseByteSize('200MB'), 200e6);
  assert.equal(parseByteSize('200 mb'), 200e6);
  assert.equal(parseByteSize('1.5GiB'), 1.5 * 2 ** 30);
  assert.equal(parseByteSize('512KiB'), 512 * 1024);
  assert.equal(parseByteSize('1kB'), 1000);
  assert.equal(parseByteSize('12345'), 12345);
  assert.equal(parseByteSize(4096), 4096);
  assert.equal(parseByteSize('2TB'), 2e12);
});

test('setRetention lowers a budget on an open store at once (a data-folder share shrinking)', async (t) => {
  const dir = tempDir(t);
  const segmentBytes = 32 + 8 * RECORD;
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes, fsync: 'none', retention: { budgetBytes: 2 * 1024 * 1024 } });
  for (let id = 0; id < 600; id++) await store.append(makeChunk(id));
  const before = du(dir);
  assert.ok(before > 1024 * 1024);
  const lower = 640 * 1024;
  const r = store.setRetention({ budgetBytes: lower });
  assert.ok(r.removedChunkIds.length > 0);
  assert.ok(du(dir) <= lower + segmentBytes, `${du(dir)} after lowering to ${lower}`);
  for (let id = 600; id < 800; id++) {
    await store.append(makeChunk(id));
    assert.ok(du(dir) <= lower + segmentBytes);
  }
  await store.dispose();
});

test('the old retention.maxBytes (segment files only, after each commit) keeps its meaning beside budgets', async (t) => {
  const dir = tempDir(t);
  const SEG = 32 + 3 * RECORD;
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: SEG, retention: { maxBytes: 3 * SEG } });
  for (let id = 0; id < 20; id++) {
    await store.append(makeChunk(id));
    assert.ok(store.stats().segmentBytes <= 3 * SEG);
  }
  // Same figures as before budgets existed (storeRetention.test.ts): 8 chunks kept in 3 segments.
  assert.deepEqual(Array.from(store.chunkIds()), [12, 13, 14, 15, 16, 17, 18, 19]);
  assert.equal(store.stats().budgetBytes, null);
  await store.dispose();
});

test('retention running while a batch is being fsynced never deletes a segment whose rows are about to commit (rows never point at a deleted file)', async (t) => {
  const dir = tempDir(t);
  // One record a segment: every append rolls, so the batch in flight holds a segment with no committed row yet.
  const segmentBytes = 32 + RECORD;
  let store: ChunkStore | undefined;
  let retentionRuns = 0;
  store = ChunkStore.open({
    dir,
    geometry: TINY,
    segmentBytes,
    fsync: 'every-chunk',
    // What a background demotion's room-making (or another append's) does at any moment: run retention,
    // here exactly while a batch waits for its fsync (its rows are no longer pending, not yet committed).
    ioFault: (op) => {
      if (op !== 'fsync' || store === undefined) return;
      retentionRuns++;
      store.applyRetention({ budgetBytes: 6 * segmentBytes + (store.diskBytes() - store.stats().segmentBytes) });
    },
  });
  // Appends in flight together (as the engine issues them): a segment is retired while its row still commits.
  for (let id = 0; id < 30; id += 3) await Promise.all([0, 1, 2].map((k) => store!.append(makeChunk(id + k, TINY, 5))));
  await store.flush();
  assert.ok(retentionRuns >= 30);
  const s = store.stats();
  assert.ok(s.firstChunkId! > 0, 'retention deleted old segments');
  for (const seg of s.segments) assert.ok(fs.existsSync(path.join(dir, `seg-${String(seg.segment).padStart(6, '0')}.kvseg`)), `segment ${seg.segment} has rows and a file`);
  const v = await store.verify();
  assert.deepEqual(v.damaged, [], 'no row points at a deleted segment');
  await store.dispose();
  store = undefined;
});
