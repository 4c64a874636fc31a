/**
 * StreamMemory, the one owner of a stream's memory, with real parts (probe-needle model, chunk
 * store files, the retrieval index): a chunk is checked before anything changes; a failed index
 * update becomes the stream's error state, never an unhandled rejection; retention's removals reach
 * every subscriber; a damaged chunk on disk is skipped and reported while the question is still
 * answered; a restart reconciles the saved index instead of rebuilding it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { segmentPath } from '../../memory/store/segmentFiles.js';
import { VigilError } from '../../common/errors.js';
import { streamIndexDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { StreamSession, type StreamSessionOptions } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts } from '../helpers/needleStream.js';

const FRAMES = 24;
const NEEDLE_AT = 9;
const QUESTION = 'What color was the square on the red screen?';

describe('StreamMemory', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  let haystack: PreprocessedImage;
  let needle: PreprocessedImage;

  before(async () => {
    ({ model, scratch, haystack, needle } = await loadNeedleStreamParts('vigil-memory-'));
  });
  after(() => disposeNeedleStreamParts({ model, scratch }));

  async function ingest(dir: string, options: Partial<StreamSessionOptions> = {}, frames = FRAMES): Promise<StreamSession> {
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4, ...options });
    for (let i = 0; i < frames; i++) await session.addFrame(i === NEEDLE_AT ? needle : haystack, i, 1_700_000_000_000 + i * 1000);
    await session.flush();
    return session;
  }

  it('a chunk with a non-finite value is refused before anything changes; the stream goes on', async () => {
    const session = await ingest(path.join(scratch, 'validate'), {}, 6);
    try {
      const before = session.stats();
      const window = session.memory.window.contextChunks.map((c) => c.chunkId);
      const good = session.memory.window.windowChunks.at(-1)!;
      const { chunkId: _, ...template } = good;
      const representatives = template.representatives.map((r) => r.slice());
      representatives[1]![3] = Number.NaN;
      await assert.rejects(session.addEncodedChunk({ ...template, tStart: 10, tEnd: 10, representatives }), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /finite|NaN/i.test(e.message));
      const keys = template.keys.map((k) => k.slice());
      keys[0]![0] = Number.POSITIVE_INFINITY;
      await assert.rejects(session.addEncodedChunk({ ...template, tStart: 10, tEnd: 10, keys }), (e: Error & { code?: string }) => e.code === 'BAD_INPUT');
      assert.equal(session.stats().nextChunkId, before.nextChunkId, 'no id was used');
      assert.deepEqual(session.memory.window.contextChunks.map((c) => c.chunkId), window, 'the window did not move');
      const next = await session.addEncodedChunk({ ...template, tStart: 10, tEnd: 10 });
      assert.equal(next.chunkId, before.nextChunkId);
      await session.flush();
      assert.equal(session.stats().indexedChunks, 7);
    } finally {
      await session.dispose();
    }
  });

  it('an index update that fails puts the stream in an error state, with no unhandled rejection', async () => {
    const session = await ingest(path.join(scratch, 'index-fault'), {}, 4);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    // Fault injection (a spy on the real index): the index refuses the next chunk after the store took it.
    const index = session.index;
    const original = index.addChunk.bind(index);
    index.addChunk = () => {
      throw new Error('injected index failure');
    };
    try {
      await session.addFrame(haystack, 4);
      await assert.rejects(session.flush(), (e: Error & { code?: string }) => e.code === 'INTERNAL' && /index refused it: injected/.test(e.message));
      await assert.rejects(session.addFrame(haystack, 5), /injected index failure/, 'the error state holds');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      index.addChunk = original;
      await session.dispose();
    }
  });

  it('a chunk a full disk turned back is reported once, kept, and committed by the next flush', async () => {
    const session = await ingest(path.join(scratch, 'held-back'), {}, 4);
    // Fault injection (a spy on the real store): the first try of chunk 4 meets a full disk. The
    // store undoes such an append (test/memory/storeDiskFull.test.ts shows it on a real tmpfs), so
    // refusing before writing is what the memory sees.
    const store = session.store;
    const original = store.append.bind(store);
    let refused = 0;
    store.append = (chunk) => {
      if (chunk.chunkId === 4 && refused === 0) {
        refused++;
        return Promise.reject(new VigilError('DISK_FULL', 'injected: no space left'));
      }
      return original(chunk);
    };
    try {
      assert.equal((await session.addFrame(haystack, 4)).chunkId, 4);
      await assert.rejects(session.addFrame(haystack, 5), (e: Error & { code?: string }) => e.code === 'DISK_FULL');
      assert.equal(session.stats().heldBackChunks, 1);
      assert.equal(session.stats().storedChunks, 4);
      await session.flush();
      const stats = session.stats();
      assert.deepEqual([stats.storedChunks, stats.indexedChunks, stats.heldBackChunks, stats.lostChunks], [5, 5, 0, 0]);
      assert.deepEqual(Array.from(session.store.chunkIds()), [0, 1, 2, 3, 4]);
      assert.equal((await session.addFrame(haystack, 6)).chunkId, 5, 'the refused frame 5 took no id');
      await session.flush();
      assert.equal(session.stats().storedChunks, 6);
    } finally {
      store.append = original;
      await session.dispose();
    }
  });

  it("retention's removals reach the index through the one removal event", async () => {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'retention'), sinkFrames: 1, windowFrames: 2, segmentBytes: 64 * 1024, retention: { maxBytes: 128 * 1024 } });
    const removed: number[] = [];
    session.memory.onRemoved((ids) => removed.push(...ids));
    try {
      for (let i = 0; i < 40; i++) await session.addFrame(haystack, i);
      await session.flush();
      const stats = session.stats();
      assert.ok(removed.length > 0, 'retention removed something');
      assert.equal(stats.indexedChunks, stats.storedChunks, 'the index follows the store');
      for (const id of removed) assert.equal(session.index.has(id), false, `chunk ${id} left the index`);
    } finally {
      await session.dispose();
    }
  });

  it('a damaged chunk on disk is skipped and reported; the question is still answered from the rest', async () => {
    const dir = path.join(scratch, 'damaged');
    const first = await ingest(dir);
    assert.equal((await first.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    await first.dispose();
    // Damage the needle frame's payload in its segment file (past the record header).
    const db = new Database(path.join(streamStoreDir(dir), 'manifest.sqlite'), { readonly: true });
    const row = db.prepare('SELECT segment_id AS segment, offset, length FROM chunks WHERE chunk_id = ?').get(NEEDLE_AT) as { segment: number; offset: number; length: number };
    db.close();
    const fd = fs.openSync(segmentPath(streamStoreDir(dir), row.segment), 'r+');
    fs.writeSync(fd, Buffer.alloc(64, 0xab), 0, 64, row.offset + Math.floor(row.length / 2));
    fs.closeSync(fd);

    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.deepEqual(answer.skipped.map((s) => [s.chunkId, s.t]), [[NEEDLE_AT, NEEDLE_AT]]);
      assert.ok(answer.evidence.every((e) => e.chunkId !== NEEDLE_AT));
      assert.ok(answer.layerChunkIds.every((ids) => ids.length === 4), 'every layer still has r chunks');
      assert.equal(answer.text.trim(), 'unknown', 'the needle is gone, the rest still answers');
      const full = await session.ask({ question: QUESTION, mode: 'full', maxNewTokens: 4 });
      assert.deepEqual(full.skipped.map((s) => s.chunkId), [NEEDLE_AT]);
    } finally {
      await session.dispose();
    }
  });

  it('a restart reconciles the saved index (nothing rebuilt); a lost index is rebuilt', async () => {
    const dir = path.join(scratch, 'restart');
    await (await ingest(dir)).dispose();
    const again = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      assert.equal(again.openReport.indexRebuilt, false);
      assert.equal(again.openReport.indexAdded, 0);
      assert.equal(again.openReport.indexRemoved, 0);
      assert.equal(again.stats().indexedChunks, FRAMES);
      assert.deepEqual(again.memory.window.contextChunks.map((c) => c.chunkId), [0, 20, 21, 22, 23]);
      assert.equal(again.stats().nextChunkId, FRAMES);
      assert.equal((await again.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await again.dispose();
    }
    fs.rmSync(streamIndexDir(dir), { recursive: true, force: true });
    const rebuilt = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4 });
    try {
      assert.equal(rebuilt.openReport.indexRebuilt, true);
      assert.equal(rebuilt.stats().indexedChunks, FRAMES);
    } finally {
      await rebuilt.dispose();
    }
  });
});
