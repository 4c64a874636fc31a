/**
 * Frame gating end to end with real parts: ffmpeg-made probe clips, the probe-needle model, the
 * chunk store and the retrieval index. A static scene with events encodes far fewer frames, every
 * event starts an encoded frame, gated frames extend the previous chunk's span in the store (across
 * a reopen) and in the index's time catalog, and the needles are still answered; gate 'off' and a
 * busy scene encode every frame. Then the corner of the write path: a chunk extended while its row
 * is still committing, and an index saved before an extension.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cachedProbeClip, parseNeedle, type ProbeClip } from '../../ingest/probeClip.js';
import { ChunkStore } from '../../memory/store/index.js';
import { streamStoreDir } from '../../src/engine/dataLayout.js';
import { ingestIntoSession } from '../../src/engine/ingestToSession.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts } from '../helpers/needleStream.js';

const CLIP_S = 60;
const NEEDLES = ['12:red:green:4', '30.5:blue:yellow:3', '47:white:magenta:4'].map(parseNeedle);
const QUESTIONS: Array<[string, string]> = [
  ['What color was the square on the red screen?', 'green'],
  ['What color was the square on the blue screen?', 'yellow'],
  ['What color was the square on the white screen?', 'magenta'],
];

/**
 * A static textured scene (the probe haystack's noise frozen: one noise frame, which ffmpeg holds
 * for 60.5 s, so the clip has 61 one-second samples) with three events.
 */
function cameraClip(): Promise<ProbeClip> {
  return cachedProbeClip({ durationS: CLIP_S, width: 320, height: 180, fps: 10, noiseFps: 1 / (CLIP_S + 0.5), needles: NEEDLES });
}

/** Frame times are pts-based floats: compare at a microsecond. */
const near = (a: number, b: number) => Math.abs(a - b) < 1e-6;

/** The standard probe haystack: its noise changes twice a second, so every 1-s sample differs. */
function busyClip(): Promise<ProbeClip> {
  return cachedProbeClip({ durationS: 30, width: 320, height: 180, fps: 10, needles: [parseNeedle('12:red:green:4')] });
}

/** The chunk the index's time catalog places at stream time t (the time filter alone decides). */
function indexedChunkAt(session: StreamSession, t: number): number[] {
  const { numLayers, numKvHeads, headDim } = session.store.geometry;
  const queries = Array.from({ length: numLayers }, () => new Float32Array(numKvHeads * headDim).fill(1));
  return session.index.retrieve(queries, 4, { timeRange: { start: t, end: t } }).union;
}

describe('frame gating', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  let haystack: PreprocessedImage;
  let needle: PreprocessedImage;
  let camera: ProbeClip;

  before(async () => {
    ({ model, scratch, haystack, needle } = await loadNeedleStreamParts('vigil-gating-'));
    camera = await cameraClip();
  });
  after(() => disposeNeedleStreamParts({ model, scratch }));

  it('a static clip with events: far fewer frames encoded, every event kept, spans in store and index, needles answered', async () => {
    const dir = path.join(scratch, 'camera');
    let session = await StreamSession.open(model, { dir, windowFrames: 4 });
    let reopened = false;
    try {
      const result = await ingestIntoSession(session, camera.clip, { fps: 1 });
      // ingest returns once the last frame is handed over; its row commits behind it.
      await session.flush();
      const sampled = result.framesEncoded + result.framesGated;
      assert.equal(sampled, CLIP_S + 1, 'every sampled frame (0..60 s) is encoded or gated');
      // The first frame, and per event its start and the return to the scene: 7 of 61.
      assert.equal(result.framesEncoded, 7, `encoded ${result.framesEncoded}`);
      assert.equal(session.stats().framesGated, sampled - 7);
      assert.equal(session.stats().storedChunks, 7);

      const check = (s: StreamSession, when: string) => {
        const times = s.memory.chunkTimes();
        for (const n of NEEDLES) {
          const first = Math.ceil(n.start);
          const chunk = times.find((c) => near(c.tStart, first));
          assert.ok(chunk, `${when}: the event at ${n.start} s starts an encoded frame (${JSON.stringify(times)})`);
          // Every frame sampled during the event is covered by the event's own chunk...
          const last = Math.ceil(n.start + n.duration) - 1;
          assert.ok(near(chunk.tEnd, last), `${when}: the event's chunk spans its frames ${first}..${last}: ${JSON.stringify(chunk)}`);
          // ...and the index's time filter finds it there.
          for (let t = first; t <= last; t++) assert.deepEqual(indexedChunkAt(s, t), [chunk.chunkId], `${when}: index at ${t} s`);
        }
        // The scene before the first event: one chunk from 0 s to 11 s.
        assert.ok(times[0]!.chunkId === 0 && near(times[0]!.tStart, 0) && near(times[0]!.tEnd, 11), JSON.stringify(times[0]));
        assert.ok(near(times.at(-1)!.tEnd, CLIP_S), `${when}: the last chunk reaches the last sampled frame: ${JSON.stringify(times.at(-1))}`);
        assert.ok(near(s.stats().lastFrameTime!, CLIP_S));
      };
      check(session, 'after ingest');
      for (const [question, truth] of QUESTIONS) {
        const answer = await session.ask({ question, retrieve: 2, maxNewTokens: 3 });
        assert.equal(answer.text.trim(), truth, question);
      }
      // Evidence carries the span: the red event's chunk covers 12..15.
      const red = await session.ask({ question: QUESTIONS[0]![0], retrieve: 2, maxNewTokens: 3 });
      assert.ok(red.evidence.some((e) => near(e.tStart, 12) && near(e.tEnd, 15)), JSON.stringify(red.evidence));

      await session.dispose();
      session = await StreamSession.open(model, { dir, windowFrames: 4 });
      reopened = true;
      check(session, 'after reopen');
      assert.equal((await session.ask({ question: QUESTIONS[2]![0], retrieve: 2, maxNewTokens: 3 })).text.trim(), 'magenta');
    } finally {
      await session.dispose();
    }
    assert.ok(reopened);
  });

  it("gate 'off' encodes every sampled frame", async () => {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'off'), windowFrames: 4, gate: 'off' });
    try {
      const result = await ingestIntoSession(session, camera.clip, { fps: 1 });
      await session.flush();
      assert.deepEqual([result.framesEncoded, result.framesGated], [CLIP_S + 1, 0]);
      assert.equal(session.stats().storedChunks, CLIP_S + 1);
      assert.ok(session.memory.chunkTimes().every((c) => c.tEnd === c.tStart));
    } finally {
      await session.dispose();
    }
  });

  it('a busy clip keeps every frame of its changing scene (only an unchanging event scene is gated)', async () => {
    const busy = await busyClip();
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'busy'), windowFrames: 4 });
    try {
      const result = await ingestIntoSession(session, busy.clip, { fps: 1 });
      await session.flush();
      const starts = session.memory.chunkTimes().map((c) => c.tStart);
      const haystackTimes = Array.from({ length: 30 }, (_, t) => t).filter((t) => t < 12 || t >= 16);
      for (const t of haystackTimes) assert.ok(starts.some((s) => near(s, t)), `the changing scene at ${t} s was encoded: ${starts.join(' ')}`);
      // The red screen is the same picture for 4 s: its frames 13-15 extend the chunk at 12 s.
      assert.deepEqual([result.framesEncoded, result.framesGated], [27, 3]);
    } finally {
      await session.dispose();
    }
  });

  it('a chunk extended while its row is still committing gets the span once committed; an index saved before an extension catches up on open', async () => {
    const dir = path.join(scratch, 'committing');
    // A long group-commit interval: rows stay pending until flush().
    let session = await StreamSession.open(model, { dir, windowFrames: 4, fsync: { intervalMs: 60_000 } });
    try {
      await session.addFrame(haystack, 0);
      await session.addFrame(needle, 1);
      await session.skipFrame(2);
      await session.skipFrame(3.5);
      assert.equal(session.store.chunkTimes().ids.length, 0, 'nothing committed yet');
      assert.equal(session.memory.window.find(1)!.tEnd, 3.5, 'the window chunk carries the span');
      await session.flush();
      assert.deepEqual(session.memory.chunkTimes(), [
        { chunkId: 0, tStart: 0, tEnd: 0 },
        { chunkId: 1, tStart: 1, tEnd: 3.5 },
      ]);
      assert.deepEqual(indexedChunkAt(session, 3), [1]);
      // Committed: the next extension writes through to the row and the index at once.
      await session.skipFrame(5);
      assert.equal(session.store.chunkTimes().tEnd[1], 5);
      assert.deepEqual(indexedChunkAt(session, 4.5), [1]);
      assert.equal(session.store.stats().tEnd, 5, 'the segment summary follows');
      // Under an interval fsync policy the row is written at most once per interval: the index has
      // the span at once, the row by the next flush (or append, settle, dispose).
      await session.skipFrame(6);
      assert.deepEqual(indexedChunkAt(session, 5.5), [1]);
      assert.equal(session.store.chunkTimes().tEnd[1], 5);
      await session.flush();
      assert.equal(session.store.chunkTimes().tEnd[1], 6);
      assert.equal(session.stats().framesGated, 4);
      await assert.rejects(session.skipFrame(4), /before the previous frame/);
    } finally {
      await session.dispose();
    }

    // The saved index holds the span 1..6; an extension that reached the manifest but not a saved
    // index (a crash before the next save) is what the next open must pick up.
    const store = ChunkStore.open({ dir: streamStoreDir(dir) });
    try {
      assert.equal(store.extendChunk(1, 9), true);
      assert.equal(store.extendChunk(1, 7), true, 'never shortens');
      assert.equal(store.extendChunk(99, 9), false);
    } finally {
      await store.dispose();
    }
    session = await StreamSession.open(model, { dir, windowFrames: 4 });
    try {
      assert.equal(session.memory.chunkTimes()[1]!.tEnd, 9);
      assert.deepEqual(indexedChunkAt(session, 8), [1], 'the index took the manifest span on open');
      assert.equal(session.stats().lastFrameTime, 9);
      // No frame was checked since the open: the next one is encoded whatever it shows.
      assert.equal(session.checkGate({ data: new Uint8Array(64 * 64 * 3), width: 64, height: 64 }, 10).reason, 'first');
    } finally {
      await session.dispose();
    }
  });
});
