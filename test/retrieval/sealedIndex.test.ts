/**
 * StreamIndex with sealing: older chunks move into block files (real files, fsync) in the
 * background; searches span both tiers; removal, save/load, orphans and damage behave. Results
 * are compared with a literal brute-force reference over the same vectors.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StreamIndex, type IndexedChunk, type StreamIndexOptions } from '../../retrieval/index.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { bruteForce } from './helpers.js';

const LAYERS = 2;
const DIM = 16;

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-sealed-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Video-like chunks: scenes (a random centre each) with small per-frame noise; times 1 s apart. */
function sceneChunks(count: number, seed: number): IndexedChunk[] {
  const random = mulberry32(seed);
  const centre = (): Float32Array => Float32Array.from({ length: DIM }, () => random() * 2 - 1);
  let scene = [centre(), centre()];
  return Array.from({ length: count }, (_, id) => {
    if (id % 25 === 0) scene = [centre(), centre()];
    const representatives = scene.map((c) => Float32Array.from(c, (x) => x + (random() - 0.5) * 0.2));
    return { chunkId: id, tStart: id, tEnd: id + 1, representatives };
  });
}

function options(dir: string, extra: Partial<StreamIndexOptions['sealing']> = {}): StreamIndexOptions {
  return { numLayers: LAYERS, dim: DIM, sealing: { dir: path.join(dir, 'blocks'), blockChunks: 64, listChunks: 8, ...extra } };
}

async function build(dir: string, chunks: readonly IndexedChunk[], extra: Partial<StreamIndexOptions['sealing']> = {}): Promise<StreamIndex> {
  const index = StreamIndex.create(options(dir, extra));
  for (const c of chunks) index.addChunk(c.chunkId, c.tStart, c.tEnd, c.representatives);
  await index.idle();
  return index;
}

function queriesFor(random: () => number): Float32Array[] {
  return Array.from({ length: LAYERS }, () => Float32Array.from({ length: DIM }, () => random() * 2 - 1));
}

function recallOf(got: readonly number[], want: readonly number[]): number {
  const set = new Set(want);
  return got.filter((id) => set.has(id)).length / want.length;
}

test('older chunks are sealed into block files in the background; RAM holds at most two blocks of recent chunks', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(1000, 1);
  const index = await build(dir, chunks);
  t.after(() => index.dispose());
  const stats = index.stats();
  assert.equal(stats.size, 1000);
  assert.ok(stats.sealed!.blocks >= 13, `blocks: ${stats.sealed!.blocks}`);
  assert.equal(stats.sealed!.chunks + stats.layers[0]!.size, 1000);
  assert.ok(stats.layers[0]!.size < 2 * 64, `recent chunks in RAM: ${stats.layers[0]!.size}`);
  assert.equal(fs.readdirSync(path.join(dir, 'blocks')).length, stats.sealed!.blocks);
  assert.deepEqual(Array.from(index.chunkIdRange()), chunks.map((c) => c.chunkId));
  assert.deepEqual(Array.from(index.chunkIdRange(100, 140)), chunks.slice(100, 140).map((c) => c.chunkId));
  assert.equal(index.minChunkId(), 0);
  assert.equal(index.maxChunkId(), 999);
  for (const id of [0, 500, 999]) assert.ok(index.has(id));
  assert.throws(() => index.addChunk(5, 5, 6, chunks[5]!.representatives), /already indexed/);
});

test('searching both tiers finds what exact search finds (recall over scene data), in time order, with filters', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(1000, 2);
  const index = await build(dir, chunks);
  t.after(() => index.dispose());
  const random = mulberry32(5);
  let found = 0;
  let wanted = 0;
  for (let q = 0; q < 20; q++) {
    // Queries near a stored frame, as a question about something seen.
    const target = chunks[Math.floor(random() * chunks.length)]!;
    const queries = target.representatives.map((v) => Float32Array.from(v, (x) => x + (random() - 0.5) * 0.1));
    const got = index.retrieve(queries, 16);
    for (let layer = 0; layer < LAYERS; layer++) {
      assert.equal(got.chunkIds[layer]!.length, 16);
      const times = got.chunkIds[layer]!.map((id) => chunks[id]!.tStart);
      assert.deepEqual(times, [...times].sort((a, b) => a - b), 'time order');
      const ref = bruteForce(queries[layer]!, chunks.map((c) => ({ id: c.chunkId, vector: c.representatives[layer]! })), 16);
      found += recallOf(got.chunkIds[layer]!, ref.ids) * 16;
      wanted += 16;
      assert.ok(got.chunkIds[layer]!.includes(ref.ids[0]!), 'the best chunk is always found');
    }
  }
  assert.ok(found / wanted >= 0.95, `recall@16 ${found / wanted}`);

  // Filters span both tiers: exactly min(r, passing) per layer, every hit passing.
  const queries = queriesFor(random);
  const range = { start: 100.5, end: 140 };
  const exclude = new Set([110, 111, 900]);
  const filtered = index.retrieve(queries, 64, { timeRange: range, exclude });
  const passing = chunks.filter((c) => c.tEnd >= range.start && c.tStart <= range.end && !exclude.has(c.chunkId));
  for (let layer = 0; layer < LAYERS; layer++) {
    assert.equal(filtered.chunkIds[layer]!.length, Math.min(64, passing.length));
    const ref = bruteForce(queries[layer]!, passing.map((c) => ({ id: c.chunkId, vector: c.representatives[layer]! })), 64);
    assert.deepEqual([...filtered.chunkIds[layer]!].sort((a, b) => a - b), [...ref.ids].sort((a, b) => a - b));
  }
  const shared = index.retrieve(queries, 8, { mode: 'shared' });
  assert.deepEqual(shared.chunkIds[0], shared.chunkIds[1]);
  assert.equal(shared.chunkIds[0]!.length, 8);
});

test('removals reach sealed chunks; an emptied block file is deleted after the next save; save/load keeps everything', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(600, 3);
  const index = await build(dir, chunks);
  const blocksDir = path.join(dir, 'blocks');
  const before = fs.readdirSync(blocksDir).length;
  // Retention-like prefix (a whole block and part of the next) and a few ids in the middle.
  const removed = [...Array.from({ length: 100 }, (_, i) => i), 300, 301, 450];
  assert.equal(index.removeChunks(removed), removed.length);
  assert.equal(index.size, 600 - removed.length);
  for (const id of removed) assert.equal(index.has(id), false);
  await index.save(path.join(dir, 'index'));
  assert.equal(fs.readdirSync(blocksDir).length, before - 1, 'the emptied block file is gone');
  await index.dispose();

  const random = mulberry32(9);
  const queries = queriesFor(random);
  const expected = index.retrieve(queries, 32);
  // An orphan (a block sealed after the last save, then a crash) is deleted at load.
  fs.writeFileSync(path.join(blocksDir, 'block-0000000999-deadbeef.bin'), 'orphan');
  const loaded = await StreamIndex.load(path.join(dir, 'index'), { sealing: options(dir).sealing! });
  t.after(() => loaded.dispose());
  assert.equal(fs.existsSync(path.join(blocksDir, 'block-0000000999-deadbeef.bin')), false);
  assert.equal(loaded.size, 600 - removed.length);
  assert.deepEqual(Array.from(loaded.chunkIdRange()), chunks.map((c) => c.chunkId).filter((id) => !removed.includes(id)));
  assert.deepEqual(loaded.retrieve(queries, 32), expected);
  await assert.rejects(StreamIndex.load(path.join(dir, 'index')), /sealed blocks/);
});

test('a damaged or missing block is left out at load (named in a warning); a damaged list is skipped by searches', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(400, 4);
  const index = await build(dir, chunks);
  await index.save(path.join(dir, 'index'));
  await index.dispose();
  const blocksDir = path.join(dir, 'blocks');
  const files = fs.readdirSync(blocksDir).sort();
  // Header/tables damage: the block is unusable; data damage: one list fails its checksum.
  const first = path.join(blocksDir, files[0]!);
  const bytes = fs.readFileSync(first);
  bytes[80]! ^= 0xff;
  fs.writeFileSync(first, bytes);
  fs.rmSync(path.join(blocksDir, files[1]!));
  const second = path.join(blocksDir, files[2]!);
  const data = fs.readFileSync(second);
  data[data.length - 20]! ^= 0xff;
  fs.writeFileSync(second, data);

  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.message);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const loaded = await StreamIndex.load(path.join(dir, 'index'), { sealing: options(dir).sealing! });
  t.after(() => loaded.dispose());
  assert.equal(loaded.size, 400 - 128, 'two blocks of 64 left out');
  for (const id of [0, 63, 64, 127]) assert.equal(loaded.has(id), false);
  const random = mulberry32(3);
  // Reading the damaged list takes its block out too; every layer still gets min(r, live) chunks.
  for (let q = 0; q < 10; q++) {
    const got = loaded.retrieve(queriesFor(random), 300);
    assert.equal(got.chunkIds[0]!.length, Math.min(300, loaded.size));
    assert.equal(got.chunkIds[1]!.length, got.chunkIds[0]!.length);
  }
  assert.equal(loaded.size, 400 - 192, 'the block with the damaged list left the index');
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(warnings.some((w) => w.includes(files[0]!) && /checksum|truncated|bad/.test(w)), warnings.join('\n'));
  assert.ok(warnings.some((w) => w.includes(files[1]!) && /missing/.test(w)));
  assert.ok(warnings.some((w) => w.includes(files[2]!) && /checksum/.test(w)));
});

test('a rebuild with sealing seals as it goes; cosine space works across tiers; bad sealing options are BAD_CONFIG', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(300, 5);
  const rebuilt = await StreamIndex.rebuild({ ...options(dir), space: 'cosine' }, chunks);
  t.after(() => rebuilt.dispose());
  assert.ok(rebuilt.stats().sealed!.blocks >= 3);
  const target = chunks[42]!;
  const got = rebuilt.retrieve(target.representatives.map((v) => v.map((x) => x * 3)), 4);
  for (let layer = 0; layer < LAYERS; layer++) {
    const ref = bruteForce(target.representatives[layer]!, chunks.map((c) => ({ id: c.chunkId, vector: c.representatives[layer]! })), 4, 'cosine');
    assert.ok(got.chunkIds[layer]!.includes(ref.ids[0]!));
    assert.ok(got.scores[layer]!.every((s) => s <= 1.0001));
  }
  assert.throws(() => StreamIndex.create({ numLayers: 1, dim: 4, sealing: { dir: path.join(dir, 'x'), blockChunks: 1 } }), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG');
  assert.throws(() => StreamIndex.create({ numLayers: 1, dim: 4, sealing: { dir: '' } }), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG');
});

test('a chunk indexed late (older than sealed blocks) is sealed in a later block and still found, timed and removable', async (t) => {
  const dir = tempDir(t);
  const chunks = sceneChunks(400, 6);
  const index = StreamIndex.create(options(dir));
  t.after(() => index.dispose());
  for (const c of chunks) if (c.chunkId !== 10) index.addChunk(c.chunkId, c.tStart, c.tEnd, c.representatives);
  await index.idle();
  assert.ok(index.stats().sealed!.blocks >= 3);
  // Reconciliation puts back row 10; more frames follow, so it is sealed with newer chunks.
  index.addChunk(10, 10, 11, chunks[10]!.representatives);
  const more = sceneChunks(600, 7).slice(400);
  for (const c of more) index.addChunk(c.chunkId, c.tStart, c.tEnd, c.representatives);
  await index.idle();
  assert.equal(index.has(10), true);
  const all = [...chunks, ...more];
  const got = index.retrieve(chunks[10]!.representatives, 1, { mode: 'shared', sharedLayer: 0, timeRange: { start: 10, end: 10.5 } });
  assert.deepEqual(got.chunkIds, [[10], [10]]);
  const ref = bruteForce(chunks[10]!.representatives[1]!, all.map((c) => ({ id: c.chunkId, vector: c.representatives[1]! })), 3);
  assert.deepEqual([...index.retrieve(chunks[10]!.representatives, 3).chunkIds[1]!].sort((a, b) => a - b), [...ref.ids].sort((a, b) => a - b));
  const near = index.retrieve(chunks[10]!.representatives, 5, { timeRange: { start: 9, end: 12 } });
  assert.deepEqual(near.union, [8, 9, 10, 11, 12], "closed intervals: [8, 9] and [12, 13] touch the range");
  assert.equal(index.removeChunks([10]), 1);
  assert.equal(index.has(10), false);
  assert.equal(index.size, 599);
});
