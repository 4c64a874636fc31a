/**
 * Questions while a stream is still being ingested: they interleave with frame encodes (the session
 * serializes model calls), never corrupt the encoding (chunks are bit-identical to an ingest with no
 * questions), and see exactly the frames committed before them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { ingestIntoSession } from '../../src/engine/ingestToSession.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';

describe('questions during ingest', () => {
  let model: VisionLanguageModel;
  let scratch: string;
  let clip: string;
  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-concurrent-'));
    clip = (await makeProbeClip({ out: path.join(scratch, 'clip.mp4'), durationS: 60, needles: [{ start: 10, duration: 4, background: 'yellow', square: 'blue' }] })).clip;
  });
  after(async () => {
    await model?.dispose();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('interleaves with encoding without changing it', async () => {
    // Every frame encoded (no gating): chunk ids are frame numbers, and the two ingests are compared chunk by chunk.
    const quiet = await StreamSession.open(model, { dir: path.join(scratch, 'quiet'), windowFrames: 4, gate: 'off' });
    await ingestIntoSession(quiet, clip, { fps: 1 });

    const busy = await StreamSession.open(model, { dir: path.join(scratch, 'busy'), windowFrames: 4, gate: 'off' });
    const question = 'What color was the square on the yellow screen?';
    const answers: Array<{ text: string; framesBefore: number }> = [];
    let asking = true;
    const questions = (async () => {
      while (asking) {
        // Frames encoded so far (committed or still waiting for their group commit).
        const framesBefore = busy.stats().nextChunkId;
        const answer = await busy.ask({ question, retrieve: 4, maxNewTokens: 3 });
        answers.push({ text: answer.text.trim(), framesBefore });
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await ingestIntoSession(busy, clip, { fps: 1 });
    asking = false;
    await questions;
    try {
      assert.ok(answers.length >= 3, `only ${answers.length} questions ran during ingest`);
      // Before the needle was encoded the answer is 'unknown'; once it is in memory, 'blue'. A frame
      // already queued when the question was asked is encoded first, hence the margin of one.
      for (const a of answers) {
        if (a.framesBefore <= 9) assert.equal(a.text, 'unknown', JSON.stringify(a));
        if (a.framesBefore >= 15) assert.equal(a.text, 'blue', JSON.stringify(a));
      }
      assert.equal((await busy.ask({ question, retrieve: 4, maxNewTokens: 3 })).text.trim(), 'blue');
      const ids = Array.from({ length: 60 }, (_, i) => i);
      const a = await quiet.store.readChunks(ids);
      const b = await busy.store.readChunks(ids);
      assert.equal(a.chunks.size, 60);
      for (const id of ids) {
        const x = a.chunks.get(id)!;
        const y = b.chunks.get(id)!;
        assert.equal(x.tStart, y.tStart);
        x.keys.forEach((k, layer) => assert.deepEqual(k, y.keys[layer], `chunk ${id} layer ${layer} keys differ`));
      }
    } finally {
      await quiet.dispose();
      await busy.dispose();
    }
  });
});
