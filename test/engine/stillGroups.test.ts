/**
 * Archive still groups (issue 15): consecutive stills coded together as H.264 by the real ffmpeg
 * binary, the holder/member layout, decoding back the right frame for each chunk, failures for a
 * lost holder, and the memory store's demotion handing its runs to the packer (real store files).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RgbImage } from '../../src/engine/frameGate.js';
import { encodeStill } from '../../src/engine/stills.js';
import { packStillGroups, readArchivedFrames, STILL_GROUP_FRAMES, stillKind, type ReadStills } from '../../src/engine/stillGroups.js';
import { ChunkStore } from '../../memory/store/index.js';
import { payloadLayout, recordLength, SEGMENT_HEADER_BYTES, STILL_LENGTH_BYTES } from '../../memory/store/recordFormat.js';
import { makeChunk, tempDir } from '../memory/helpers.js';

const SIDE = 64;

/** A smooth background (photo-like) with a bright square that moves 5 px a frame: every frame distinct. */
function frame(i: number, side = SIDE): RgbImage {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) data.set([40 + x * 3, 30 + y * 3, 128 + ((x + y) % 16)], 3 * (y * side + x));
  }
  const sx = (i * 5) % (side - 16);
  for (let y = 8; y < 24; y++) for (let x = sx; x < sx + 16; x++) data.set([250, 250, 40], 3 * (y * side + x));
  return { data, width: side, height: side };
}

function meanAbsDiff(a: RgbImage, b: RgbImage): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += Math.abs(a.data[i]! - b.data[i]!);
  return sum / a.data.length;
}

function reader(stills: ReadonlyMap<number, Uint8Array>): ReadStills {
  return async (ids) => {
    const out = new Map<number, Uint8Array>();
    const failed = [];
    for (const id of ids) {
      const s = stills.get(id);
      if (s === undefined) failed.push({ chunkId: id, reason: 'not-found' as const, message: `chunk ${id} is not in the store` });
      else out.set(id, s);
    }
    return { stills: out, failed };
  };
}

test('consecutive stills become H.264 groups of at most STILL_GROUP_FRAMES; every chunk decodes back to its own frame', async () => {
  const n = STILL_GROUP_FRAMES + 8;
  const originals = Array.from({ length: n }, (_, i) => frame(i));
  const webp = await Promise.all(originals.map((f) => encodeStill(f)));
  const packed = await packStillGroups(webp.map((still, i) => ({ chunkId: 100 + i, still })));
  assert.equal(packed.length, n);
  const kinds = packed.map((s) => stillKind(s).kind);
  // Two groups: chunks 100..131 held by 131, 132..139 held by 139.
  assert.equal(kinds.filter((k) => k === 'holder').length, 2);
  assert.equal(kinds[STILL_GROUP_FRAMES - 1], 'holder');
  assert.equal(kinds[n - 1], 'holder');
  const m = stillKind(packed[5]!);
  assert.deepEqual(m, { kind: 'member', holder: 100 + STILL_GROUP_FRAMES - 1, index: 5 });
  const webpBytes = webp.reduce((a, s) => a + s.length, 0);
  const groupBytes = packed.reduce((a, s) => a + s.length, 0);
  // At 64 px the stream headers weigh; at the 512-px tile groups are 4x smaller (docs/PERFORMANCE.md).
  assert.ok(groupBytes < webpBytes, `groups ${groupBytes} B vs WebP ${webpBytes} B`);

  const stored = new Map(packed.map((s, i) => [100 + i, s] as const));
  // Members only: their holders are read as well.
  const ids = [100, 105, 120, 133, 139];
  const { frames, failed } = await readArchivedFrames(reader(stored), ids);
  assert.deepEqual(failed, []);
  for (const id of ids) {
    const got = frames.get(id)!;
    const own = meanAbsDiff(got, originals[id - 100]!);
    const neighbour = meanAbsDiff(got, originals[id - 100 + (id - 100 === n - 1 ? -1 : 1)]!);
    assert.ok(own < 6, `chunk ${id}: mean |diff| ${own.toFixed(2)} from its own frame`);
    assert.ok(own < neighbour, `chunk ${id} is its own frame (${own.toFixed(2)}), not its neighbour (${neighbour.toFixed(2)})`);
  }
});

test('a frame unlike its neighbours (a needle among flat haystack) decodes as itself, with either ffmpeg', async () => {
  const flat = (level: number): RgbImage => ({ data: new Uint8Array(SIDE * SIDE * 3).fill(level), width: SIDE, height: SIDE });
  const red: RgbImage = { data: new Uint8Array(SIDE * SIDE * 3), width: SIDE, height: SIDE };
  for (let i = 0; i < SIDE * SIDE; i++) red.data.set([250, 0, 0], 3 * i);
  const frames = Array.from({ length: 10 }, (_, i) => (i === 5 ? red : flat(120 + i)));
  const webp = await Promise.all(frames.map((f) => encodeStill(f)));
  const packed = await packStillGroups(webp.map((still, chunkId) => ({ chunkId, still })));
  const stored = new Map(packed.map((s, i) => [i, s] as const));
  for (const binary of [undefined, 'system']) {
    const saved = process.env.VIGIL_FFMPEG;
    if (binary) process.env.VIGIL_FFMPEG = binary;
    try {
      for (const id of [4, 5, 6]) {
        const { frames: got } = await readArchivedFrames(reader(stored), [id]);
        assert.ok(meanAbsDiff(got.get(id)!, frames[id]!) < 8, `chunk ${id} (${binary ?? 'default'} ffmpeg): mean |diff| ${meanAbsDiff(got.get(id)!, frames[id]!).toFixed(1)}`);
      }
    } finally {
      if (saved === undefined) delete process.env.VIGIL_FFMPEG;
      else process.env.VIGIL_FFMPEG = saved;
    }
  }
});

test('a member whose holder is gone fails with the reason; single, odd-sized and already grouped stills are kept as they are', async () => {
  const webp = await Promise.all([0, 1, 2].map((i) => encodeStill(frame(i))));
  const packed = await packStillGroups(webp.map((still, i) => ({ chunkId: i, still })));
  const stored = new Map(packed.map((s, i) => [i, s] as const));
  stored.delete(2); // the holder
  const { frames, failed } = await readArchivedFrames(reader(stored), [0, 1]);
  assert.equal(frames.size, 0);
  assert.deepEqual(failed.map((f) => f.chunkId).sort(), [0, 1]);
  assert.match(failed[0]!.message, /holder \(chunk 2\) is gone/);

  const single = await packStillGroups([{ chunkId: 7, still: webp[0]! }]);
  assert.deepEqual(single[0], webp[0]);
  const odd = await encodeStill(frame(0, 63));
  const mixed = await packStillGroups([{ chunkId: 1, still: odd }, { chunkId: 2, still: odd }]);
  assert.deepEqual(mixed, [odd, odd]);
  const again = await packStillGroups(packed.map((still, i) => ({ chunkId: i, still })));
  assert.deepEqual(again, packed);
  // Images still decode on their own.
  const plain = await readArchivedFrames(reader(new Map([[5, webp[1]!]])), [5]);
  assert.ok(meanAbsDiff(plain.frames.get(5)!, frame(1)) < 6);
});

test('demotion to the archive hands consecutive stills to packArchiveStills; a failing packer keeps the stills', async (t) => {
  const G = { numLayers: 2, numKvHeads: 1, headDim: 8 };
  const originals = Array.from({ length: 12 }, (_, i) => frame(i));
  const webp = await Promise.all(originals.map((f) => encodeStill(f)));
  // Segments sized to hold exactly the chunks with stills: the next append rolls to a new one.
  const kvBytes = payloadLayout('float32', G, 4).totalBytes;
  const segmentBytes = (count: number) => SEGMENT_HEADER_BYTES + webp.slice(0, count).reduce((a, s) => a + recordLength(kvBytes + STILL_LENGTH_BYTES + s.length), 0);
  const open = (dir: string, count: number, packArchiveStills: typeof packStillGroups) =>
    ChunkStore.open({ dir, geometry: G, dtype: 'float32', segmentBytes: segmentBytes(count), cacheBytes: 0, packArchiveStills });
  const store = open(tempDir(t), 12, packStillGroups);
  try {
    for (let id = 0; id < 12; id++) await store.append({ ...makeChunk(id, G, 4), still: webp[id]! });
    await store.append(makeChunk(12, G, 4)); // the next segment
    const [segment] = store.stats().segments;
    const r = await store.demoteSegment(segment!.segment, 'archive');
    assert.ok(r !== null);
    const read = await store.readStills([0, 5, 11]);
    assert.equal(stillKind(read.stills.get(11)!).kind, 'holder');
    assert.deepEqual(stillKind(read.stills.get(5)!), { kind: 'member', holder: 11, index: 5 });
    const { frames, failed } = await readArchivedFrames((ids) => store.readStills(ids), [0, 5, 11]);
    assert.deepEqual(failed, []);
    for (const id of [0, 5, 11]) assert.ok(meanAbsDiff(frames.get(id)!, originals[id]!) < 6, `chunk ${id}`);
    assert.deepEqual((await store.verify()).damaged, []);
  } finally {
    await store.dispose();
  }

  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  const failing = open(tempDir(t), 3, () => Promise.reject(new Error('no encoder here')));
  try {
    for (let id = 0; id < 3; id++) await failing.append({ ...makeChunk(id, G, 4), still: webp[id]! });
    await failing.append(makeChunk(3, G, 4));
    const [segment] = failing.stats().segments;
    assert.ok((await failing.demoteSegment(segment!.segment, 'archive')) !== null);
    const read = await failing.readStills([0, 1, 2]);
    for (let id = 0; id < 3; id++) assert.deepEqual(new Uint8Array(read.stills.get(id)!), webp[id]);
    await new Promise((r) => setImmediate(r));
    assert.ok(warnings.some((w) => /kept as they were: no encoder here/.test(w)), warnings.join('\n'));
  } finally {
    process.off('warning', onWarning);
    await failing.dispose();
  }
});
