// One validator before append: shapes, ids, times and finiteness of every tensor value; a
// rejected chunk writes nothing and leaves the store usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ChunkStore, MAX_CHUNK_ID, validateChunk, type ChunkGeometry } from '../../memory/store/index.js';
import { firstNonFinite } from '../../memory/store/chunkValidation.js';
import { assertChunkBitExact, makeChunk, rejectsWithCode, segmentFile, tempDir, TINY } from './helpers.js';

test('firstNonFinite: finds NaN and both infinities anywhere, including the tail past a multiple of 4', () => {
  for (const n of [0, 1, 3, 4, 5, 9, 16, 1001]) {
    const a = new Float32Array(n).map((_, i) => (i % 7) - 3);
    assert.equal(firstNonFinite(a), -1);
    for (const bad of [Number.NaN, Infinity, -Infinity]) {
      for (const at of [0, n - 1, Math.floor(n / 2)]) {
        if (at < 0 || at >= n) continue;
        const b = a.slice();
        b[at] = bad;
        assert.equal(firstNonFinite(b), at, `n ${n} ${bad} at ${at}`);
      }
    }
  }
  // Edge values that are finite: -0, the smallest subnormal, +-FLT_MAX.
  const edge = new Float32Array([-0, 1e-45, 3.4028234663852886e38, -3.4028234663852886e38, 0]);
  assert.equal(firstNonFinite(edge), -1);
  // Every NaN bit pattern counts (quiet, signalling, with payloads).
  const u = new Uint32Array([0x7fc00000, 0x7f800001, 0xffc01234, 0x7fffffff]);
  for (let i = 0; i < u.length; i++) assert.equal(firstNonFinite(new Float32Array(u.buffer, i * 4, 1)), 0);
});

test('a non-finite key, value or representative is refused with its chunk, array, layer and index; nothing is written', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: TINY });
  t.after(() => store.dispose());
  await store.append(makeChunk(0));
  const size = () => fs.statSync(segmentFile(dir, 1)).size;
  const before = size();
  for (const [array, layer, index, value] of [
    ['keys', 0, 0, Number.NaN],
    ['keys', 2, 79, Infinity],
    ['values', 1, 33, -Infinity],
    ['representatives', 2, 15, Number.NaN],
  ] as const) {
    const bad = makeChunk(1);
    bad[array][layer]![index] = value;
    await rejectsWithCode(store.append(bad), 'BAD_INPUT', new RegExp(`chunk 1 ${array} layer ${layer} index ${index} is non-finite`));
    // The pure check alone says the same, before any store is involved.
    assert.throws(() => validateChunk(bad, TINY, 0), /non-finite/);
    assert.equal(size(), before, `${array}: nothing written`);
    assert.equal(store.stats().chunkCount, 1);
    assert.equal(store.stats().pendingChunks, 0);
  }
  // The id was not consumed: the corrected chunk goes in under it, and reads back.
  await store.append(makeChunk(1));
  assertChunkBitExact((await store.readChunks([1])).chunks.get(1), makeChunk(1));
});

test('validateChunk is pure: ids, times, shapes and values, with the ordering rule against lastChunkId', () => {
  const g: ChunkGeometry = { numLayers: 2, numKvHeads: 1, headDim: 3 };
  const ok = makeChunk(5, g, 3);
  validateChunk(ok, g, null);
  validateChunk(ok, g, 4);
  assert.throws(() => validateChunk(ok, g, 5), /not above the last appended id 5/);
  assert.throws(() => validateChunk({ ...ok, chunkId: MAX_CHUNK_ID + 1 }, g, null), /0\.\.4294967295/);
  validateChunk({ ...ok, chunkId: MAX_CHUNK_ID }, g, null);
  assert.throws(() => validateChunk(ok, TINY, null), (e: Error & { code?: string }) => e.code === 'SHAPE_MISMATCH');
  // The odd element count (1 x 3 x 3) exercises the tail of the unrolled loop.
  const tail = makeChunk(5, g, 3);
  tail.values[1]![8] = Number.NaN;
  assert.throws(() => validateChunk(tail, g, null), /chunk 5 values layer 1 index 8 is non-finite \(NaN\)/);
});

test('validator cost at smolvlm2-256m geometry (30 x 3 x 64, 81 tokens), measured', (t) => {
  const g: ChunkGeometry = { numLayers: 30, numKvHeads: 3, headDim: 64 };
  const chunk = makeChunk(0, g, 81);
  for (let i = 0; i < 5; i++) validateChunk(chunk, g, null);
  const rounds = 30;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) validateChunk(chunk, g, null);
  const ms = (performance.now() - t0) / rounds;
  const elements = 2 * 30 * 3 * 64 * 81 + 30 * 3 * 64;
  t.diagnostic(`validateChunk: ${ms.toFixed(3)} ms per chunk (${elements} values, ${((ms * 1e6) / elements).toFixed(2)} ns each)`);
  // Loose bound, for a loaded 2-core machine: the point is that it is not a per-element call.
  assert.ok(ms < 50, `${ms} ms per chunk`);
});
