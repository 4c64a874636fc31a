/**
 * The horizon's arithmetic on hand-made store stats (the end-to-end tests are memoryHorizon.test.ts
 * and test/api/horizon.test.ts): tiers from each segment's dtypes in time order (a demoted segment
 * has a higher id for older chunks), the uncommitted tail, the legacy trace of retention (first id
 * above 0, no record), the capped gap list, and coverage over touching outages.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SegmentStats, StoreStats, StreamGap } from '../../memory/store/types.js';
import { MAX_HORIZON_GAPS, memoryCoverage, memoryHorizon } from '../../src/engine/memoryHorizon.js';

function stats(segments: Array<Partial<SegmentStats> & Pick<SegmentStats, 'segment' | 'tStart' | 'tEnd' | 'chunkCount' | 'bytesByDtype'>>, extra: Partial<StoreStats> = {}): StoreStats {
  const full = segments.map((s) => ({ fileBytes: 0, firstChunkId: null, lastChunkId: null, ...s }));
  return {
    geometry: { numLayers: 2, numKvHeads: 2, headDim: 16 },
    dtype: 'float32',
    chunkCount: full.reduce((n, s) => n + s.chunkCount, 0),
    firstChunkId: 0,
    lastChunkId: 0,
    bytesByDtype: { float32: 0, float16: 0, int8: 0 } as StoreStats['bytesByDtype'],
    segmentBytes: 0,
    diskBytes: 0,
    budgetBytes: null,
    tStart: null,
    tEnd: null,
    wallStart: null,
    wallEnd: null,
    segments: full,
    forgotten: null,
    pendingChunks: 0,
    cache: { entries: 0, bytes: 0, budgetBytes: 0, hits: 0, misses: 0 },
    io: { readCalls: 0, bytesRead: 0 },
    ...extra,
  };
}

const noGaps = () => [];

test('spans follow time, not segment ids, and merge neighbours of one tier; a mixed segment counts as its lowest tier', () => {
  const h = memoryHorizon(
    stats([
      { segment: 7, tStart: 100, tEnd: 199, chunkCount: 100, bytesByDtype: { float32: 1 } },
      { segment: 8, tStart: 200, tEnd: 299, chunkCount: 100, bytesByDtype: { float32: 1 } },
      // Demoted: rewritten later (higher ids) for the oldest chunks.
      { segment: 9, tStart: 0, tEnd: 49, chunkCount: 50, bytesByDtype: { int8: 1 } },
      { segment: 10, tStart: 50, tEnd: 99, chunkCount: 50, bytesByDtype: { int8: 1, float32: 1 } },
    ]),
    noGaps,
  );
  assert.deepEqual(h.spans, [
    { tier: 'kv-int8', from: 0, to: 99, chunks: 100 },
    { tier: 'kv-float32', from: 100, to: 299, chunks: 200 },
  ]);
  assert.equal(h.from, 0);
  assert.equal(h.to, 299);
});

test('the uncommitted tail extends the newest span, or starts the memory when nothing is stored yet', () => {
  const stored = stats([{ segment: 1, tStart: 0, tEnd: 9, chunkCount: 10, bytesByDtype: { float32: 1 } }]);
  const h = memoryHorizon(stored, noGaps, { from: 10, to: 14, chunks: 2, tier: 'kv-float32' });
  assert.deepEqual(h.spans, [{ tier: 'kv-float32', from: 0, to: 14, chunks: 12 }]);
  // A gated frame only: no new chunk, the span reaches further.
  assert.equal(memoryHorizon(stored, noGaps, { from: null, to: 20, chunks: 0, tier: 'kv-float32' }).to, 20);
  const empty = memoryHorizon(stats([]), noGaps, { from: 3, to: 4, chunks: 1, tier: 'kv-float16' });
  assert.deepEqual(empty.spans, [{ tier: 'kv-float16', from: 3, to: 4, chunks: 1 }]);
  const none = memoryHorizon(stats([]), noGaps);
  assert.deepEqual([none.from, none.to, none.spans], [null, null, []]);
});

test("forgotten: the store's record, else the trace a first id above 0 leaves", () => {
  const seg = [{ segment: 3, tStart: 40, tEnd: 59, chunkCount: 20, bytesByDtype: { float32: 1 } }];
  const recorded = memoryHorizon(stats(seg, { firstChunkId: 40, forgotten: { tEnd: 39, chunks: 40 } }), noGaps);
  assert.deepEqual([recorded.forgottenBefore, recorded.forgottenChunks], [39, 40]);
  const legacy = memoryHorizon(stats(seg, { firstChunkId: 40, forgotten: null }), noGaps);
  assert.deepEqual([legacy.forgottenBefore, legacy.forgottenChunks], [40, 40]);
  const never = memoryHorizon(stats(seg, { firstChunkId: 0 }), noGaps);
  assert.deepEqual([never.forgottenBefore, never.forgottenChunks], [null, 0]);
});

test('the gap list is capped and says so', () => {
  const many: StreamGap[] = Array.from({ length: MAX_HORIZON_GAPS + 5 }, (_, i) => ({ tStart: i + 0.2, tEnd: i + 0.8, reason: `g${i}` }));
  let asked = -1;
  const h = memoryHorizon(stats([{ segment: 1, tStart: 0, tEnd: 1000, chunkCount: 1001, bytesByDtype: { float32: 1 } }]), (_from, _to, limit) => {
    asked = limit;
    return many.slice(0, limit);
  });
  assert.equal(asked, MAX_HORIZON_GAPS + 1, 'one more than listed is asked for, no more');
  assert.equal(h.gaps.length, MAX_HORIZON_GAPS);
  assert.equal(h.gapsTruncated, true);
});

test('coverage: touching outages together hide a range; their shared end is a held frame only when it is one', () => {
  const h = memoryHorizon(stats([{ segment: 1, tStart: 0, tEnd: 100, chunkCount: 101, bytesByDtype: { float32: 1 } }]), noGaps);
  const gaps: StreamGap[] = [
    { tStart: 10, tEnd: 20, reason: 'a' },
    { tStart: 15, tEnd: 30, reason: 'b' },
  ];
  const inside = memoryCoverage(h, { start: 12, end: 28 }, gaps);
  assert.equal(inside.outOfMemory, true);
  assert.deepEqual(inside.missing.map((m) => [m.from, m.to, m.reason]), [[12, 20, 'gap'], [15, 28, 'gap']]);
  assert.equal(inside.note, 'I have no memory of 0:12–0:28: 0:12–0:20 (not recorded: a); 0:15–0:28 (not recorded: b).');
  // The frame at 20 ends outage a, but b covers it: still nothing held. At 30 a frame is held.
  assert.equal(memoryCoverage(h, { start: 12, end: 30 }, gaps).outOfMemory, false);
  assert.equal(memoryCoverage(h, { start: 10, end: 12 }, gaps).outOfMemory, false, 'the frame at 10 is held');
  assert.equal(memoryCoverage(h, { start: 40, end: 50 }, gaps).note, null, 'all held: no note');
  const before = memoryCoverage({ ...h, from: 5 }, { start: 0, end: 4 }, []);
  assert.equal(before.note, 'I have no memory of 0:00–0:04; my memory starts at 0:05.', 'nothing forgotten: the stream began later');
  assert.equal(memoryCoverage({ ...h, from: 3700, to: 7300 }, { start: 0, end: 60 }, []).note, 'I have no memory of 0:00–1:00; my memory starts at 1:01:40.');
  // Only a start (the end is "now"): nothing after the newest frame is missing, unless it all is.
  const open = Number.MAX_SAFE_INTEGER;
  assert.deepEqual(memoryCoverage(h, { start: 50, end: open }, []).missing, []);
  const later = memoryCoverage(h, { start: 120, end: open }, []);
  assert.equal(later.outOfMemory, true);
  assert.equal(later.note, 'I have no memory of 2:00–now yet; my memory ends at 1:40.');
  const empty = memoryHorizon(stats([]), noGaps);
  assert.equal(memoryCoverage(empty, { start: 0, end: open }, []).note, 'I have no memory of 0:00–now: nothing has been recorded yet.');
});
