/**
 * Cutting a summary's range into events (src/engine/summaries): the calibrated change threshold,
 * segmentEvents over synthetic chunk sequences (changes, a flicker, outages, gate spans, the
 * maxEvents cap), and scanRange over a real chunk store (the range found by binary search over ids
 * with a hole, distances of consecutive representatives, sampling past maxChunks, bounded reads).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkStore } from '../../memory/store/index.js';
import { type ChunkRows, representativeDistance, scanRange, type SceneUnit } from '../../src/engine/summaries/rangeScan.js';
import { changeThreshold, MAX_CHANGE_THRESHOLD, MIN_CHANGE_DISTANCE, segmentEvents, type SegmentOptions } from '../../src/engine/summaries/segmentEvents.js';
import { VigilError } from '../../common/errors.js';
import { FrameGate, gatePhaseSec } from '../../src/engine/frameGate.js';
import { memoryHorizon } from '../../src/engine/memoryHorizon.js';
import { summarizeRange, type SummarySource } from '../../src/engine/summaries/summarizeRange.js';
import type { SummaryPlan } from '../../src/engine/summaries/types.js';
import { makeChunk, tempDir, TINY } from '../memory/helpers.js';

/** Units one second apart (tStart = tEnd = i), with the given distances from the previous unit (and, where `back` says, from the one before it). */
function units(distances: number[], back: Record<number, number> = {}): SceneUnit[] {
  return distances.map((distance, i) => ({ chunkId: i, tStart: i, tEnd: i, distance: i === 0 ? 0 : distance, distance2: back[i] ?? Infinity, lastChunkId: i }));
}

const base = (over: Partial<SegmentOptions> = {}): SegmentOptions => ({ from: 0, to: 1000, maxEvents: 8, minEventSec: 2, gate: 'off', gaps: [], ...over });
const starts = (s: { spans: Array<{ from: number }> }) => s.spans.map((x) => x.from);

describe('summary segmentation', () => {
  it('the change threshold is calibrated on the range: a steady range takes the floor, a noisy one median + 6 robust sigmas, all changes the ceiling', () => {
    assert.equal(changeThreshold([]), MIN_CHANGE_DISTANCE);
    assert.equal(changeThreshold([0, 0, 0, 1, 0, 0]), MIN_CHANGE_DISTANCE);
    // Every chunk a new scene (gated chunks of distinct scenes): no noise to calibrate on.
    assert.equal(changeThreshold([1, 1, 1, 1, 1, 1]), MAX_CHANGE_THRESHOLD);
    // Median 0.2, MAD 0.02: 0.2 + 6 * 1.4826 * 0.02.
    const noisy = [0.18, 0.2, 0.22, 0.2, 0.18, 0.22, 0.2, 0.9];
    assert.ok(Math.abs(changeThreshold(noisy) - (0.2 + 6 * 1.4826 * 0.02)) < 1e-9, String(changeThreshold(noisy)));
  });

  it('splits at changes, drops a one-frame blip, merges a short scene, keeps outages, caps by removing the weakest boundaries', () => {
    // Scenes at 0, 10 (strong), 20 (weak), with a one-frame blip at 15 (16 looks like 14 again).
    const d = Array.from({ length: 30 }, () => 0.01);
    d[10] = 1;
    d[15] = 0.8;
    d[16] = 0.8;
    d[20] = 0.3;
    const cut = segmentEvents(units(d, { 16: 0.01 }), base());
    assert.equal(cut.changes, 4);
    assert.deepEqual(starts(cut), [0, 10, 20]);
    // Not a blip (16 is a third picture): the one-frame scene joins the side with the weaker boundary.
    d[16] = 0.9;
    assert.deepEqual(starts(segmentEvents(units(d), base())), [0, 10, 16, 20]);
    d[16] = 0.8;
    assert.deepEqual(
      cut.spans.map((s) => [s.from, s.to, s.startedBy]),
      [
        [0, 9, 'range-start'],
        [10, 19, 'change'],
        [20, 29, 'change'],
      ],
    );
    // The cap removes the weakest boundary (20) first.
    assert.deepEqual(starts(segmentEvents(units(d, { 16: 0.01 }), base({ maxEvents: 2 }))), [0, 10]);
    assert.deepEqual(starts(segmentEvents(units(d, { 16: 0.01 }), base({ maxEvents: 1 }))), [0]);
    // An outage between 24 and 25 splits a steady scene; the cap removes it last.
    const withGap = segmentEvents(units(d, { 16: 0.01 }), base({ gaps: [{ from: 24, to: 25 }] }));
    assert.deepEqual(
      withGap.spans.map((s) => [s.from, s.startedBy]),
      [
        [0, 'range-start'],
        [10, 'change'],
        [20, 'change'],
        [25, 'gap'],
      ],
    );
    assert.deepEqual(starts(segmentEvents(units(d, { 16: 0.01 }), base({ gaps: [{ from: 24, to: 25 }], maxEvents: 2 }))), [0, 25]);
    // Spans are clipped to the range.
    assert.deepEqual(
      segmentEvents(units(d, { 16: 0.01 }), base({ from: 3.5, to: 27.5 })).spans.map((s) => [s.from, s.to]),
      [
        [3.5, 9],
        [10, 19],
        [20, 27.5],
      ],
    );
  });

  it('with the gate on: a change after a held chunk starts an event, a max-hold re-encode does not, a held scene is no blip', () => {
    // Unit 0 holds 0..4 (gated frames), unit 5 encoded 5 s later: the picture changed (the keys did not move).
    // Unit 5 holds 5..14, unit 15 comes 10 s later: maxHoldSec 10 re-encoded an unchanged scene.
    const u: SceneUnit[] = [
      { chunkId: 0, tStart: 0, tEnd: 4, distance: 0, distance2: Infinity, lastChunkId: 0 },
      { chunkId: 1, tStart: 5, tEnd: 14, distance: 0.001, distance2: Infinity, lastChunkId: 1 },
      { chunkId: 2, tStart: 15, tEnd: 20, distance: 0.001, distance2: 0.001, lastChunkId: 2 },
    ];
    const gated = segmentEvents(u, base({ gate: { threshold: 0.01, maxHoldSec: 10 } }));
    assert.deepEqual(
      gated.spans.map((s) => [s.from, s.to, s.startedBy]),
      [
        [0, 4, 'range-start'],
        [5, 20, 'gate'],
      ],
    );
    // The same chunks without the gate (or sampled: gate null): nothing moved, one event.
    assert.equal(segmentEvents(u, base({ gate: 'off' })).spans.length, 1);
    assert.equal(segmentEvents(u, base({ gate: null })).spans.length, 1);
    // A gated chunk holding a scene for 3 s between two chunks of the same other scene is a scene, not a blip.
    const needle: SceneUnit[] = [
      { chunkId: 0, tStart: 0, tEnd: 6, distance: 0, distance2: Infinity, lastChunkId: 0 },
      { chunkId: 1, tStart: 7, tEnd: 9, distance: 1, distance2: Infinity, lastChunkId: 1 },
      { chunkId: 2, tStart: 10, tEnd: 14, distance: 1, distance2: 0, lastChunkId: 2 },
    ];
    assert.deepEqual(
      segmentEvents(needle, base({ gate: { threshold: 0.01, maxHoldSec: 60 } })).spans.map((x) => [x.from, x.to, x.startedBy]),
      [
        [0, 6, 'range-start'],
        [7, 9, 'change'],
        [10, 14, 'change'],
      ],
    );
  });

  it('with the gate on: the shortened first hold after a stream start or an outage is a refresh, a change inside it a gate change', () => {
    // maxHoldSec 10, phase 4: the refresh after a first encode comes 6 s after it, every later one 10 s after the previous encode.
    const gate = { threshold: 0.01, maxHoldSec: 10 };
    const held = (tStart: number, tEnd: number): SceneUnit => ({ chunkId: tStart, tStart, tEnd, distance: 0.001, distance2: 0.001, lastChunkId: tStart });
    const phased = (over: Partial<SegmentOptions> = {}) => base({ gate, gatePhaseSec: 4, firstEncodeTimes: [0], gaps: [{ from: 30, to: 40 }], ...over });
    const show = (u: SceneUnit[], options: SegmentOptions) => segmentEvents(u, options).spans.map((s) => [s.from, s.startedBy]);
    // A static scene: the first refresh at 6, a normal one at 16; then an encode 6 s after that
    // normal refresh is a change. After the outage: the first refresh at 46, a normal one at 56.
    const still = [held(0, 5), held(6, 15), held(16, 21), held(22, 30), held(40, 45), held(46, 55), held(56, 60)];
    assert.deepEqual(show(still, phased()), [
      [0, 'range-start'],
      [22, 'gate'],
      [40, 'gap'],
    ]);
    // Changes inside the shortened holds (5 s after the stream's first chunk and after the outage's first) are gate changes.
    const changed = [held(0, 4), held(5, 15), held(16, 30), held(40, 44), held(45, 55), held(56, 60)];
    assert.deepEqual(show(changed, phased()), [
      [0, 'range-start'],
      [5, 'gate'],
      [40, 'gap'],
      [45, 'gate'],
    ]);
    // The first unit of the range after an outage before it (known by its end time), the range starting inside it.
    assert.deepEqual(show(still.slice(4), phased({ from: 42, firstEncodeTimes: [40], gaps: [] })), [[42, 'range-start']]);
    assert.deepEqual(show(changed.slice(3), phased({ from: 42, firstEncodeTimes: [40], gaps: [] })), [
      [42, 'range-start'],
      [45, 'gate'],
    ]);
    // Not a first encode (retention deleted the stream's first chunk): the refresh 6 s after it reads as a change.
    assert.deepEqual(show(still.slice(0, 3), phased({ firstEncodeTimes: [] })), [
      [0, 'range-start'],
      [6, 'gate'],
    ]);
  });

  it('summarizeRange over a real store fed by a real FrameGate (stream id phase, an outage): a static scene is one event per outage side, a change after a first frame starts one', async (t) => {
    const streamId = 'lobby';
    const gate = { threshold: 0.01, maxHoldSec: 10 };
    const phase = gatePhaseSec(streamId, gate.maxHoldSec);
    // The phase moves the first refresh to the first frame at or after 10 - phase: 6 s at 1 frame/s.
    assert.ok(phase > 4 && phase < 5, String(phase));
    const frame = (level: number) => ({ data: new Uint8Array(16 * 16 * 3).fill(level), width: 16, height: 16 });
    const plan = async (name: string, levelAt: (t: number) => number) => {
      const store = ChunkStore.open({ dir: tempDir(t, `vigil-summary-${name}-`), geometry: TINY, fsync: 'none' });
      t.after(() => store.dispose());
      const frameGate = new FrameGate(gate, streamId);
      // Every chunk has the same keys: only the gate can tell a change (as in a scene the keys barely see).
      const representatives = makeChunk(0, TINY, 1).representatives;
      let chunkId = -1;
      for (let s = 0; s <= 60; s++) {
        if (s >= 25 && s < 30) continue;
        if (s === 30) {
          // An outage (24..30 s): recorded, and the gate forgets its reference (StreamIngest).
          store.recordGap({ tStart: 24, tEnd: 30, reason: 'test outage' });
          frameGate.forget();
        }
        if (frameGate.check(frame(levelAt(s)), s).encode) {
          await store.append({ ...makeChunk(++chunkId, TINY, 1), tStart: s, tEnd: s, representatives });
          frameGate.accept(s);
        } else store.extendChunk(chunkId, s);
      }
      await store.flush();
      const source: SummarySource = {
        streamId,
        store,
        gate,
        horizon: () => memoryHorizon(store.stats(), (from, to, limit) => store.gaps({ from, to, limit })),
      };
      let planned: SummaryPlan | undefined;
      // Only the plan is looked at: the first event's question stops the summary.
      const stop = () => Promise.reject(new VigilError('CANCELLED', 'the plan is all this test needs'));
      const events = async (from: number) => {
        await assert.rejects(summarizeRange(source, { from, to: 60 }, stop, { onPlan: (p) => (planned = p) }), /the plan is all/);
        return planned!.events.map((e) => [e.from, e.startedBy]);
      };
      return { starts: store.listChunks({ limit: 100 }).map((c) => c.tStart), events };
    };

    const still = await plan('still', () => 100);
    // The gate's own encodes: the shortened first refresh (6), normal ones (16, 26 lies in the outage), the same after it.
    assert.deepEqual(still.starts, [0, 6, 16, 30, 36, 46, 56]);
    assert.deepEqual(await still.events(0), [
      [0, 'range-start'],
      [30, 'gap'],
    ]);
    // The range starts inside the first chunk after the outage: that outage lies before the range.
    assert.deepEqual(await still.events(33), [[33, 'range-start']]);

    // The picture changes 3 s after the stream's first frame and 4 s after the outage: both inside the shortened hold.
    const changed = await plan('changed', (s) => (s < 3 ? 100 : s < 30 ? 200 : s < 34 ? 50 : 150));
    assert.deepEqual(changed.starts, [0, 3, 13, 23, 30, 34, 44, 54]);
    assert.deepEqual(await changed.events(0), [
      [0, 'range-start'],
      [3, 'gate'],
      [30, 'gap'],
      [34, 'gate'],
    ]);
    assert.deepEqual(await changed.events(31), [
      [31, 'range-start'],
      [34, 'gate'],
    ]);
  });

  it('scanRange on a real chunk store: binary search over ids (with a hole), distances, sampling, bounded reads', async (t) => {
    const dir = tempDir(t, 'vigil-summary-store-');
    const store = ChunkStore.open({ dir, geometry: TINY, fsync: 'none', segmentBytes: 64 * 1024 });
    t.after(() => store.dispose());
    const N = 600;
    // Scenes of 100 chunks (2 s each): every chunk of a scene has the scene's representative.
    const scene = (id: number) => {
      const k = Math.floor(id / 100);
      return Array.from({ length: TINY.numLayers }, (_, l) => Float32Array.from({ length: TINY.numKvHeads * TINY.headDim }, (_, i) => (i === (k + l) % 16 ? 4 : 0.5)));
    };
    for (let i = 0; i < N; i++) await store.append({ ...makeChunk(i, TINY, 1), representatives: scene(i) });
    await store.flush();
    store.dropChunks([250]);
    let reads = 0;
    const rows: ChunkRows = {
      stats: () => store.stats(),
      chunkSpan: (id) => store.chunkSpan(id),
      listChunks: (o) => {
        reads++;
        return store.listChunks(o);
      },
    };

    // 390..610 s: chunks 194 (its span 388..390 reaches the start) to 305 (610..612), without the dropped 250.
    const dense = scanRange(rows, 390, 610, 4096);
    assert.equal(dense.sampled, false);
    assert.equal(dense.units[0]!.chunkId, 194);
    assert.equal(dense.units.at(-1)!.chunkId, 305);
    assert.equal(dense.units.length, 305 - 194 + 1 - 1);
    assert.ok(!dense.units.some((u) => u.chunkId === 250));
    const changes = dense.units.filter((u) => u.distance > MIN_CHANGE_DISTANCE).map((u) => u.chunkId);
    assert.deepEqual(changes, [200, 300]);
    assert.ok(reads <= 2 * Math.ceil(Math.log2(N)) + 2, `${reads} reads: two binary searches and one page`);
    const cut = segmentEvents(dense.units, base({ from: 390, to: 610 }));
    assert.deepEqual(
      cut.spans.map((s) => [s.from, s.to]),
      [
        [390, 400],
        [400, 600],
        [600, 610],
      ],
    );

    // Sampled: at most maxChunks units over the whole history, the same scene changes found.
    reads = 0;
    const sampled = scanRange(rows, 0, 2 * N, 50);
    assert.equal(sampled.sampled, true);
    assert.ok(sampled.units.length <= 50 && sampled.units.length >= 45, `${sampled.units.length} units`);
    assert.ok(reads <= 2 * Math.ceil(Math.log2(N)) + 52, `${reads} reads`);
    assert.equal(sampled.units.at(-1)!.lastChunkId, N - 1);
    const sampledCut = segmentEvents(sampled.units, base({ from: 0, to: 2 * N, gate: null, minEventSec: 0 }));
    assert.equal(sampledCut.spans.length, 6);

    // Outside the history, and between two chunks' spans: nothing.
    assert.deepEqual(scanRange(rows, 5000, 6000, 4096).units, []);
    assert.deepEqual(scanRange(rows, 2 * N + 5, 2 * N + 9, 4096).units, []);
    assert.equal(representativeDistance(scene(0), scene(0)), 0);
    assert.equal(representativeDistance([new Float32Array(4)], [new Float32Array(4)]), 0);
  });
});
