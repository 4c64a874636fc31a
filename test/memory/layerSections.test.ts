/**
 * The section read path behind readLayers (memory/store/layerReader.ts): sections sorted by
 * (segment, offset), merged into runs, read with synchronous preads ('sync'), on the thread pool
 * ('async'), or sync with the async fallback ('auto'). Every path and every merge setting returns the
 * same bytes as whole-chunk reads, counts one read per run, asks the pool for a size that does not
 * depend on how sections merged, and reports damaged, cut-short and missing data per chunk.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { KvStorageDtype } from '../../memory/frameChunk.js';
import { ChunkStore, type ScratchBuffers } from '../../memory/store/index.js';
import { DEFAULT_SECTION_READ, readLayerSections, type SectionReadOptions } from '../../memory/store/layerReader.js';
import { Manifest, MANIFEST_FILE, type ChunkLocation } from '../../memory/store/manifest.js';
import { payloadLayout, RECORD_HEADER_BYTES } from '../../memory/store/recordFormat.js';
import type { RunReadContext } from '../../memory/store/runReader.js';
import { SegmentReaders } from '../../memory/store/segmentFiles.js';
import type { ChunkFailure } from '../../memory/store/types.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { makeChunk, segmentFile, tempDir, TINY } from './helpers.js';

const G = { numLayers: 6, numKvHeads: 2, headDim: 8 };
const COUNT = 12;
const tokensOf = (id: number) => 4 + (id % 3);

/** A closed store of COUNT chunks over several small segments; returns its folder. */
async function buildStore(t: TestContext, dtype: KvStorageDtype): Promise<string> {
  const dir = tempDir(t, 'vigil-sections-');
  const recordBytes = RECORD_HEADER_BYTES + payloadLayout(dtype, G, 6).totalBytes;
  const store = ChunkStore.open({ dir, geometry: G, dtype, cacheBytes: 0, segmentBytes: 3 * recordBytes + 64 });
  for (let id = 0; id < COUNT; id++) await store.append(makeChunk(id, G, tokensOf(id)));
  await store.dispose();
  return dir;
}

function opened(dir: string): { ctx: RunReadContext; manifest: Manifest; readers: SegmentReaders } {
  const manifest = new Manifest(path.join(dir, MANIFEST_FILE), false);
  const readers = new SegmentReaders(dir);
  return { ctx: { readers, geometry: G, io: { readCalls: 0, bytesRead: 0 } }, manifest, readers };
}

function sizedScratch(): ScratchBuffers & { sizes: number[] } {
  const s = { sizes: [] as number[], take: (bytes: number) => (s.sizes.push(bytes), new ArrayBuffer(bytes)), give: () => undefined };
  return s;
}

/** Per-chunk layers: every other chunk, runs of adjacent layers, unsorted, with a duplicate. */
function selection(seed: number): Map<number, number[]> {
  const rand = mulberry32(seed);
  const wanted = new Map<number, number[]>();
  for (let id = 0; id < COUNT; id++) {
    if (rand() < 0.3) continue;
    const layers = [...Array(G.numLayers).keys()].filter(() => rand() < 0.5);
    if (layers.length === 0) layers.push(Math.floor(rand() * G.numLayers));
    layers.reverse();
    if (rand() < 0.2) layers.push(layers[0]!);
    wanted.set(id, layers);
  }
  return wanted;
}

/** Touching sections of one record: the reads needed with no gap merging and no cap. */
function touchingRuns(wanted: Map<number, number[]>): number {
  let runs = 0;
  for (const layers of wanted.values()) {
    const ls = [...new Set(layers)].sort((a, b) => a - b);
    ls.forEach((l, i) => (runs += i === 0 || ls[i - 1] !== l - 1 ? 1 : 0));
  }
  return runs;
}

const MODES: Array<Partial<SectionReadOptions>> = [
  { io: 'sync' },
  { io: 'async' },
  { io: 'auto' },
  { io: 'sync', maxGapBytes: 1 << 20 },
  { io: 'async', maxGapBytes: 200, concurrency: 2 },
  { io: 'sync', maxRunBytes: 1 },
  { io: 'sync', sliceMs: 0 },
];

for (const dtype of ['float32', 'int8'] as KvStorageDtype[]) {
  test(`${dtype}: every read path and merge setting returns the layers of whole-chunk reads`, async (t) => {
    const dir = await buildStore(t, dtype);
    const store = ChunkStore.open({ dir, cacheBytes: 0 });
    const whole = await store.readChunks([...Array(COUNT).keys()]);
    await store.dispose();
    const { ctx, manifest, readers } = opened(dir);
    try {
      assert.ok(new Set(manifest.locationsByIds([...Array(COUNT).keys()]).map((r) => r.segment)).size >= 3, 'spans several segments');
      for (let seed = 1; seed <= 4; seed++) {
        const wanted = selection(seed);
        const rows = manifest.locationsByIds([...wanted.keys()]).reverse(); // order of rows must not matter
        const sizes = new Set<number>();
        for (const mode of MODES) {
          const options = { ...DEFAULT_SECTION_READ, ...mode };
          const scratch = sizedScratch();
          const failed: ChunkFailure[] = [];
          const before = ctx.io.readCalls;
          const got = await readLayerSections(ctx, rows, wanted, scratch, options, failed);
          const label = `${dtype} seed ${seed} ${JSON.stringify(mode)}`;
          assert.deepEqual(failed, [], label);
          assert.deepEqual([...got.chunks.keys()].sort((a, b) => a - b), [...wanted.keys()].sort((a, b) => a - b), label);
          for (const [id, layers] of wanted) {
            const chunk = got.chunks.get(id)!;
            assert.equal(chunk.tokenCount, tokensOf(id));
            assert.deepEqual([...chunk.layers.keys()].sort(), [...new Set(layers)].sort(), label);
            for (const l of layers) {
              assert.deepEqual(chunk.layers.get(l)!.key, whole.chunks.get(id)!.keys[l], `${label}: chunk ${id} layer ${l} keys`);
              assert.deepEqual(chunk.layers.get(l)!.value, whole.chunks.get(id)!.values[l], `${label}: chunk ${id} layer ${l} values`);
            }
          }
          const reads = ctx.io.readCalls - before;
          if (options.maxGapBytes === 0 && options.maxRunBytes >= 1 << 20) assert.equal(reads, touchingRuns(wanted), `${label}: one read per run of touching sections`);
          if (options.maxRunBytes === 1) assert.equal(reads, [...wanted.values()].reduce((n, ls) => n + new Set(ls).size, 0), `${label}: one read per section`);
          if (options.maxGapBytes > 1000) assert.ok(reads < touchingRuns(wanted), `${label}: gaps merged (${reads} reads)`);
          if (options.maxGapBytes === 0) sizes.add(scratch.sizes[0]!);
        }
        assert.equal(sizes.size, 1, 'the pool is asked for one size whatever the merging');
      }
    } finally {
      readers.closeAll();
      manifest.db.close();
    }
  });
}

test('a damaged section, a cut-short segment and a missing segment fail their chunks alone, on every read path', async (t) => {
  const dir = await buildStore(t, 'float32');
  const { ctx, manifest, readers } = opened(dir);
  try {
    const all = manifest.locationsByIds([...Array(COUNT).keys()]);
    const row = (id: number) => all.find((r) => r.chunkId === id)!;
    const lay = (id: number) => payloadLayout('float32', G, row(id).tokenCount);
    // Chunk 1, layer 3: one flipped byte.
    const at = row(1).offset + RECORD_HEADER_BYTES + 3 * lay(1).layerBytes + 5;
    const fd = fs.openSync(segmentFile(dir, row(1).segment), 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0]! ^= 0x40;
    fs.writeSync(fd, byte, 0, 1, at);
    fs.closeSync(fd);
    // The last chunk's segment cut inside its layer 4.
    const last = row(COUNT - 1);
    fs.truncateSync(segmentFile(dir, last.segment), last.offset + RECORD_HEADER_BYTES + 4 * lay(COUNT - 1).layerBytes + 8);
    // Chunk 4's segment gone (another chunk in it as well).
    const gone = row(4).segment;
    fs.renameSync(segmentFile(dir, gone), `${segmentFile(dir, gone)}.away`);
    const inGone = all.filter((r) => r.segment === gone).map((r) => r.chunkId);
    assert.ok(!inGone.includes(1) && !inGone.includes(COUNT - 1), 'the damaged chunks are in other segments');

    const wanted = new Map<number, number[]>([
      [0, [3, 4]],
      [1, [2, 3, 4]], // layer 3 damaged
      [2, [3]],
      [COUNT - 1, [3, 4, 5]], // 3 intact, 4 cut, 5 missing
      ...inGone.map((id) => [id, [0]] as [number, number[]]),
    ]);
    for (const io of ['sync', 'async', 'auto'] as const) {
      const failed: ChunkFailure[] = [];
      const rows = all.filter((r) => wanted.has(r.chunkId));
      const got = await readLayerSections(ctx, rows, wanted, sizedScratch(), { ...DEFAULT_SECTION_READ, io }, failed);
      const reasons = new Map(failed.map((f) => [f.chunkId, f.reason]));
      assert.equal(reasons.get(1), 'checksum', io);
      assert.match(failed.find((f) => f.chunkId === 1)!.message, /layer 3: checksum mismatch/);
      assert.equal(reasons.get(COUNT - 1), 'truncated', io);
      for (const id of inGone) assert.equal(reasons.get(id), 'missing-segment', `${io}: chunk ${id}`);
      assert.equal(failed.length, 2 + inGone.length, `${io}: one failure per chunk: ${JSON.stringify(failed)}`);
      assert.deepEqual([...got.chunks.keys()].sort((a, b) => a - b), [0, 2], io);
      assert.deepEqual(got.chunks.get(2)!.layers.get(3)!.key, makeChunk(2, G, tokensOf(2)).keys[3]);
    }
  } finally {
    readers.closeAll();
    manifest.db.close();
  }
});

test('through the store: readLayers reports a damaged section and returns the rest, sorted reads equal whole reads', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY, cacheBytes: 0 });
  for (let id = 0; id < 8; id++) await store.append(makeChunk(id, TINY, 5));
  await store.dispose();
  const lay = payloadLayout('float32', TINY, 5);
  const manifest = new Manifest(path.join(dir, MANIFEST_FILE), false);
  const r6 = manifest.locationsByIds([6])[0] as ChunkLocation;
  manifest.db.close();
  const fd = fs.openSync(segmentFile(dir, r6.segment), 'r+');
  fs.writeSync(fd, Buffer.from([1, 2, 3]), 0, 3, r6.offset + RECORD_HEADER_BYTES + lay.layerBytes + 40);
  fs.closeSync(fd);
  store = ChunkStore.open({ dir, cacheBytes: 0 });
  try {
    // Layers in descending chunk order and a chunk's last layer next to the next chunk's first.
    const wanted = new Map([
      [7, [0, 1]],
      [6, [1]],
      [5, [2]],
      [3, [2, 0]],
      [2, [1, 2]],
    ]);
    const got = await store.readLayers(wanted);
    assert.deepEqual(got.failed.map((f) => [f.chunkId, f.reason]), [[6, 'checksum']]);
    assert.deepEqual([...got.chunks.keys()].sort(), [2, 3, 5, 7]);
    for (const [id, layers] of wanted) {
      if (id === 6) continue;
      for (const l of layers) {
        assert.deepEqual(got.chunks.get(id)!.layers.get(l)!.key, makeChunk(id, TINY, 5).keys[l]);
        assert.deepEqual(got.chunks.get(id)!.layers.get(l)!.value, makeChunk(id, TINY, 5).values[l]);
      }
    }
    got.release();
  } finally {
    await store.dispose();
  }
});

test('new stores keep the layer checksums ahead of the representatives in the row', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY });
  await store.dispose();
  const manifest = new Manifest(path.join(dir, MANIFEST_FILE), false);
  try {
    const columns = (manifest.db.prepare('PRAGMA table_info(chunks)').all() as Array<{ name: string }>).map((c) => c.name);
    assert.ok(columns.indexOf('layer_checksums') < columns.indexOf('representatives'), columns.join(', '));
  } finally {
    manifest.db.close();
  }
});
