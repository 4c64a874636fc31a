/**
 * A stream's memory end to end, with real parts: the probe-needle model, frames evicted to the
 * disk store, the retrieval index, and the two-pass question path. The needle answer is right only
 * when retrieval brings the needle frame's KV back from disk; with nothing retrieved it is 'unknown'.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts } from '../helpers/needleStream.js';

const FRAMES = 40;
const NEEDLE_AT = 9;

describe('StreamSession with probe-needle', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  let haystack: PreprocessedImage;
  let needle: PreprocessedImage;

  before(async () => {
    ({ model, scratch, haystack, needle } = await loadNeedleStreamParts('vigil-session-'));
  });
  after(() => disposeNeedleStreamParts({ model, scratch }));

  async function ingest(dir: string, options: Partial<Parameters<typeof StreamSession.open>[1]> = {}): Promise<StreamSession> {
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4, ...options });
    for (let i = 0; i < FRAMES; i++) await session.addFrame(i === NEEDLE_AT ? needle : haystack, i, 1_700_000_000_000 + i * 1000);
    await session.flush();
    return session;
  }

  const ask = (session: StreamSession, retrieve: number) =>
    session.ask({ question: 'What color was the square on the red screen?', retrieve, maxNewTokens: 4 });

  it('retrieves the evicted needle frame from disk and answers its square color', async () => {
    const session = await ingest(path.join(scratch, 'needle'));
    try {
      const stats = session.stats();
      assert.equal(stats.storedChunks, FRAMES);
      assert.equal(stats.indexedChunks, FRAMES);
      assert.equal(stats.contextFrames, 5);
      const answer = await ask(session, 4);
      assert.equal(answer.text.trim(), 'green');
      assert.equal(answer.stopReason, 'eos');
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT && e.tStart === NEEDLE_AT), JSON.stringify(answer.evidence));
      const control = await ask(session, 0);
      assert.equal(control.text.trim(), 'unknown', 'without retrieval the needle is out of context');
    } finally {
      await session.dispose();
    }
  });

  it('answer modes: window and uniform miss the evicted needle; full, oracle and rekv find it; time ranges filter', async () => {
    const session = await ingest(path.join(scratch, 'modes'));
    try {
      const q = 'What color was the square on the red screen?';
      const run = (options: Omit<Parameters<StreamSession['ask']>[0], 'maxNewTokens'>) =>
        session.ask({ ...options, maxNewTokens: 4 }).then((a) => ({ text: a.text.trim(), a }));
      assert.equal((await run({ question: q, mode: 'window' })).text, 'unknown');
      assert.equal((await run({ question: q, mode: 'uniform', retrieve: 4 })).text, 'unknown');
      const full = await run({ question: q, mode: 'full' });
      assert.equal(full.text, 'green');
      assert.equal(full.a.mode, 'full');
      assert.equal((await run({ question: q, mode: 'oracle', oracleTimes: [{ start: NEEDLE_AT, end: NEEDLE_AT }] })).text, 'green');
      assert.equal((await run({ question: q, mode: 'oracle', oracleChunkIds: [NEEDLE_AT + 1] })).text, 'unknown');
      assert.equal((await run({ question: q, retrieve: 4, timeRange: { start: 0, end: 15 } })).text, 'green');
      const later = await run({ question: q, retrieve: 4, timeRange: { start: 20, end: 40 } });
      assert.equal(later.text, 'unknown');
      assert.ok(later.a.evidence.every((e) => e.tStart >= 20));
      const timed = (await run({ question: q, retrieve: 4 })).a;
      assert.ok(timed.ttftMs >= timed.retrievalMs + timed.loadMs && timed.totalMs >= timed.ttftMs);
      await assert.rejects(run({ question: q, mode: 'oracle' }), /needs oracleTimes/);
      await assert.rejects(async () => run({ question: q, mode: 'nope' as 'rekv' }), /unknown mode 'nope'/);
    } finally {
      await session.dispose();
    }
  });

  it('cosine similarity also finds the needle, and a saved index of the other similarity is rebuilt', async () => {
    const dir = path.join(scratch, 'cosine');
    const session = await ingest(dir, { similarity: 'cosine' });
    try {
      assert.equal(session.index.space, 'cosine');
      assert.equal((await ask(session, 4)).text.trim(), 'green');
    } finally {
      await session.dispose();
    }
    const reopened = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      assert.equal(reopened.index.space, 'ip');
      assert.equal(reopened.stats().indexedChunks, FRAMES);
    } finally {
      await reopened.dispose();
    }
  });

  it('chunks read back from disk assemble to exactly the in-RAM context (float32 storage)', async () => {
    const dir = path.join(scratch, 'exact');
    const kept: FrameChunk[] = [];
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 2 });
    try {
      for (let i = 0; i < 12; i++) kept.push(await session.addFrame(i === 5 ? needle : haystack, i));
      await session.flush();
      session.store.clearCache();
      const ids = kept.map((c) => c.chunkId);
      const { chunks, failed } = await session.store.readChunks(ids);
      assert.deepEqual(failed, []);
      const fromDisk = session.memory.window.assemble(ids.map((id) => chunks.get(id)!));
      const inRam = session.memory.window.assemble(kept);
      assert.equal(fromDisk.length, inRam.length);
      fromDisk.keys.forEach((k, layer) => {
        assert.deepEqual(k, inRam.keys[layer]);
        assert.deepEqual(fromDisk.values[layer], inRam.values[layer]);
      });
    } finally {
      await session.dispose();
    }
  });

  for (const dtype of ['float16', 'int8'] as const) {
    it(`${dtype} storage still answers the needle (stated tolerance: same answer, KV error bounded)`, async (t) => {
      const session = await ingest(path.join(scratch, dtype), { storageDtype: dtype });
      try {
        session.store.clearCache();
        const { chunks } = await session.store.readChunks([NEEDLE_AT]);
        const stored = chunks.get(NEEDLE_AT)!;
        const fresh = await StreamSession.open(model, { dir: path.join(scratch, `${dtype}-ref`), sinkFrames: 1, windowFrames: 100 });
        let worst = 0;
        try {
          let original: FrameChunk | undefined;
          for (let i = 0; i <= NEEDLE_AT; i++) original = await fresh.addFrame(i === NEEDLE_AT ? needle : haystack, i);
          original!.keys.forEach((k, layer) => {
            const back = stored.keys[layer]!;
            for (let i = 0; i < k.length; i++) worst = Math.max(worst, Math.abs(k[i]! - back[i]!));
          });
        } finally {
          await fresh.dispose();
        }
        t.diagnostic(`max |stored - original| key error (${dtype}) = ${worst.toExponential(2)}`);
        assert.ok(worst < (dtype === 'float16' ? 0.05 : 0.5), `${dtype} key error ${worst}`);
        const answer = await ask(session, 4);
        assert.equal(answer.text.trim(), 'green');
      } finally {
        await session.dispose();
      }
    });
  }

  it('survives a restart: window, ids, index and answers come back', async () => {
    const dir = path.join(scratch, 'restart');
    const first = await ingest(dir);
    const before = await ask(first, 4);
    await first.dispose();

    const reopened = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      const stats = reopened.stats();
      assert.equal(stats.storedChunks, FRAMES);
      assert.equal(stats.indexedChunks, FRAMES);
      assert.equal(stats.contextFrames, 5);
      assert.equal(stats.nextChunkId, FRAMES);
      const after = await ask(reopened, 4);
      assert.deepEqual(after.tokenIds, before.tokenIds);
      assert.deepEqual(after.evidence.map((e) => e.chunkId), before.evidence.map((e) => e.chunkId));
      const next = await reopened.addFrame(haystack, FRAMES);
      assert.equal(next.chunkId, FRAMES);
      await assert.rejects(reopened.addFrame(haystack, 3), /before the previous frame/);
    } finally {
      await reopened.dispose();
    }
  });

  it('rebuilds a missing or damaged index from the manifest', async () => {
    const dir = path.join(scratch, 'restart');
    fs.rmSync(path.join(dir, 'index'), { recursive: true, force: true });
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      assert.equal(session.stats().indexedChunks, FRAMES + 1);
      assert.equal((await ask(session, 4)).text.trim(), 'green');
    } finally {
      await session.dispose();
    }
  });

  it('takes chunks encoded elsewhere through the same write-through path (stored, indexed, retrieved)', async () => {
    const source = await ingest(path.join(scratch, 'import-source'));
    const ids = Array.from({ length: FRAMES }, (_, i) => i);
    const { chunks } = await source.store.readChunks(ids);
    await source.dispose();
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'import'), sinkFrames: 1, windowFrames: 4 });
    try {
      for (const id of ids) {
        const { chunkId: _, ...encoded } = chunks.get(id)!;
        const adopted = await session.addEncodedChunk(encoded);
        assert.equal(adopted.chunkId, id);
      }
      await session.flush();
      const stats = session.stats();
      assert.equal(stats.storedChunks, FRAMES);
      assert.equal(stats.indexedChunks, FRAMES);
      assert.equal(stats.framesEncoded, 0, 'imports are not encoded frames');
      assert.deepEqual(stats.phaseTotalsMs, {});
      const answer = await ask(session, 4);
      assert.equal(answer.text.trim(), 'green');
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT));
      const { chunkId: _, ...late } = chunks.get(0)!;
      await assert.rejects(session.addEncodedChunk(late), /before the previous frame/);
      await assert.rejects(session.addEncodedChunk({ ...late, tStart: FRAMES, tEnd: FRAMES, numKvHeads: late.numKvHeads + 1 }), /geometry/);
    } finally {
      await session.dispose();
    }
  });
});
