/**
 * The compressed tier through the question path (probe-needle, real store and index): a needle
 * whose chunk was demoted to kivi4 is still answered 'green'; a stream stored as kivi4 from the
 * start too; a question asked while its chunk's segment is being demoted reads correct data.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StreamSession, type StreamSessionOptions } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts } from '../helpers/needleStream.js';

const FRAMES = 24;
const NEEDLE_AT = 9;
const QUESTION = 'What color was the square on the red screen?';

describe('kivi4 tier: needle questions', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  let haystack: PreprocessedImage;
  let needle: PreprocessedImage;

  before(async () => {
    ({ model, scratch, haystack, needle } = await loadNeedleStreamParts('vigil-tier-'));
  });
  after(() => disposeNeedleStreamParts({ model, scratch }));

  async function ingest(dir: string, options: Partial<StreamSessionOptions> = {}): Promise<StreamSession> {
    // Small segments (two float32 records each at probe-needle geometry), so the needle's segment is an old one.
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4, segmentBytes: 2 * 8776 + 32, ...options });
    for (let i = 0; i < FRAMES; i++) await session.addFrame(i === NEEDLE_AT ? needle : haystack, i, 1_700_000_000_000 + i * 1000);
    await session.flush();
    return session;
  }

  const needleSegment = (session: StreamSession): number =>
    session.store.stats().segments.find((s) => s.firstChunkId !== null && s.firstChunkId <= NEEDLE_AT && NEEDLE_AT <= s.lastChunkId!)!.segment;

  it("a needle demoted to kivi4 is still answered 'green'", async () => {
    const session = await ingest(path.join(scratch, 'demoted'));
    try {
      // Every old segment, the needle's included, as background demotion would leave them.
      for (const s of session.store.stats().segments.filter((x) => x.lastChunkId !== null && x.lastChunkId < 16)) {
        assert.ok((await session.store.demoteSegment(s.segment)) !== null);
      }
      const spans = session.store.tierSpans();
      assert.equal(spans[0]!.dtype, 'kivi4');
      assert.ok(spans[0]!.firstChunkId <= NEEDLE_AT && NEEDLE_AT <= spans[0]!.lastChunkId, JSON.stringify(spans));
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT), 'retrieved the demoted needle chunk');
      assert.equal(answer.text.trim(), 'green');
      assert.deepEqual((await session.store.verify()).damaged, []);
    } finally {
      await session.dispose();
    }
  });

  it("storage 'kivi4' from the start answers 'green'", async () => {
    const session = await ingest(path.join(scratch, 'kivi4'), { storageDtype: 'kivi4', segmentBytes: undefined });
    try {
      assert.equal(session.store.stats().bytesByDtype.float32, 0);
      assert.ok(session.store.stats().bytesByDtype.kivi4 > 0);
      assert.equal((await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await session.dispose();
    }
  });

  it("StreamMemory.load pins its selection: a demotion started during the load is deferred, then runs", async () => {
    const session = await ingest(path.join(scratch, 'pinned'));
    try {
      const loading = session.memory.load(session.memory.fixed([NEEDLE_AT]), false);
      assert.equal(await session.store.demoteSegment(needleSegment(session)), null, 'deferred while the load holds the needle');
      const loaded = await loading;
      assert.deepEqual(loaded.skipped, []);
      loaded.dispose();
      assert.ok((await session.store.demoteSegment(needleSegment(session))) !== null, 'released after the load');
    } finally {
      await session.dispose();
    }
  });

  it('a question racing the demotion of its needle segment reads correct data (pinned or moved, never failed)', async () => {
    const session = await ingest(path.join(scratch, 'race'));
    try {
      const [answer, demoted] = await Promise.all([
        session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 }),
        session.store.demoteSegment(needleSegment(session)),
      ]);
      assert.deepEqual(answer.skipped, []);
      assert.equal(answer.text.trim(), 'green');
      // Deferred (the question's pin) or done; either way nothing is damaged and the needle still answers.
      if (demoted === null) assert.ok((await session.store.demoteSegment(needleSegment(session))) !== null);
      assert.equal((await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
      assert.deepEqual((await session.store.verify()).damaged, []);
    } finally {
      await session.dispose();
    }
  });
});
