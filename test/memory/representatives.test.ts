// The manifest's representatives encoding (memory/store/representatives.ts, issue 15): exact bytes
// for known inputs, the int8 round-trip bound, old float32 rows read bit-exactly, and a store that
// writes compact rows and reads them (and old rows) back after reopening.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ChunkStore } from '../../memory/store/index.js';
import {
  asStoredRepresentatives,
  packRepresentatives,
  representativesBytes,
  representativesFormat,
  unpackRepresentatives,
} from '../../memory/store/representatives.js';
import { halfUlp, seededData } from '../helpers/seededData.js';
import { makeChunk, tempDir, TINY } from './helpers.js';

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Layer-major float32 bytes: the layout every row had before issue 15. */
function float32Blob(reps: readonly Float32Array[]): Buffer {
  return Buffer.concat(reps.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
}

/** The same bytes at an odd offset inside a larger buffer (SQLite hands blobs out unaligned). */
function unaligned(blob: Uint8Array): Uint8Array {
  const host = new Uint8Array(blob.length + 3);
  host.set(blob, 1);
  return host.subarray(1, 1 + blob.length);
}

/**
 * Per element |x - decoded| <= s/2 (s = the layer's scale, maxabs/127 rounded to float32) plus the
 * float32 rounding of s * code; so relative to the layer's max |x| about 1/254.
 */
function assertWithinBound(want: readonly Float32Array[], got: readonly Float32Array[]): number {
  let worst = 0;
  want.forEach((x, l) => {
    let maxAbs = 0;
    for (const v of x) maxAbs = Math.max(maxAbs, Math.abs(v));
    const scale = Math.fround(maxAbs / 127);
    for (let i = 0; i < x.length; i++) {
      const err = Math.abs(x[i]! - got[l]![i]!);
      assert.ok(err <= scale / 2 + halfUlp(x[i]!) + halfUlp(scale * 127), `layer ${l}[${i}]: error ${err} > half step ${scale / 2}`);
      if (maxAbs > 0) worst = Math.max(worst, err / maxAbs);
    }
  });
  return worst;
}

test('known representatives pack to known bytes: float32 LE scales first, then int8 codes per layer', () => {
  const reps = [Float32Array.of(1, -0.4, 0.25, 0), Float32Array.of(0, -0, 0, 0), Float32Array.of(-1.27, 0.333, 0.004, 1)];
  const blob = packRepresentatives(reps);
  // scales: fround(1/127) = 0x3c010204, 0 (all-zero layer), fround(fround(1.27)/127) = 0x3c23d70a
  // codes:  127, round(-0.4*127 = -50.8) = -51, round(31.75) = 32, 0 | 0 0 0 0 | -127, round(33.3) = 33, round(0.4) = 0, 100
  assert.equal(blob.toString('hex'), '0402013c' + '00000000' + '0ad7233c' + '7fcd2000' + '00000000' + '81210064');
  assert.equal(blob.length, representativesBytes(3, 4));
  const got = unpackRepresentatives(unaligned(blob), 3, 4);
  const s0 = Math.fround(1 / 127);
  const s2 = Math.fround(Math.fround(1.27) / 127);
  assert.deepEqual(got, [
    Float32Array.of(127 * s0, -51 * s0, 32 * s0, 0),
    Float32Array.of(0, 0, 0, 0),
    Float32Array.of(-127 * s2, 33 * s2, 0, 100 * s2),
  ]);
  assert.ok(got.every((v) => v.every(Number.isFinite)), 'an all-zero layer decodes to zeros, never NaN');
});

test('int8 round trip: every element within half a step of its layer (about 1/254 of the layer max), measured', (t) => {
  const layers = 30;
  const dim = 192;
  // Real mean keys: a shared offset plus content, and layers of very different magnitude.
  const reps = Array.from({ length: layers }, (_, l) => seededData(dim, 100 + l, 2 ** (l % 7 - 3), l % 3 === 0 ? 0.5 : 0));
  reps[7]!.fill(0); // an all-zero layer
  const blob = packRepresentatives(reps);
  assert.equal(blob.length, layers * (4 + dim));
  const got = unpackRepresentatives(blob, layers, dim);
  const worst = assertWithinBound(reps, got);
  t.diagnostic(`int8 representatives: max error / layer max ${worst.toExponential(3)} (bound 1/254 = ${(1 / 254).toExponential(3)})`);
  assert.ok(worst <= 1 / 254 + 1e-6 && worst > 1 / 1000, `worst ${worst}`);
  assert.deepEqual(got[7], new Float32Array(dim));
  assert.deepEqual(asStoredRepresentatives(reps), got, 'asStoredRepresentatives is exactly pack then unpack');
  // Encoding the decoded rows again gives the same bytes on this data (the sealed index
  // re-quantizes rows the same way, so it adds no further error to them).
  assert.ok(packRepresentatives(got).equals(blob));
});

test('old float32 rows (layers * dim * 4 bytes) still decode bit-exactly, -0, subnormals and NaN payloads included', () => {
  const reps = [Float32Array.of(1.5, -0, 1e-40, -3.25e7), Float32Array.of(0, 2 ** -149, -1, 65504)];
  const nan = new Float32Array(1);
  new Uint32Array(nan.buffer)[0] = 0x7fc01234;
  reps[1]![0] = nan[0]!;
  const blob = float32Blob(reps);
  assert.equal(representativesFormat(blob.length, 2, 4), 'float32');
  const got = unpackRepresentatives(unaligned(blob), 2, 4);
  got.forEach((v, l) => assert.deepEqual(bits(v), bits(reps[l]!), `layer ${l}`));
});

test('the format comes from the blob length; any other length is STORE_CORRUPT; pack refuses what it cannot encode', () => {
  // smolvlm2-256m: 30 layers x (3 KV heads x 64).
  assert.equal(representativesBytes(30, 192), 5880);
  assert.equal(representativesBytes(30, 192, 'float32'), 23040);
  assert.equal(representativesFormat(5880, 30, 192), 'int8');
  assert.equal(representativesFormat(23040, 30, 192), 'float32');
  // 4 * dim == dim + 4 has no integer solution, so no geometry makes the two lengths collide.
  for (let dim = 1; dim <= 4096; dim++) assert.notEqual(representativesBytes(3, dim), representativesBytes(3, dim, 'float32'));
  for (const bad of [0, 5879, 5881, 11520]) {
    assert.throws(() => unpackRepresentatives(new Uint8Array(bad), 30, 192), (e: Error & { code?: string }) => e.code === 'STORE_CORRUPT' && /fits neither/.test(e.message));
  }
  assert.throws(() => packRepresentatives([Float32Array.of(1, Number.NaN)]), RangeError);
  assert.throws(() => packRepresentatives([Float32Array.of(1, Number.POSITIVE_INFINITY)]), RangeError);
  assert.throws(() => packRepresentatives([Float32Array.of(1, 2), Float32Array.of(1)]), /layer 1 has 1 values/);
  assert.equal(packRepresentatives([]).length, 0);
  assert.deepEqual(unpackRepresentatives(new Uint8Array(0), 0, 192), []);
});

test('a store writes compact rows; after reopening every read returns them within the bound, and old float32 rows exactly', async (t) => {
  const dir = tempDir(t);
  const dim = TINY.numKvHeads * TINY.headDim;
  const chunks = [0, 1, 2, 3].map((id) => makeChunk(id, TINY, 5, { scale: 3 }));
  {
    const store = ChunkStore.open({ dir, geometry: TINY, fsync: 'none' });
    for (const c of chunks) await store.append(c);
    await store.dispose();
  }
  // What a store written before issue 15 holds: chunk 2's row as float32.
  const db = new Database(path.join(dir, 'manifest.sqlite'));
  try {
    const lengths = db.prepare('SELECT length(representatives) AS n FROM chunks ORDER BY chunk_id').all() as Array<{ n: number }>;
    assert.deepEqual(lengths.map((r) => r.n), [0, 1, 2, 3].map(() => TINY.numLayers * (4 + dim)));
    assert.equal(db.prepare('UPDATE chunks SET representatives = ? WHERE chunk_id = 2').run(float32Blob(chunks[2]!.representatives)).changes, 1);
  } finally {
    db.close();
  }
  const store = ChunkStore.open({ dir, geometry: TINY });
  t.after(() => store.dispose());
  const metas = store.listChunks();
  const byId = new Map(store.readMetas([0, 1, 2, 3]).map((m) => [m.chunkId, m]));
  const read = await store.readChunks([0, 1, 2, 3]);
  assert.deepEqual(read.failed, []);
  for (const c of chunks) {
    const fromList = metas.find((m) => m.chunkId === c.chunkId)!.representatives;
    for (const got of [fromList, byId.get(c.chunkId)!.representatives, read.chunks.get(c.chunkId)!.representatives]) {
      if (c.chunkId === 2) {
        got.forEach((v, l) => assert.deepEqual(bits(v), bits(c.representatives[l]!), `old row, layer ${l}`));
      } else {
        assertWithinBound(c.representatives, got);
        assert.deepEqual(got, asStoredRepresentatives(c.representatives));
      }
    }
  }
  assert.deepEqual((await store.verify()).damaged, []);
});
