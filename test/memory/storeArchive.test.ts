/**
 * The archive tier (issue 15 item 2): records that keep the frame's still after the KV, demotion of
 * whole segments to 'archive' (the still alone; crash-safe, a real child SIGKILLed at each step),
 * reads that report archived chunks instead of inventing KV, readStills(), imports straight into
 * the archive, and the budget policy: KV tiers up to kvShare of the budget, then the archive, then
 * deletion, oldest first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { ChunkStore } from '../../memory/store/index.js';
import type { DemotionStep } from '../../memory/store/index.js';
import { makeChunk, runDemoteStepChild, stillFor, tempDir } from './helpers.js';
import { TIER_CHUNKS, TIER_GEOMETRY, TIER_TOKENS } from './fixtures/tierGeometry.js';

const G = TIER_GEOMETRY;
/** Three records with stills a segment (a float32 record with its still is ~33 KB). */
const SEGMENT_BYTES = 32 + 3 * 33_100;
const withStill = (id: number): FrameChunk => ({ ...makeChunk(id, G, TIER_TOKENS, { scale: 2 }), still: stillFor(id) });

/** The KV read back bit-exact (representatives are the manifest's business, and may be stored compactly). */
function assertKvBitExact(got: FrameChunk | undefined, id: number): void {
  const want = makeChunk(id, G, TIER_TOKENS, { scale: 2 });
  assert.ok(got !== undefined, `chunk ${id} missing`);
  assert.equal(got.tokenCount, want.tokenCount);
  for (let l = 0; l < G.numLayers; l++) {
    assert.deepEqual(new Uint32Array(got.keys[l]!.slice().buffer), new Uint32Array(want.keys[l]!.slice().buffer), `chunk ${id} keys[${l}]`);
    assert.deepEqual(new Uint32Array(got.values[l]!.slice().buffer), new Uint32Array(want.values[l]!.slice().buffer), `chunk ${id} values[${l}]`);
  }
}

test('a still rides after the KV: KV reads bit-exact, readStills gives the bytes back, verify and reopen agree', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'float32', cacheBytes: 0 });
  try {
    for (let id = 0; id < 4; id++) await store.append(id === 2 ? makeChunk(id, G, TIER_TOKENS, { scale: 2 }) : withStill(id));
    const got = await store.readChunks([0, 1, 2, 3]);
    assert.deepEqual(got.failed, []);
    for (let id = 0; id < 4; id++) assertKvBitExact(got.chunks.get(id), id);
    const layers = await store.readLayers(new Map([[1, [0, 3]]]));
    assert.deepEqual(layers.failed, []);
    assert.deepEqual(layers.chunks.get(1)!.layers.get(3)!.key, makeChunk(1, G, TIER_TOKENS, { scale: 2 }).keys[3]);
    layers.release();
    const stills = await store.readStills([0, 1, 2, 3, 99]);
    assert.deepEqual([...stills.stills.keys()].sort(), [0, 1, 3]);
    for (const id of [0, 1, 3]) assert.deepEqual(new Uint8Array(stills.stills.get(id)!), stillFor(id));
    assert.deepEqual(stills.failed.map((f) => [f.chunkId, f.reason]), [[2, 'not-found'], [99, 'not-found']]);
    assert.match(stills.failed[0]!.message, /kept no still/);
    assert.deepEqual((await store.verify()).damaged, []);
  } finally {
    await store.dispose();
  }
  const again = ChunkStore.open({ dir, recoveryCheck: 'full' });
  try {
    assert.deepEqual(again.recovery.droppedChunks, []);
    assert.deepEqual(new Uint8Array((await again.readStills([3])).stills.get(3)!), stillFor(3));
  } finally {
    await again.dispose();
  }
});

test('demoteSegment to the archive: the KV is gone (reads say archived), stills stay, bytes shrink, tiers and stats say archive', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'float32', segmentBytes: SEGMENT_BYTES, cacheBytes: 1 << 24 });
  try {
    for (let id = 0; id < 9; id++) await store.append(withStill(id));
    await store.readChunks([0]); // a cached KV copy must not outlive the move
    const before = store.stats();
    assert.deepEqual(before.segments.map((s) => s.chunkCount), [3, 3, 3]);
    // kivi4 first: the still is carried over.
    const k = await store.demoteSegment(before.segments[1]!.segment);
    assert.ok(k !== null);
    assert.deepEqual(new Uint8Array((await store.readStills([4])).stills.get(4)!), stillFor(4));
    const r = await store.demoteSegment(before.segments[0]!.segment, 'archive');
    assert.ok(r !== null);
    assert.equal(r.chunks, 3);
    assert.ok(r.bytesAfter < 32 + 3 * 512, `archived segment is ${r.bytesAfter} bytes`);
    const read = await store.readChunks([0, 1, 3]);
    assert.deepEqual(read.failed.map((f) => [f.chunkId, f.reason]), [[0, 'archived'], [1, 'archived']]);
    assert.ok(read.chunks.has(3));
    const layers = await store.readLayers(new Map([[2, [1]], [6, [1]]]));
    assert.deepEqual(layers.failed.map((f) => [f.chunkId, f.reason]), [[2, 'archived']]);
    layers.release();
    assert.deepEqual([...store.archivedIds([0, 1, 2, 3, 8])].sort(), [0, 1, 2]);
    const stills = await store.readStills([0, 1, 2]);
    assert.deepEqual(stills.failed, []);
    for (const id of [0, 1, 2]) assert.deepEqual(new Uint8Array(stills.stills.get(id)!), stillFor(id));
    const s = store.stats();
    assert.ok(s.bytesByDtype.archive > 0 && s.bytesByDtype.kivi4 > 0 && s.bytesByDtype.float32 > 0);
    assert.deepEqual(store.tierSpans().map((x) => [x.dtype, x.firstChunkId, x.lastChunkId]), [
      ['archive', 0, 2],
      ['kivi4', 3, 5],
      ['float32', 6, 8],
    ]);
    // The kivi4 segment can be archived too, and an archived segment is never demoted back to kivi4.
    assert.ok((await store.demoteSegment(store.stats().segments.find((x) => x.firstChunkId === 3)!.segment, 'archive')) !== null);
    assert.equal(store.stats().bytesByDtype.kivi4, 0);
    const v = await store.verify();
    assert.deepEqual(v.damaged, []);
    assert.deepEqual(v.unreferencedSegments, []);
    // Representatives (the index) stay with an archived chunk.
    assert.equal(store.readMetas([1])[0]!.representatives.length, G.numLayers);
  } finally {
    await store.dispose();
  }
  const again = ChunkStore.open({ dir, recoveryCheck: 'full' });
  try {
    assert.deepEqual(again.recovery.droppedChunks, []);
    assert.deepEqual(new Uint8Array((await again.readStills([5])).stills.get(5)!), stillFor(5));
  } finally {
    await again.dispose();
  }
});

test('chunks stored without a still keep their KV: their segment is not archived (kivi4 still applies), a mixed one archives only the chunks with stills', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'float32', segmentBytes: SEGMENT_BYTES, cacheBytes: 0 });
  try {
    // Segment 1: no stills; segment 2: chunk 4 without, 3 and 5 with.
    for (let id = 0; id < 7; id++) await store.append(id < 3 || id === 4 ? makeChunk(id, G, TIER_TOKENS, { scale: 2 }) : withStill(id));
    const [first, second] = store.stats().segments;
    assert.equal(await store.demoteSegment(first!.segment, 'archive'), null);
    assert.equal(store.stats().bytesByDtype.archive, 0);
    assert.ok((await store.demoteSegment(first!.segment)) !== null, 'kivi4 still applies');
    assert.ok((await store.demoteSegment(second!.segment, 'archive')) !== null);
    assert.deepEqual([...store.archivedIds([0, 1, 2, 3, 4, 5])].sort(), [3, 5]);
    assertKvBitExact((await store.readChunks([4])).chunks.get(4), 4);
    assert.deepEqual((await store.readStills([4])).failed.map((f) => f.reason), ['not-found']);
    assert.deepEqual((await store.verify()).damaged, []);
  } finally {
    await store.dispose();
  }
});

test('append({ archive: true }) imports a chunk straight into the archive; it needs its still', async (t) => {
  const dir = tempDir(t);
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'float32', cacheBytes: 0 });
  try {
    await assert.rejects(store.append(makeChunk(0, G, TIER_TOKENS), { archive: true }), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /needs its still/.test(e.message));
    // KV arrays are not needed (nor checked) for an archived import.
    await store.append({ ...withStill(0), keys: [], values: [] }, { archive: true });
    await store.append(withStill(1));
    assert.deepEqual([...store.archivedIds([0, 1])], [0]);
    assert.deepEqual(new Uint8Array((await store.readStills([0])).stills.get(0)!), stillFor(0));
    assert.deepEqual((await store.readChunks([0])).failed.map((f) => f.reason), ['archived']);
    assert.deepEqual((await store.verify()).damaged, []);
  } finally {
    await store.dispose();
  }
});

test('budget policy: oldest KV archived before anything is deleted (the newest keepFullSec never); kivi4 once KV is within kvShare; the budget holds', async (t) => {
  const dir = tempDir(t);
  const budget = 32 * SEGMENT_BYTES;
  const store = ChunkStore.open({
    dir,
    geometry: G,
    dtype: 'float32',
    segmentBytes: SEGMENT_BYTES,
    cacheBytes: 0,
    retention: { budgetBytes: budget, keepFullSec: 12, kvShare: 0.5 },
  });
  let peak = 0;
  // Each chunk is 2 s of stream, appended at a stream's pace (each waits for the background demotion).
  const appendUpTo = async (n: number, from: number) => {
    for (let id = from; id < n; id++) {
      await store.append({ ...withStill(id), tStart: 2 * id, tEnd: 2 * id + 1 });
      await store.demotionIdle();
      peak = Math.max(peak, store.diskBytes());
    }
  };
  try {
    await appendUpTo(220, 0);
    let s = store.stats();
    assert.ok(peak <= budget + SEGMENT_BYTES, `disk peaked at ${peak} of a ${budget} budget`);
    // 220 float32 chunks are 2.3x the budget: the oldest went to the archive, nothing was deleted.
    assert.equal(s.chunkCount, 220);
    assert.ok(s.bytesByDtype.archive > 0);
    assert.equal(s.bytesByDtype.kivi4, 0, 'while KV takes more than kvShare, archiving comes first');
    let spans = store.tierSpans();
    assert.deepEqual(spans.map((x) => x.dtype), ['archive', 'float32']);
    assert.equal(spans[0]!.firstChunkId, 0);
    assert.ok(spans[1]!.tEnd - spans[1]!.tStart >= 12);
    // KV within kvShare: the oldest full segments go to kivi4 (after the archive, before the newest).
    store.setRetention({ budgetBytes: budget, keepFullSec: 12, kvShare: 0.97 });
    await appendUpTo(320, 220);
    s = store.stats();
    assert.ok(peak <= budget + SEGMENT_BYTES, `disk peaked at ${peak} of a ${budget} budget`);
    spans = store.tierSpans();
    assert.deepEqual(spans.map((x) => x.dtype), ['archive', 'kivi4', 'float32']);
    assert.ok(spans[2]!.tEnd - spans[2]!.tStart >= 12);
  } finally {
    await store.dispose();
  }
});

test('retention.archive false keeps the KV tiers only, then deletes; kvShare out of range is refused with the limit named', async (t) => {
  const dir = tempDir(t);
  assert.throws(() => ChunkStore.open({ dir, geometry: G, segmentBytes: SEGMENT_BYTES, retention: { budgetBytes: 1 << 24, kvShare: 1.5 } }), /kvShare must be a number from 0 to 1, got 1\.5/);
  const budget = 8 * SEGMENT_BYTES;
  const store = ChunkStore.open({ dir, geometry: G, dtype: 'float32', segmentBytes: SEGMENT_BYTES, cacheBytes: 0, retention: { budgetBytes: budget, keepFullSec: 12, archive: false } });
  try {
    for (let id = 0; id < 200; id++) {
      await store.append({ ...withStill(id), tStart: 2 * id, tEnd: 2 * id + 1 });
      await store.demotionIdle();
    }
    const s = store.stats();
    assert.equal(s.bytesByDtype.archive, 0);
    assert.ok(s.bytesByDtype.kivi4 > 0);
    assert.ok(s.firstChunkId! > 0, 'oldest deleted instead');
  } finally {
    await store.dispose();
  }
});


for (const step of ['writing', 'synced', 'committed'] as DemotionStep[]) {
  test(`SIGKILL while archiving at '${step}': every committed chunk is intact after reopen, KV or still; no stray segment`, async (t) => {
    const dir = tempDir(t);
    const { signal, out, err } = await runDemoteStepChild(dir, step, 'archive');
    assert.equal(signal, 'SIGKILL', `child must die by SIGKILL (stdout ${out}, stderr ${err})`);
    const store = ChunkStore.open({ dir, recoveryCheck: 'full' });
    try {
      assert.deepEqual(store.recovery.droppedChunks, [], 'nothing committed is lost');
      const v = await store.verify();
      assert.equal(v.checkedChunks, TIER_CHUNKS);
      assert.deepEqual(v.damaged, []);
      assert.deepEqual(v.unreferencedSegments, []);
      const files = fs.readdirSync(dir).filter((f) => f.endsWith('.kvseg'));
      assert.equal(files.length, store.stats().segments.filter((s) => s.chunkCount > 0).length, `only referenced segment files: ${files.join(', ')}`);
      const archived = store.archivedIds([...Array(TIER_CHUNKS).keys()]);
      assert.equal(archived.size > 0, step === 'committed', `archived after '${step}': ${[...archived].join(', ')}`);
      const got = await store.readChunks([...Array(TIER_CHUNKS).keys()]);
      for (let id = 0; id < TIER_CHUNKS; id++) {
        if (archived.has(id)) assert.deepEqual(new Uint8Array((await store.readStills([id])).stills.get(id)!), stillFor(id));
        else assertKvBitExact(got.chunks.get(id), id);
      }
    } finally {
      await store.dispose();
    }
  });
}
