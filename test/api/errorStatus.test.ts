/**
 * Error codes to HTTP statuses: every VigilErrorCode has one (a code added without a status fails to
 * compile here and in api/errors.ts), what the caller did wrong is 4xx, and server faults (a bug, a
 * disposed model or session, the store, the model files, an upstream camera) are 5xx, never 400.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import request from 'supertest';
import { errorHandler, STATUS_BY_CODE, toApiError } from '../../api/errors.js';
import { invariant, isVigilError, VIGIL_ERROR_CODES, VigilError, type VigilErrorCode } from '../../common/errors.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, preprocessFrame } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';

/** Whose fault each code is. Exhaustive: a new code is a compile error until it is classified here. */
function fault(code: VigilErrorCode): 'caller' | 'server' {
  switch (code) {
    case 'BAD_INPUT':
    case 'BAD_CONFIG':
    case 'FILE_NOT_FOUND':
    case 'NOT_A_VIDEO':
    case 'CORRUPT_VIDEO':
    case 'UNSUPPORTED_CODEC':
    case 'SOURCE_SCHEME':
    case 'SOURCE_UNREACHABLE':
    case 'SOURCE_FORBIDDEN':
    case 'STREAM_NOT_FOUND':
    case 'STREAM_EXISTS':
    case 'STREAM_UNAVAILABLE':
    case 'OVERLOADED':
    case 'CANCELLED':
      return 'caller';
    case 'INTERNAL':
    case 'DISPOSED':
    case 'CLUSTER_UNAVAILABLE':
    case 'STORE_CLOSED':
    case 'STORE_LOCKED':
    case 'DISK_FULL':
    case 'STORE_CORRUPT':
    case 'STORE_IO':
    case 'INDEX_CORRUPT':
    case 'NOT_A_MODEL':
    case 'UNSUPPORTED_MODEL':
    case 'CORRUPT_MODEL':
    case 'SHAPE_MISMATCH':
    case 'DTYPE_MISMATCH':
    case 'UNKNOWN_PROBE_MODEL':
    case 'FFMPEG_MISSING':
    case 'SOURCE_AUTH':
    case 'SOURCE_NOT_FOUND':
    case 'SOURCE_FAILED':
    case 'SOURCE_STALLED':
    case 'SOURCE_TIMEOUT':
      return 'server';
    default: {
      const unclassified: never = code;
      throw new Error(`unclassified code ${String(unclassified)}`);
    }
  }
}

describe('error code -> HTTP status', () => {
  it('maps every VigilErrorCode: caller mistakes to 4xx, server faults to 5xx (logged)', () => {
    assert.deepEqual(Object.keys(STATUS_BY_CODE).sort(), [...VIGIL_ERROR_CODES].sort(), 'the table lists exactly the codes of the union');
    for (const code of VIGIL_ERROR_CODES) {
      const { api, unexpected } = toApiError(new VigilError(code, 'x'));
      assert.equal(api.status, STATUS_BY_CODE[code], code);
      assert.equal(api.code, code);
      if (fault(code) === 'caller') {
        assert.ok(api.status >= 400 && api.status < 500, `${code} is the caller's: 4xx, got ${api.status}`);
        assert.equal(unexpected, false, code);
      } else {
        assert.ok(api.status >= 500 && api.status < 600, `${code} is a server fault: 5xx, got ${api.status}`);
        assert.equal(unexpected, true, `${code} is logged`);
      }
    }
    assert.equal(STATUS_BY_CODE.INTERNAL, 500);
    assert.equal(STATUS_BY_CODE.DISPOSED, 503);
  });

  it('invariant() throws INTERNAL (500), not BAD_INPUT', () => {
    assert.doesNotThrow(() => invariant(true, 'fine'));
    assert.throws(
      () => invariant(false, () => 'lazy message'),
      (e: unknown) => isVigilError(e) && e.code === 'INTERNAL' && /lazy message/.test(e.message),
    );
    assert.equal(toApiError(new VigilError('INTERNAL', 'x')).api.status, 500);
  });
});

describe('questions on disposed objects are server faults (5xx), not 400', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-errstatus-'));
  });
  after(async () => {
    await model?.dispose();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  /** A tiny app with the service's error handler whose one route runs `fn`. */
  function appRunning(fn: () => Promise<unknown>): express.Express {
    const app = express();
    app.get('/q', async (_req, res) => {
      res.json(await fn());
    });
    app.use(errorHandler(() => {}));
    return app;
  }

  it('a question to a disposed stream session answers 503 DISPOSED', async () => {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 's1'), sinkFrames: 1, windowFrames: 2 });
    await session.addFrame(await preprocessFrame(model, await haystackFrame()), 0);
    await session.dispose();
    const ask = () => session.ask({ question: 'What color was the square on the red screen?', retrieve: 1, maxNewTokens: 2 });
    await assert.rejects(ask(), (e: unknown) => isVigilError(e) && e.code === 'DISPOSED');
    const res = await request(appRunning(ask)).get('/q');
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'DISPOSED');
  });

  it('a question to a disposed model answers 503 DISPOSED', async () => {
    const other = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    await other.dispose();
    const res = await request(appRunning(() => other.embed([1, 2, 3]))).get('/q');
    assert.ok(res.status >= 500, `got ${res.status}`);
    assert.equal(res.body.error.code, 'DISPOSED');
  });
});
