/**
 * The archive tier through the question path (probe-needle: its answer is right only when the
 * needle frame's KV is in context; real store, index, sharp and onnxruntime): a needle whose KV was
 * archived is re-encoded from its still and answered; with re-encoding off it is not (so the answer
 * comes from the re-encoded KV), and nothing is re-encoded when the evidence still holds KV; history imported straight into the archive answers too; a restart
 * after the sink frames were archived reopens and answers.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ReencodeProgress } from '../../src/engine/archiveRecall.js';
import { StreamSession, type StreamSessionOptions } from '../../src/engine/streamSession.js';
import { stillKind } from '../../src/engine/stillGroups.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame, type RawFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { disposeNeedleStreamParts } from '../helpers/needleStream.js';
import fs from 'node:fs';
import os from 'node:os';

const FRAMES = 24;
const NEEDLE_AT = 9;
const QUESTION = 'What color was the square on the red screen?';
/** A budget far from full: nothing is demoted by itself, but the memory keeps stills (an archive is possible). */
const ROOMY = { budgetBytes: 1 << 30 };

describe('archive tier: needle questions', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  const frames: { raw: RawFrame; image: PreprocessedImage }[] = [];

  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-archive-'));
    const hay = await haystackFrame();
    const needle = await needleFrame({ background: 'red', square: 'green' });
    const hayImage = await preprocessFrame(model, hay);
    const needleImage = await preprocessFrame(model, needle);
    for (let i = 0; i < FRAMES; i++) frames.push(i === NEEDLE_AT ? { raw: needle, image: needleImage } : { raw: hay, image: hayImage });
  });
  after(() => disposeNeedleStreamParts({ model, scratch }));

  async function ingest(dir: string, options: Partial<StreamSessionOptions> = {}, from = 0): Promise<StreamSession> {
    // Small segments (a few chunks each), so the needle's segment is an old one and its stills are coded as a group.
    const session = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4, segmentBytes: 1 << 18, retention: ROOMY, gate: 'off', ...options });
    for (let i = from; i < FRAMES; i++) await session.addFrame(frames[i]!.image, i, 1_700_000_000_000 + i * 1000, frames[i]!.raw);
    await session.flush();
    return session;
  }

  /** Every segment wholly before chunk 16 to the archive, as background demotion would leave them. */
  async function archiveOld(session: StreamSession): Promise<void> {
    for (const s of session.store.stats().segments.filter((x) => x.lastChunkId !== null && x.lastChunkId < 16)) {
      assert.ok((await session.store.demoteSegment(s.segment, 'archive')) !== null);
    }
    assert.ok(session.store.archivedIds([NEEDLE_AT]).has(NEEDLE_AT), JSON.stringify(session.store.tierSpans()));
    // The archive codes consecutive stills together (src/engine/stillGroups.ts): the needle is answered from an H.264 group.
    const { stills } = await session.store.readStills([NEEDLE_AT]);
    assert.notEqual(stillKind(stills.get(NEEDLE_AT)!).kind, 'image');
  }

  it("an archived needle is re-encoded from its still and answered 'green'; with re-encoding off it is not", async () => {
    const session = await ingest(path.join(scratch, 'archived'));
    try {
      await archiveOld(session);
      assert.deepEqual(session.horizon().spans.map((s) => s.tier), ['archive', 'kv-float32']);
      const progress: ReencodeProgress[] = [];
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4, onProgress: (p) => progress.push(p) });
      assert.equal(answer.text.trim(), 'green');
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT), 'the archived needle chunk is evidence');
      assert.ok(answer.archive.reencoded >= 1 && answer.archive.reencoded <= 8, JSON.stringify(answer.archive));
      assert.ok(answer.archive.reencodeMs > 0);
      assert.deepEqual(progress[0], { phase: 'reencode', done: 0, total: answer.archive.reencoded });
      assert.deepEqual(progress.at(-1), { phase: 'reencode', done: answer.archive.reencoded, total: answer.archive.reencoded });
      assert.deepEqual(answer.skipped, []);
      // The cap: one frame re-encoded, the rest of the archived picks refilled from KV chunks.
      const one = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4, maxReencode: 1 });
      assert.equal(one.archive.reencoded, 1);
      assert.equal(one.text.trim(), 'green', 'the best-scored archived chunk is the needle');
      // Off: the archive is left out, so the needle's KV is nowhere and the answer is not 'green'.
      const off = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4, maxReencode: 0 });
      assert.equal(off.archive.reencoded, 0);
      assert.ok(off.archive.skipped >= 1);
      assert.ok(!off.evidence.some((e) => e.chunkId === NEEDLE_AT));
      assert.notEqual(off.text.trim(), 'green');
      await assert.rejects(session.ask({ question: QUESTION, maxReencode: -1, maxNewTokens: 1 }), /maxReencode must be an integer >= 0/);
    } finally {
      await session.dispose();
    }
  });

  it('while a question re-encodes, the KV chunks it chose are pinned: a demotion started meanwhile is deferred', async () => {
    const session = await ingest(path.join(scratch, 'pinned'));
    try {
      await archiveOld(session);
      const kvSegments = session.store
        .stats()
        .segments.filter((x) => x.firstChunkId !== null && x.lastChunkId! < FRAMES - 4 && session.store.archivedIds([x.firstChunkId]).size === 0);
      assert.ok(kvSegments.length > 0);
      const demotions: Array<Promise<unknown>> = [];
      const answer = await session.ask({
        question: QUESTION,
        retrieve: 4,
        maxNewTokens: 4,
        // Mid-question (the first frame about to be re-encoded): try to archive every KV segment outside the window.
        onProgress: (p) => {
          if (p.done === 0) for (const s of kvSegments) demotions.push(session.store.demoteSegment(s.segment, 'archive'));
        },
      });
      const results = await Promise.all(demotions);
      const chosen = new Set(answer.layerChunkIds.flat());
      const held = kvSegments.filter((s, i) => results[i] === null);
      assert.ok(answer.archive.reencoded >= 1);
      assert.equal(answer.text.trim(), 'green');
      assert.deepEqual(answer.skipped, [], 'nothing the question chose was moved under it');
      // Every KV segment holding a chosen chunk was deferred (null), not archived.
      for (const [i, s] of kvSegments.entries()) {
        const holdsChosen = [...chosen].some((id) => id >= s.firstChunkId! && id <= s.lastChunkId!);
        if (holdsChosen) assert.equal(results[i], null, `segment ${s.segment} holds a chosen chunk and was demoted`);
      }
      assert.ok(held.length > 0, 'the question chose KV chunks outside the window');
      // After the question, the pins are gone: the same segments demote now.
      for (const s of held) assert.ok((await session.store.demoteSegment(s.segment, 'archive')) !== null);
    } finally {
      await session.dispose();
    }
  });

  it('when the evidence still holds KV, no archived frame is re-encoded (none scores above it)', async () => {
    const session = await ingest(path.join(scratch, 'kv-evidence'));
    try {
      for (const s of session.store.stats().segments.filter((x) => x.lastChunkId !== null && x.lastChunkId < NEEDLE_AT)) {
        assert.ok((await session.store.demoteSegment(s.segment, 'archive')) !== null);
      }
      assert.ok(session.store.archivedIds([0]).has(0) && !session.store.archivedIds([NEEDLE_AT]).has(NEEDLE_AT));
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.equal(answer.text.trim(), 'green');
      assert.equal(answer.archive.reencoded, 0, JSON.stringify(answer.archive));
    } finally {
      await session.dispose();
    }
  });

  it('history imported straight into the archive (addArchivedChunks: one run, its stills coded as a group), then live frames: the imported needle is answered', async () => {
    const source = await ingest(path.join(scratch, 'source'));
    const target = await StreamSession.open(model, { dir: path.join(scratch, 'imported'), sinkFrames: 1, windowFrames: 4, retention: ROOMY, gate: 'off' });
    try {
      const ids = Array.from({ length: 16 }, (_, i) => i);
      const { chunks } = await source.store.readChunks(ids);
      const { stills } = await source.store.readStills(ids);
      // A run out of time order is refused whole, before anything is written.
      const run = ids.map((id) => ({ ...chunks.get(id)!, keys: [], values: [], still: stills.get(id)! }));
      await assert.rejects(target.addArchivedChunks([run[1]!, run[0]!]), /before the previous frame/);
      assert.equal(target.store.stats().chunkCount, 0);
      const numbered = await target.addArchivedChunks(run);
      assert.deepEqual(numbered.map((c) => c.chunkId), ids);
      const imported = (await target.store.readStills(ids)).stills;
      assert.equal(stillKind(imported.get(15)!).kind, 'holder');
      assert.deepEqual(stillKind(imported.get(NEEDLE_AT)!), { kind: 'member', holder: 15, index: NEEDLE_AT });
      for (let i = 16; i < FRAMES; i++) await target.addFrame(frames[i]!.image, i, 1_700_000_000_000 + i * 1000, frames[i]!.raw);
      await target.flush();
      assert.equal(target.store.stats().chunkCount, FRAMES);
      assert.deepEqual(target.horizon().spans.map((s) => s.tier), ['archive', 'kv-float32']);
      const answer = await target.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.equal(answer.text.trim(), 'green');
      assert.ok(answer.archive.reencoded >= 1);
      // Imports only come before the first frame.
      await assert.rejects(target.addArchivedChunk({ ...chunks.get(0)!, tStart: 99, tEnd: 99, still: stills.get(0)! }), /before the stream's first frame/);
    } finally {
      await source.dispose();
      await target.dispose();
    }
  });

  it('a long import into the archive leaves the index sealed as it goes (imports wait for sealing now and then)', async () => {
    const source = await ingest(path.join(scratch, 'import-source'));
    const target = await StreamSession.open(model, { dir: path.join(scratch, 'import-long'), sinkFrames: 1, windowFrames: 4, retention: ROOMY, gate: 'off', fsync: 'none', indexSealing: { blockChunks: 256, listChunks: 16 } });
    try {
      const template = (await source.store.readChunks([3])).chunks.get(3)!;
      const still = (await source.store.readStills([3])).stills.get(3)!;
      for (let i = 0; i < 3000; i++) {
        // Representatives varied per chunk, as frames are.
        const representatives = template.representatives.map((r) => r.map((x, k) => x + Math.sin(i * 0.37 + k)));
        await target.addArchivedChunk({ ...template, tStart: i, tEnd: i, representatives, keys: [], values: [], still });
      }
      const sealed = target.index.stats().sealed!;
      // Caught up at least at imports 1024 and 2048: (2048 - 2 recent blocks) / 256 = 6 blocks.
      assert.ok(sealed.blocks >= 6, `${sealed.blocks} blocks sealed during a 3000-chunk import (block 256)`);
    } finally {
      await source.dispose();
      await target.dispose();
    }
  });

  it('after the sink frames were archived, a restart reopens (sinks from the oldest KV chunks) and still answers', async () => {
    const dir = path.join(scratch, 'restart');
    const first = await ingest(dir);
    await archiveOld(first);
    assert.ok(first.store.archivedIds([0]).has(0), 'the sink frame is archived');
    await first.dispose();
    const again = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 4, segmentBytes: 1 << 18, retention: ROOMY, gate: 'off' });
    try {
      const kvFrom = again.store.tierSpans().find((s) => s.dtype !== 'archive')!.firstChunkId;
      assert.ok(again.memory.window.sinkChunks.every((c) => c.chunkId >= kvFrom), `sinks ${again.memory.window.sinkChunks.map((c) => c.chunkId).join(', ')}; KV from chunk ${kvFrom}`);
      assert.equal((await again.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 })).text.trim(), 'green');
    } finally {
      await again.dispose();
    }
  });
});
