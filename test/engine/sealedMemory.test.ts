/**
 * A stream whose older chunks are sealed into index blocks (retrieval/sealedBlock.ts), end to end
 * with real parts: the probe-needle model, the chunk store, block files on disk. The needle frame
 * is sealed long before the question; rekv still retrieves it and the decoder answers from it,
 * across a restart and after the blocks' folder is lost (rebuilt from the manifest).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { streamIndexBlocksDir, streamIndexDir } from '../../src/engine/dataLayout.js';
import { StreamSession, type StreamSessionOptions } from '../../src/engine/streamSession.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts, type NeedleStreamParts } from '../helpers/needleStream.js';

const FRAMES = 40;
const NEEDLE_AT = 5;
const QUESTION = 'What color was the square on the red screen?';
const SEALING = { blockChunks: 4, listChunks: 2, probeLists: 2 };

describe('sealed stream memory', () => {
  let parts: NeedleStreamParts;
  before(async () => {
    parts = await loadNeedleStreamParts('vigil-sealed-memory-');
  });
  after(() => disposeNeedleStreamParts(parts));

  const open = (dir: string, extra: Partial<StreamSessionOptions> = {}): Promise<StreamSession> => StreamSession.open(parts.model, { dir, sinkFrames: 1, windowFrames: 4, indexSealing: SEALING, ...extra });

  it('a sealed needle is retrieved and answered, after a restart too; window-only does not see it', async () => {
    const dir = path.join(parts.scratch, 'needle');
    const session = await open(dir);
    try {
      for (let i = 0; i < FRAMES; i++) await session.addFrame(i === NEEDLE_AT ? parts.needle : parts.haystack, i);
      await session.flush();
      await session.index.idle();
      const sealed = session.index.stats().sealed!;
      assert.ok(sealed.blocks >= 6, `blocks ${sealed.blocks}`);
      assert.equal(session.index.size, FRAMES);
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.equal(answer.text.trim(), 'green');
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT));
      assert.equal((await session.ask({ question: QUESTION, mode: 'window', maxNewTokens: 4 })).text.trim(), 'unknown');
    } finally {
      await session.dispose();
    }
    const again = await open(dir);
    try {
      assert.equal(again.openReport.indexRebuilt, false);
      assert.equal(again.openReport.indexAdded, 0);
      assert.equal(again.index.size, FRAMES);
      assert.ok(again.index.stats().sealed!.chunks >= 24);
      assert.equal((await again.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await again.dispose();
    }
    // Blocks lost (their folder deleted): the saved index no longer loads whole; what is missing
    // comes back from the manifest and the needle is answered again.
    fs.rmSync(streamIndexBlocksDir(dir), { recursive: true, force: true });
    const healed = await open(dir);
    try {
      assert.equal(healed.index.size, FRAMES);
      assert.ok(healed.openReport.indexAdded > 0);
      assert.equal((await healed.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await healed.dispose();
    }
    fs.rmSync(streamIndexDir(dir), { recursive: true, force: true });
    const rebuilt = await open(dir);
    try {
      assert.equal(rebuilt.openReport.indexRebuilt, true);
      assert.equal(rebuilt.index.size, FRAMES);
      assert.ok(rebuilt.index.stats().sealed!.blocks >= 6);
      assert.equal((await rebuilt.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await rebuilt.dispose();
    }
  });

  it("retention's removals reach sealed chunks; emptied block files are deleted", async () => {
    const dir = path.join(parts.scratch, 'retention');
    const session = await open(dir, { segmentBytes: 64 * 1024, retention: { maxBytes: 256 * 1024 } });
    try {
      for (let i = 0; i < FRAMES; i++) await session.addFrame(parts.haystack, i);
      await session.flush();
      await session.index.idle();
      const stats = session.stats();
      assert.ok(stats.storedChunks < FRAMES, 'retention removed chunks');
      assert.equal(stats.indexedChunks, stats.storedChunks);
      assert.deepEqual(Array.from(session.index.chunkIdRange()), Array.from(session.store.chunkIds()));
    } finally {
      await session.dispose();
    }
    const files = fs.readdirSync(streamIndexBlocksDir(dir));
    const again = await open(dir);
    try {
      assert.equal(again.index.stats().sealed!.blocks, files.length, 'every block file left is listed and used');
      assert.equal(again.index.size, again.stats().storedChunks);
    } finally {
      await again.dispose();
    }
  });
});
