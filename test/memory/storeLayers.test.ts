/**
 * Reading single layers of chunks (ReKV: every layer its own retrieved chunks): the layers come
 * back equal to those of whole-chunk reads, each layer is checked against its own checksum (a
 * damaged layer fails alone), rows written before per-layer checksums existed are read whole, and
 * the read buffer comes from and goes back to the caller's scratch pool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { KvStorageDtype } from '../../memory/frameChunk.js';
import { ChunkStore, type ScratchBuffers } from '../../memory/store/index.js';
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, payloadLayout } from '../../memory/store/recordFormat.js';
import { makeChunk, rejectsWithCode, segmentFile, tempDir, TINY } from './helpers.js';

function countingScratch(): ScratchBuffers & { taken: number; given: number } {
  const scratch = {
    taken: 0,
    given: 0,
    take: (bytes: number) => {
      scratch.taken++;
      return new ArrayBuffer(bytes);
    },
    give: () => {
      scratch.given++;
    },
  };
  return scratch;
}

for (const dtype of ['float32', 'float16', 'int8'] as KvStorageDtype[]) {
  test(`${dtype}: chosen layers equal the layers of whole-chunk reads`, async (t) => {
    const dir = tempDir(t);
    const store = ChunkStore.open({ dir, geometry: TINY, dtype, cacheBytes: 0 });
    try {
      for (let id = 0; id < 6; id++) await store.append(makeChunk(id, TINY, 4 + (id % 3)));
      const wanted = new Map([
        [1, [0, 2]],
        [4, [1]],
        [5, [0, 1, 2]],
      ]);
      const scratch = countingScratch();
      const got = await store.readLayers(wanted, scratch);
      const whole = await store.readChunks([1, 4, 5]);
      assert.deepEqual(got.failed, []);
      for (const [id, layers] of wanted) {
        const chunk = got.chunks.get(id)!;
        assert.deepEqual([...chunk.layers.keys()].sort((a, b) => a - b), layers);
        assert.equal(chunk.tStart, whole.chunks.get(id)!.tStart);
        for (const l of layers) {
          assert.deepEqual(chunk.layers.get(l)!.key, whole.chunks.get(id)!.keys[l], `chunk ${id} layer ${l} keys`);
          assert.deepEqual(chunk.layers.get(l)!.value, whole.chunks.get(id)!.values[l], `chunk ${id} layer ${l} values`);
        }
      }
      assert.equal(scratch.taken, 1, 'one buffer for the whole request');
      got.release();
      got.release();
      assert.equal(scratch.given, 1, 'given back once');
    } finally {
      await store.dispose();
    }
  });
}

test('a damaged layer fails alone: its chunk is reported, the other layers of the chunk still read', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 0 });
  for (let id = 0; id < 3; id++) await store.append(makeChunk(id, TINY, 5));
  await store.dispose();
  // Chunk 1, layer 2: flip a byte in the middle of its section.
  const recordBytes = fs.statSync(segmentFile(dir, 1)).size - SEGMENT_HEADER_BYTES;
  const lay = payloadLayout('float32', TINY, 5);
  const at = SEGMENT_HEADER_BYTES + recordBytes / 3 + RECORD_HEADER_BYTES + 2 * lay.layerBytes + 17;
  const fd = fs.openSync(segmentFile(dir, 1), 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, at);
  byte[0]! ^= 0xff;
  fs.writeSync(fd, byte, 0, 1, at);
  fs.closeSync(fd);
  store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 0 });
  try {
    const bad = await store.readLayers(new Map([[1, [2]], [0, [2]]]));
    assert.deepEqual(bad.failed.map((f) => [f.chunkId, f.reason]), [[1, 'checksum']]);
    assert.match(bad.failed[0]!.message, /layer 2/);
    assert.deepEqual([...bad.chunks.keys()], [0]);
    const good = await store.readLayers(new Map([[1, [0, 1]]]));
    assert.deepEqual(good.failed, []);
    assert.deepEqual(good.chunks.get(1)!.layers.get(0)!.key, makeChunk(1, TINY, 5).keys[0]);
    const whole = await store.readChunks([1]);
    assert.deepEqual(whole.failed.map((f) => f.reason), ['checksum'], 'the whole-payload checksum still catches it');
  } finally {
    await store.dispose();
  }
});

test('rows from before per-layer checksums (no column, then NULL) are read whole, and new rows get them', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 0 });
  for (let id = 0; id < 2; id++) await store.append(makeChunk(id, TINY, 5));
  await store.dispose();
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  db.exec('ALTER TABLE chunks DROP COLUMN layer_checksums');
  db.close();
  store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 0 });
  try {
    await store.append(makeChunk(2, TINY, 5));
    await store.flush();
    const rows = new Database(path.join(dir, 'manifest.sqlite'), { readonly: true });
    const nulls = rows.prepare('SELECT chunk_id AS id, layer_checksums IS NULL AS old FROM chunks ORDER BY chunk_id').all();
    rows.close();
    assert.deepEqual(nulls, [{ id: 0, old: 1 }, { id: 1, old: 1 }, { id: 2, old: 0 }]);
    const scratch = countingScratch();
    const got = await store.readLayers(new Map([[0, [1]], [2, [1]]]), scratch);
    assert.deepEqual(got.failed, []);
    assert.deepEqual(got.chunks.get(0)!.layers.get(1)!.value, makeChunk(0, TINY, 5).values[1]);
    assert.deepEqual(got.chunks.get(2)!.layers.get(1)!.value, makeChunk(2, TINY, 5).values[1]);
    assert.equal(scratch.taken, 1, 'only the new row used the scratch buffer');
    got.release();
  } finally {
    await store.dispose();
  }
});

test('unknown chunks are reported; bad layer numbers are refused', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY });
  try {
    await store.append(makeChunk(0, TINY, 5));
    await store.flush();
    const got = await store.readLayers(new Map([[0, [0]], [9, [0]]]));
    assert.deepEqual(got.failed.map((f) => [f.chunkId, f.reason]), [[9, 'not-found']]);
    await rejectsWithCode(store.readLayers(new Map([[0, [TINY.numLayers]]])), 'BAD_INPUT', /layers/);
  } finally {
    await store.dispose();
  }
});

test('verify checks the per-layer checksums against the intact payload', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY });
  for (let id = 0; id < 3; id++) await store.append(makeChunk(id, TINY, 5));
  assert.deepEqual((await store.verify()).damaged, []);
  await store.dispose();
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  db.prepare('UPDATE chunks SET layer_checksums = ? WHERE chunk_id = 2').run(Buffer.alloc(4 * TINY.numLayers, 7));
  db.close();
  store = ChunkStore.open({ dir, geometry: TINY });
  try {
    const report = await store.verify();
    assert.deepEqual(report.damaged.map((d) => d.chunkId), [2]);
    assert.match(report.damaged[0]!.message, /layer 0 checksum in the manifest/);
  } finally {
    await store.dispose();
  }
});

test('a chunk wanted on every layer is read whole, through the cache, without a scratch buffer', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY });
  try {
    await store.append(makeChunk(0, TINY, 5));
    await store.flush();
    const scratch = countingScratch();
    const got = await store.readLayers(new Map([[0, [2, 0, 1]]]), scratch);
    assert.equal(scratch.taken, 0);
    assert.deepEqual(got.chunks.get(0)!.layers.get(2)!.key, makeChunk(0, TINY, 5).keys[2]);
    assert.equal(store.stats().cache.entries, 1, "the chunk went through the cache");
  } finally {
    await store.dispose();
  }
});
