/**
 * One lifecycle vocabulary: dispose() releases resources, is idempotent (the same promise every
 * time), and Symbol.asyncDispose calls it. A model owns the sessions opened on it: disposing the
 * model disposes its live sessions first (their frames committed), and a disposed model opens none.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isVigilError } from '../../common/errors.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, preprocessFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';

const isDisposed = (e: unknown) => isVigilError(e) && e.code === 'DISPOSED';

describe('model and session lifecycle', () => {
  let scratch: string;
  let frame: PreprocessedImage;
  const load = () => VisionLanguageModel.load(probeModelDir('probe-needle'));

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-lifecycle-'));
    const model = await load();
    frame = await preprocessFrame(model, await haystackFrame());
    await model.dispose();
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('disposing a model disposes its live sessions first; their frames are committed', async () => {
    const model = await load();
    const dir = path.join(scratch, 'cascade');
    const a = await StreamSession.open(model, { dir, sinkFrames: 1, windowFrames: 2 });
    const b = await StreamSession.open(model, { dir: path.join(scratch, 'cascade-b'), sinkFrames: 1, windowFrames: 2 });
    assert.equal(model.liveChildren, 2);
    for (let t = 0; t < 5; t++) await a.addFrame(frame, t);
    await b.dispose();
    assert.equal(model.liveChildren, 1, 'a disposed session leaves its model');

    const disposing = model.dispose();
    assert.equal(model.dispose(), disposing, 'idempotent: the same promise');
    await disposing;
    assert.equal(model.disposed, true);
    assert.equal(a.disposed, true, 'the live session was disposed with its model');
    assert.equal(model.liveChildren, 0);
    await assert.rejects(a.ask({ question: 'What color was the square on the red screen?', retrieve: 1, maxNewTokens: 2 }), isDisposed);
    await assert.rejects(StreamSession.open(model, { dir: path.join(scratch, 'late') }), isDisposed, 'a disposed model opens no session');

    // Everything the session had encoded was committed before the model went away.
    const again = await load();
    try {
      const reopened = await StreamSession.open(again, { dir, sinkFrames: 1, windowFrames: 2 });
      assert.equal(reopened.stats().storedChunks, 5);
      await reopened[Symbol.asyncDispose]();
      assert.equal(reopened.disposed, true);
    } finally {
      await again[Symbol.asyncDispose]();
    }
  });

  it('session and store dispose() are idempotent and reject later use with DISPOSED / STORE_CLOSED', async () => {
    const model = await load();
    try {
      const session = await StreamSession.open(model, { dir: path.join(scratch, 'twice'), sinkFrames: 1, windowFrames: 2 });
      await session.addFrame(frame, 0);
      const first = session.dispose();
      assert.equal(session.dispose(), first);
      await first;
      assert.equal(session.store.disposed, true);
      await assert.rejects(session.addFrame(frame, 1), (e: unknown) => isVigilError(e) && (e.code === 'DISPOSED' || e.code === 'STORE_CLOSED'));
      await session.store.dispose(); // again: fine
    } finally {
      await model.dispose();
    }
  });
});
