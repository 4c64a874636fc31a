/**
 * The memory horizon with real parts (probe-needle model, real store files): retention deleting the
 * oldest segments moves `from` and records `forgottenBefore` (kept across a reopen); an outage shows
 * inside the horizon; a gated frame's span is the horizon's `to`. A question about a time memory
 * no longer holds (before the horizon, inside an outage, after the newest frame) is answered with a
 * statement and no decoder call (the decoder's own step count); a partly held range is answered
 * by the model over what is kept, and the answer says which part was missing.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UnnumberedChunk } from '../../memory/frameChunk.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import { memoryCoverage, type MemoryHorizon, streamClock } from '../../src/engine/memoryHorizon.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts, type NeedleStreamParts } from '../helpers/needleStream.js';

const RED = 'What color was the square on the red screen?';

describe('memory horizon', () => {
  let parts: NeedleStreamParts;
  before(async () => {
    parts = await loadNeedleStreamParts('vigil-horizon-');
  });
  after(() => disposeNeedleStreamParts(parts));

  it('retention forgets the oldest segments: from moves, forgottenBefore is recorded and survives a reopen; a forgotten time is stated without a model call', async () => {
    const dir = path.join(parts.scratch, 'retention');
    // ~7 probe-needle chunks (8,776-byte records) per 64 KiB segment; 128 KiB of segments kept.
    const options = { dir, sinkFrames: 1, windowFrames: 2, gate: 'off' as const, segmentBytes: 64 * 1024, retention: { maxBytes: 128 * 1024 } };
    let session = await StreamSession.open(parts.model, options);
    try {
      for (let t = 0; t < 60; t++) await session.addFrame(t === 55 ? parts.needle : parts.haystack, t);
      await session.flush();
      const stats = session.store.stats();
      const h = session.horizon();
      assert.ok(stats.firstChunkId !== null && stats.firstChunkId > 0, `retention removed the oldest chunks (first kept id ${stats.firstChunkId})`);
      assert.equal(h.from, stats.tStart, 'from: the oldest kept chunk');
      assert.equal(h.to, 59);
      assert.equal(h.forgottenChunks, stats.firstChunkId, 'every chunk below the first kept id was forgotten (ids count from 0, one a second)');
      assert.equal(h.forgottenBefore, stats.firstChunkId - 1, 'forgottenBefore: the newest deleted chunk (t = id here)');
      assert.deepEqual(h.spans, [{ tier: 'kv-float32', from: h.from, to: 59, chunks: stats.chunkCount }]);
      assert.deepEqual(h.gaps, []);

      // A question about 0:00-0:05, long forgotten: the statement, no decoder call.
      const stepsBefore = parts.model.decoder.stepsRun;
      const forgotten = await session.ask({ question: RED, maxNewTokens: 4, timeRange: { start: 0, end: 5 } });
      assert.equal(parts.model.decoder.stepsRun, stepsBefore, 'no decoder call for a forgotten time');
      assert.equal(forgotten.text, `I no longer have memory of 0:00–0:05; my memory starts at ${streamClock(h.from!)}.`);
      assert.equal(forgotten.coverage?.outOfMemory, true);
      assert.deepEqual(forgotten.coverage?.missing, [{ from: 0, to: 5, reason: 'before-horizon', detail: null }]);
      assert.deepEqual(forgotten.evidence, []);
      assert.deepEqual(forgotten.tokenIds, []);
      assert.deepEqual(forgotten.horizon, h);

      // Partly forgotten (0:00-0:58): answered by the model over what is kept, saying what was not.
      const partial = await session.ask({ question: RED, maxNewTokens: 4, retrieve: 4, timeRange: { start: 0, end: 58 } });
      assert.ok(parts.model.decoder.stepsRun > stepsBefore, 'the model answered');
      assert.equal(partial.text.trim(), 'green');
      assert.equal(partial.coverage?.outOfMemory, false);
      assert.deepEqual(partial.coverage?.missing, [{ from: 0, to: h.from, reason: 'before-horizon', detail: null }]);
      assert.equal(partial.coverage?.note, `Not in memory: 0:00–${streamClock(h.from!)} (forgotten: my memory starts at ${streamClock(h.from!)}); answered from the rest of 0:00–0:58.`);
      // No range: answered over the whole horizon, which the answer carries.
      const whole = await session.ask({ question: RED, maxNewTokens: 4, retrieve: 4 });
      assert.equal(whole.coverage, null);
      assert.equal(whole.horizon.from, h.from);

      await session.dispose();
      session = await StreamSession.open(parts.model, options);
      assert.deepEqual(session.horizon(), h, 'the same horizon after a reopen (forgotten is on disk)');
    } finally {
      await session.dispose();
    }
  });

  it('the disk budget forgets too', async () => {
    const dir = path.join(parts.scratch, 'budget');
    const session = await StreamSession.open(parts.model, { dir, sinkFrames: 1, windowFrames: 2, gate: 'off', segmentBytes: 64 * 1024, retention: { budgetBytes: 400_000 } });
    try {
      for (let t = 0; t < 60; t++) await session.addEncodedChunk(encodedAt(session, t));
      await session.flush();
      const h = session.horizon();
      const stats = session.store.stats();
      assert.ok(h.forgottenChunks > 0 && h.forgottenBefore !== null, JSON.stringify(h));
      assert.ok(h.forgottenBefore < h.from!, `forgotten before ${h.forgottenBefore}, memory from ${h.from}`);
      assert.equal(h.from, stats.tStart);
      assert.equal(h.forgottenChunks, stats.firstChunkId);
    } finally {
      await session.dispose();
    }
  });

  it('a demoted (kivi4) stretch is its own span: kv-4bit, then kv-float32, in time order', async () => {
    const dir = path.join(parts.scratch, 'tiers');
    const session = await StreamSession.open(parts.model, { dir, sinkFrames: 1, windowFrames: 2, gate: 'off', segmentBytes: 64 * 1024 });
    try {
      for (let t = 0; t < 30; t++) await session.addEncodedChunk(encodedAt(session, t));
      await session.flush();
      const before = session.store.stats().segments;
      assert.ok(before.length >= 3, `${before.length} segments`);
      const oldest = before[0]!;
      const demoted = await session.store.demoteSegment(oldest.segment);
      assert.ok(demoted !== null && demoted.toSegment > before.at(-1)!.segment, 'rewritten into a new, higher segment id');
      const h = session.horizon();
      assert.deepEqual(h.spans, [
        { tier: 'kv-4bit', from: 0, to: oldest.tEnd, chunks: oldest.chunkCount },
        { tier: 'kv-float32', from: oldest.tEnd! + 1, to: 29, chunks: 30 - oldest.chunkCount },
      ]);
      assert.deepEqual([h.from, h.to, h.forgottenBefore], [0, 29, null], 'demotion forgets nothing');
    } finally {
      await session.dispose();
    }
  });

  it('an outage inside the horizon, a gated span as its end; questions inside the outage or after the newest frame get statements', async () => {
    const dir = path.join(parts.scratch, 'gaps');
    const session = await StreamSession.open(parts.model, { dir, sinkFrames: 1, windowFrames: 2, gate: 'off' });
    try {
      for (let t = 0; t < 10; t++) await session.addFrame(t === 3 ? parts.needle : parts.haystack, t);
      await session.flush();
      session.store.recordGap({ tStart: 9, tEnd: 20, reason: 'camera unreachable' });
      for (let t = 20; t < 30; t++) await session.addFrame(parts.haystack, t);
      // Gated frames 30..35: the chunk at 29 now stands for 29-35.
      for (let t = 30; t <= 35; t++) await session.skipFrame(t);
      const h: MemoryHorizon = session.horizon();
      assert.equal(h.from, 0);
      assert.equal(h.to, 35, "to: the newest chunk's extended tEnd");
      assert.deepEqual(h.gaps, [{ from: 9, to: 20, reason: 'camera unreachable' }]);
      assert.equal(h.gapsTruncated, false);
      assert.equal(h.forgottenBefore, null);
      assert.equal(h.forgottenChunks, 0);
      assert.equal(h.spans.length, 1);
      assert.deepEqual({ ...h.spans[0], chunks: undefined }, { tier: 'kv-float32', from: 0, to: 35, chunks: undefined });
      assert.equal(h.spans[0]!.chunks, 20);

      const steps = parts.model.decoder.stepsRun;
      const inOutage = await session.ask({ question: RED, maxNewTokens: 4, timeRange: { start: 12, end: 18 } });
      assert.equal(inOutage.text, 'I have no memory of 0:12–0:18: it was not recorded (camera unreachable).');
      assert.deepEqual(inOutage.coverage?.missing, [{ from: 12, to: 18, reason: 'gap', detail: 'camera unreachable' }]);
      const future = await session.ask({ question: RED, maxNewTokens: 4, timeRange: { start: 40, end: 50 } });
      assert.equal(future.text, 'I have no memory of 0:40–0:50 yet; my memory ends at 0:35.');
      assert.equal(parts.model.decoder.stepsRun, steps, 'no decoder call for either');
      // The outage's ends are frames memory holds: a range over the whole outage is partly held.
      const across = await session.ask({ question: RED, maxNewTokens: 4, retrieve: 4, timeRange: { start: 0, end: 25 } });
      assert.ok(parts.model.decoder.stepsRun > steps);
      assert.equal(across.text.trim(), 'green');
      assert.deepEqual(across.coverage?.missing, [{ from: 9, to: 20, reason: 'gap', detail: 'camera unreachable' }]);
      assert.match(across.coverage!.note!, /^Not in memory: 0:09–0:20 \(not recorded: camera unreachable\)/);
      // Only a start: the range runs to now, so nothing after the newest frame counts as missing.
      assert.deepEqual(memoryCoverage(h, { start: 25, end: Number.MAX_SAFE_INTEGER }, []).missing, []);

      await session.flush();
      assert.equal(session.store.stats().tEnd, 35, 'the extended span is in the store, which the horizon reads after a reopen');
    } finally {
      await session.dispose();
    }
  });
});

/** A synthetic (model-free) chunk at stream time t of the session's geometry: the budget test only needs bytes on disk. */
function encodedAt(session: StreamSession, t: number): UnnumberedChunk {
  const { numLayers, numKvHeads, headDim } = session.store.geometry;
  const tokenCount = 17;
  const tensor = (v: number) => new Float32Array(numKvHeads * tokenCount * headDim).fill(v);
  return {
    tStart: t,
    tEnd: t,
    wallTime: Date.now(),
    tokenCount,
    numLayers,
    numKvHeads,
    headDim,
    keys: Array.from({ length: numLayers }, () => tensor(0.01 * (t % 7))),
    values: Array.from({ length: numLayers }, () => tensor(0.5)),
    representatives: Array.from({ length: numLayers }, () => new Float32Array(numKvHeads * headDim).fill(0.1 + t)),
  };
}
