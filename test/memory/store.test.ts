import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ChunkStore } from '../../memory/store/index.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { asStoredRepresentatives } from '../../memory/store/representatives.js';
import { assertChunkBitExact, makeChunk, rejectsWithCode, tempDir, TINY } from './helpers.js';

test('float32: round trip is bit-exact, across reopen, with -0, subnormals and varying token counts', async (t) => {
  const dir = tempDir(t);
  const chunks: FrameChunk[] = [0, 1, 2, 3, 4].map((id) => makeChunk(id, TINY, 3 + id));
  // Values that a numeric round trip would not preserve bit for bit.
  chunks[1]!.keys[0]![0] = -0;
  chunks[1]!.values[2]![5] = -3.4028234663852886e38; // -FLT_MAX (NaN and Inf are refused: storeValidation.test.ts)
  chunks[2]!.keys[1]![3] = 1e-45; // subnormal
  let store = ChunkStore.open({ dir, geometry: TINY, dtype: 'float32' });
  for (const c of chunks) {
    const r = await store.append(c);
    assert.equal(r.chunkId, c.chunkId);
  }
  let got = await store.readChunks([4, 0, 2, 1, 3, 2]);
  assert.deepEqual([...got.chunks.keys()], [0, 1, 2, 3, 4]);
  assert.deepEqual(got.failed, []);
  for (const c of chunks) assertChunkBitExact(got.chunks.get(c.chunkId), c);
  await store.dispose();

  store = ChunkStore.open({ dir, geometry: TINY });
  assert.equal(store.dtype, 'float32', 'recorded dtype is the default on reopen');
  assert.deepEqual(store.recovery.droppedChunks, []);
  assert.equal(store.recovery.cleanShutdown, true);
  got = await store.readChunks([0, 1, 2, 3, 4]);
  for (const c of chunks) assertChunkBitExact(got.chunks.get(c.chunkId), c);
  // Representatives come from the manifest alone.
  const metas = store.listChunks();
  assert.deepEqual(metas.map((m) => m.chunkId), [0, 1, 2, 3, 4]);
  assert.deepEqual(metas[3]!.representatives, asStoredRepresentatives(chunks[3]!.representatives));
  assert.deepEqual(store.listChunks({ afterId: 1, limit: 2 }).map((m) => m.chunkId), [2, 3]);
  await store.dispose();
});

test('float16: every element within half a float16 ulp (relative 2^-11); measured', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, dtype: 'float16' });
  const chunks = [0, 1, 2].map((id) => makeChunk(id, TINY, 7, { scale: 4 }));
  for (const c of chunks) await store.append(c);
  const got = await store.readChunks([0, 1, 2]);
  let maxRel = 0;
  let maxAbs = 0;
  for (const c of chunks) {
    const g = got.chunks.get(c.chunkId)!;
    for (const k of ['keys', 'values'] as const) {
      for (let l = 0; l < TINY.numLayers; l++) {
        c[k][l]!.forEach((x, i) => {
          const err = Math.abs(g[k][l]![i]! - x);
          maxAbs = Math.max(maxAbs, err);
          // Normal half range: relative error <= 2^-11; below 2^-14 the absolute spacing is 2^-24.
          if (Math.abs(x) >= 2 ** -14) maxRel = Math.max(maxRel, err / Math.abs(x));
          else assert.ok(err <= 2 ** -25, `subnormal error ${err}`);
        });
      }
    }
    assert.deepEqual(g.representatives, asStoredRepresentatives(c.representatives), 'representatives as the manifest keeps them, whatever the payload dtype');
  }
  t.diagnostic(`float16 max relative error ${maxRel.toExponential(3)}, max abs error ${maxAbs.toExponential(3)} (|x| < 4)`);
  assert.ok(maxRel <= 2 ** -11, `max relative error ${maxRel}`);
  assert.ok(maxRel > 2 ** -13, 'the data really went through float16');
  await store.dispose();
});

test('int8: every element within half a step of its group (keys per channel, values per token); measured', async (t) => {
  const dir = tempDir(t);
  const G = { numLayers: 2, numKvHeads: 3, headDim: 16 };
  const T = 10;
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'int8' });
  const chunks = [0, 1].map((id) => makeChunk(id, G, T, { scale: 2 }));
  for (const c of chunks) await store.append(c);
  const got = await store.readChunks([0, 1]);
  let worstSteps = 0;
  let sqErr = 0;
  let sq = 0;
  let count = 0;
  for (const c of chunks) {
    const g = got.chunks.get(c.chunkId)!;
    for (let l = 0; l < G.numLayers; l++) {
      for (const isKey of [true, false]) {
        const src = (isKey ? c.keys[l] : c.values[l])!;
        const back = (isKey ? g.keys[l] : g.values[l])!;
        const D = G.headDim;
        // Group of element (h, t, d): keys (h, d) over t; values (h, t) over d.
        const groupOf = (i: number): number[] => {
          const h = Math.floor(i / (T * D));
          const tt = Math.floor(i / D) % T;
          const d = i % D;
          return isKey
            ? Array.from({ length: T }, (_, u) => (h * T + u) * D + d)
            : Array.from({ length: D }, (_, e) => (h * T + tt) * D + e);
        };
        for (let i = 0; i < src.length; i++) {
          const xs = groupOf(i).map((j) => src[j]!);
          const step = (Math.max(...xs) - Math.min(...xs)) / 255;
          const err = Math.abs(back[i]! - src[i]!);
          assert.ok(err <= step / 2 + 1e-6 * step + 2 ** -24 * Math.abs(src[i]!), `element ${i}: ${err} > ${step / 2}`);
          worstSteps = Math.max(worstSteps, err / step);
          sqErr += err * err;
          sq += src[i]! * src[i]!;
          count++;
        }
      }
    }
  }
  const relRms = Math.sqrt(sqErr / sq);
  t.diagnostic(`int8 worst error ${worstSteps.toFixed(4)} steps, RMS error / RMS value ${relRms.toExponential(3)} over ${count} values`);
  assert.ok(worstSteps <= 0.5 + 1e-5);
  assert.ok(relRms < 0.005, `relative RMS ${relRms}`);
  await store.dispose();
});

test('dtypes can change between sessions; stats report bytes by dtype, span and segments', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, dtype: 'float32' });
  await store.append(makeChunk(0));
  await store.append(makeChunk(1));
  await store.dispose();
  store = ChunkStore.open({ dir, dtype: 'int8' }); // geometry from the manifest
  await store.append(makeChunk(2));
  const s = store.stats();
  assert.equal(s.chunkCount, 3);
  assert.equal(s.firstChunkId, 0);
  assert.equal(s.lastChunkId, 2);
  assert.deepEqual([s.tStart, s.tEnd], [0, 6]);
  assert.deepEqual([s.wallStart, s.wallEnd], [1.7e12, 1.7e12 + 4000]);
  // 5 tokens x 2 heads x 8 dims = 80 elements per tensor, 3 layers.
  // float32: 72 header + 3 * 2 * 320 = 1992 -> padded 1992. int8: per layer K 2*4*16 + 80, V 2*4*10 + 80 = 368.
  assert.equal(s.bytesByDtype.float32, 2 * 1992);
  assert.equal(s.bytesByDtype.int8, 72 + 3 * 368);
  assert.equal(s.bytesByDtype.float16, 0);
  assert.equal(s.segments.length, 1, 'the second session resumed the same segment');
  assert.equal(s.segments[0]!.fileBytes, 32 + 2 * 1992 + 72 + 3 * 368);
  assert.equal(s.segmentBytes, s.segments[0]!.fileBytes);
  const got = await store.readChunks([0, 1, 2]);
  assert.equal(got.chunks.size, 3);
  assertChunkBitExact(got.chunks.get(1), makeChunk(1));
  await store.dispose();
});

test('segments roll at segmentBytes; adjacent records are read with one system call per run', async (t) => {
  const dir = tempDir(t);
  const len = 1992; // one float32 TINY record of 5 tokens
  const store = ChunkStore.open({ dir, geometry: TINY, segmentBytes: 32 + 3 * len, cacheBytes: 0 });
  for (let id = 0; id < 10; id++) {
    const r = await store.append(makeChunk(id));
    assert.equal(r.segment, 1 + Math.floor(id / 3));
    assert.equal(r.offset, 32 + (id % 3) * len);
    assert.equal(r.length, len);
  }
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.kvseg')).sort(), [
    'seg-000001.kvseg',
    'seg-000002.kvseg',
    'seg-000003.kvseg',
    'seg-000004.kvseg',
  ]);
  const before = store.stats().io.readCalls;
  const got = await store.readChunks([3, 4, 5, 6, 9]);
  assert.equal(got.chunks.size, 5);
  // Runs: {3,4,5} in segment 2, {6} in segment 3, {9} in segment 4.
  assert.equal(store.stats().io.readCalls - before, 3);
  await store.dispose();
});

test('fsync policies: group commit resolves appends together; rows commit only after the payload', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY, fsync: { everyChunks: 3 } });
  const settled: number[] = [];
  const track = (id: number) => store.append(makeChunk(id)).then((r) => settled.push(r.chunkId));
  const ps = [track(0), track(1)];
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(settled, [], 'two of three: nothing committed yet');
  assert.equal(store.stats().chunkCount, 0);
  ps.push(track(2));
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(settled, [0, 1, 2], 'the third append committed the group');
  ps.push(track(3));
  assert.equal(store.stats().pendingChunks, 1);
  assert.equal(store.stats().chunkCount, 3, 'chunk 3 is written but not committed');
  const early = await store.readChunks([3]);
  assert.deepEqual(early.failed.map((f) => f.reason), ['not-found'], 'an uncommitted chunk is not readable');
  await store.flush();
  await Promise.all(ps);
  assert.deepEqual(settled, [0, 1, 2, 3]);
  await store.dispose();

  const dir2 = tempDir(t);
  const timed = ChunkStore.open({ dir: dir2, geometry: TINY, fsync: { intervalMs: 30 } });
  const t0 = Date.now();
  await Promise.all([timed.append(makeChunk(0)), timed.append(makeChunk(1))]);
  assert.ok(Date.now() - t0 >= 25, 'interval policy waits for its timer');
  await timed.dispose();

  const dir3 = tempDir(t);
  const none = ChunkStore.open({ dir: dir3, geometry: TINY, fsync: 'none' });
  await none.append(makeChunk(0));
  assert.equal(none.stats().chunkCount, 1);
  await none.dispose();
});

test('LRU cache: stays within its byte budget, evicts least recently used, serves hits without disk reads', async (t) => {
  const dir = tempDir(t);
  const chunkBytes = 3 * 2 * 80 * 4 + 3 * 16 * 4; // K + V + representatives, float32
  const store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 3 * chunkBytes + 10 });
  for (let id = 0; id < 6; id++) await store.append(makeChunk(id));
  assert.equal(store.stats().cache.entries, 0, 'appends do not fill the cache');

  await store.readChunks([0, 1, 2]);
  assert.deepEqual(store.cachedChunkIds(), [0, 1, 2]);
  const reads = store.stats().io.readCalls;
  const hit = await store.readChunks([1]);
  assertChunkBitExact(hit.chunks.get(1), makeChunk(1));
  assert.equal(store.stats().io.readCalls, reads, 'a hit reads nothing from disk');
  assert.deepEqual(store.cachedChunkIds(), [0, 2, 1], 'a hit becomes most recent');

  await store.readChunks([3]);
  assert.deepEqual(store.cachedChunkIds(), [2, 1, 3], 'chunk 0 (least recent) evicted');
  await store.readChunks([4, 5]);
  assert.deepEqual(store.cachedChunkIds(), [3, 4, 5]);
  const s = store.stats().cache;
  assert.equal(s.bytes, 3 * chunkBytes);
  assert.ok(s.bytes <= s.budgetBytes);

  // Hits survive even the payload file disappearing: they never touch disk.
  store.clearCache();
  await store.readChunks([5]);
  const seg = fs.readdirSync(dir).find((f) => f.endsWith('.kvseg'))!;
  fs.renameSync(path.join(dir, seg), path.join(dir, `${seg}.away`));
  const again = await store.readChunks([5]);
  assert.deepEqual(again.failed, []);
  assertChunkBitExact(again.chunks.get(5), makeChunk(5));
  fs.renameSync(path.join(dir, `${seg}.away`), path.join(dir, seg));

  // A budget smaller than one chunk caches nothing.
  const dir2 = tempDir(t);
  const tiny = ChunkStore.open({ dir: dir2, geometry: TINY, cacheBytes: chunkBytes - 1 });
  await tiny.append(makeChunk(0));
  await tiny.readChunks([0]);
  assert.equal(tiny.stats().cache.entries, 0);
  await tiny.dispose();
  await store.dispose();
});

test('bad arguments and geometry mismatches give clear VigilErrors', async (t) => {
  const dir = tempDir(t);
  await rejectsWithCode(() => ChunkStore.open({ dir }), 'BAD_CONFIG', /geometry is required/);
  await rejectsWithCode(() => ChunkStore.open({ dir, geometry: { numLayers: 0, numKvHeads: 2, headDim: 8 } }), 'BAD_CONFIG', /numLayers/);
  await rejectsWithCode(() => ChunkStore.open({ dir, geometry: TINY, fsync: { everyChunks: 0 } }), 'BAD_CONFIG', /everyChunks/);
  await rejectsWithCode(() => ChunkStore.open({ dir, geometry: TINY, fsync: 'sometimes' as never }), 'BAD_CONFIG', /fsync/);
  await rejectsWithCode(() => ChunkStore.open({ dir, geometry: TINY, dtype: 'bf16' as never }), 'DTYPE_MISMATCH');
  await rejectsWithCode(
    () => ChunkStore.open({ dir, geometry: TINY, segmentBytes: 4096, retention: { maxBytes: 100 } }),
    'BAD_CONFIG',
    /maxBytes/,
  );
  await rejectsWithCode(() => ChunkStore.open({ dir: path.join(dir, 'nope'), create: false }), 'FILE_NOT_FOUND');

  const store = ChunkStore.open({ dir, geometry: TINY });
  await rejectsWithCode(() => ChunkStore.open({ dir, geometry: TINY }), 'STORE_LOCKED', /already open in process/);
  const other = makeChunk(0, { numLayers: 3, numKvHeads: 2, headDim: 16 });
  await rejectsWithCode(store.append(other), 'SHAPE_MISMATCH', /head_dim 16.*3 x 2 x 8/);
  const short = makeChunk(0);
  short.values[1] = short.values[1]!.subarray(1);
  await rejectsWithCode(store.append(short), 'SHAPE_MISMATCH', /values\[1\]/);
  const missingLayer = makeChunk(0);
  missingLayer.keys.pop();
  await rejectsWithCode(store.append(missingLayer), 'SHAPE_MISMATCH', /keys must hold 3 layers/);
  await rejectsWithCode(store.append({ ...makeChunk(0), tEnd: Number.NaN }), 'BAD_INPUT', /tEnd/);
  await store.append(makeChunk(5));
  await rejectsWithCode(store.append(makeChunk(5)), 'BAD_INPUT', /not above the last appended id 5/);
  await rejectsWithCode(store.append(makeChunk(3)), 'BAD_INPUT', /not above/);
  await rejectsWithCode(store.readChunks([1.5]), 'BAD_INPUT');
  await rejectsWithCode(store.readChunks('5' as never), 'BAD_INPUT');
  const missing = await store.readChunks([5, 99]);
  assert.deepEqual([...missing.chunks.keys()], [5]);
  assert.deepEqual(missing.failed.map((f) => [f.chunkId, f.reason]), [[99, 'not-found']]);
  assert.equal(store.stats().chunkCount, 1, 'rejected appends wrote nothing');
  await store.dispose();
  await rejectsWithCode(store.append(makeChunk(6)), 'STORE_CLOSED');
  await rejectsWithCode(() => store.stats(), 'STORE_CLOSED');

  await rejectsWithCode(
    () => ChunkStore.open({ dir, geometry: { numLayers: 30, numKvHeads: 3, headDim: 64 } }),
    'SHAPE_MISMATCH',
    /holds 3 layers x 2 KV heads x head_dim 8; asked for 30 x 3 x 64/,
  );

  // Values a dtype cannot hold are refused before anything is written.
  const f16 = ChunkStore.open({ dir, dtype: 'float16' });
  const big = makeChunk(10);
  big.keys[0]![4] = 1e5;
  await rejectsWithCode(f16.append(big), 'BAD_INPUT', /float16 range/);
  await f16.dispose();
  const i8 = ChunkStore.open({ dir, dtype: 'int8' });
  const nan = makeChunk(10);
  nan.values[2]![0] = Number.NaN;
  await rejectsWithCode(i8.append(nan), 'BAD_INPUT', /non-finite/);
  assert.equal(i8.stats().chunkCount, 1);
  await i8.dispose();

  fs.writeFileSync(path.join(dir, 'manifest.sqlite'), 'not a database at all, just text');
  fs.rmSync(path.join(dir, 'manifest.sqlite-wal'), { force: true });
  fs.rmSync(path.join(dir, 'manifest.sqlite-shm'), { force: true });
  await rejectsWithCode(() => ChunkStore.open({ dir }), 'STORE_CORRUPT');
});

test('gaps are recorded and listed', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY });
  store.recordGap({ tStart: 10, tEnd: 14.5, reason: 'reconnect' });
  assert.deepEqual(store.gaps(), [{ tStart: 10, tEnd: 14.5, reason: 'reconnect' }]);
  await rejectsWithCode(() => store.recordGap({ tStart: 3, tEnd: 2, reason: 'x' }), 'BAD_INPUT');
  await store.dispose();
});

test('appends in flight together: commit in order across segment rolls; dispose() commits what is pending', async (t) => {
  for (const fsync of ['every-chunk', { everyChunks: 4 }, { intervalMs: 5 }, 'none'] as const) {
    const dir = tempDir(t);
    const store = ChunkStore.open({ dir, geometry: TINY, fsync, segmentBytes: 32 + 3 * 1992 });
    const receipts = await Promise.all(Array.from({ length: 10 }, (_, id) => store.append(makeChunk(id))));
    assert.deepEqual(receipts.map((r) => r.segment), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4], JSON.stringify(fsync));
    const last = store.append(makeChunk(10)); // not awaited before dispose(): dispose() must still commit it
    await store.dispose();
    assert.equal((await last).chunkId, 10);
    const again = ChunkStore.open({ dir });
    assert.equal(again.recovery.cleanShutdown, true);
    assert.deepEqual(again.recovery.truncatedSegments, []);
    const got = await again.readChunks(Array.from({ length: 11 }, (_, i) => i));
    assert.deepEqual(got.failed, [], JSON.stringify(fsync));
    for (let id = 0; id <= 10; id++) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
    assert.deepEqual((await again.verify()).damaged, []);
    await again.dispose();
  }
});
