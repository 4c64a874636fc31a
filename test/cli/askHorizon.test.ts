/**
 * `vigil ask --from/--to` and the memory horizon (issue 15 item 6) through the real CLI
 * (bin/vigil.js, probe-needle): under a budget that forgot the clip's first ~45 s, a question about
 * 0:04-0:08 is answered with the statement (outOfMemory, no tokens), a range reaching back before
 * the horizon is answered by the model over what is kept with a note, and the memory line states
 * the horizon.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { streamClock } from '../../src/engine/memoryHorizon.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

describe('vigil ask --from/--to and the horizon', () => {
  let scratch: string;
  let clip: string;
  const red = 'What color was the square on the red screen?';
  const blue = 'What color was the square on the blue screen?';
  // 2 frames a second for 60 s (~1.1 MB of memory) under 400 kB: about the last 14 s are kept.
  // No tiers (--kv-share 1: the whole budget may hold KV, so nothing older is demoted; no archive): the
  // budget forgets the clip's start outright (tiers keep it longer: test/cli/askBudget.test.ts).
  const common = ['--fps', '2', '--window', '4', '--gate', 'off', '--budget', '400kB', '--kv-share', '1', '--no-archive'];

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ask-horizon-'));
    probeModelDir('probe-needle');
    clip = (
      await makeProbeClip({
        out: path.join(scratch, 'clip.mp4'),
        durationS: 60,
        needles: [
          { start: 5, duration: 3, background: 'red', square: 'green' },
          { start: 50, duration: 3, background: 'blue', square: 'yellow' },
        ],
      })
    ).clip;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('a forgotten range gets the statement; a partly kept one the answer and a note', async () => {
    const data = path.join(scratch, 'data');
    const forgotten = await runVigil(['ask', clip, red, '--data', data, ...common, '--from', '4', '--to', '8', '--json']);
    assert.equal(forgotten.code, 0, forgotten.stderr);
    const a = JSON.parse(forgotten.stdout) as {
      answer: string;
      outOfMemory: boolean;
      contextTokens: number;
      evidence: unknown[];
      horizon: { from: number; to: number; forgottenBefore: number | null; forgottenChunks: number; spans: Array<{ tier: string }> };
      coverage: { missing: Array<{ reason: string }> };
    };
    const h = a.horizon;
    assert.ok(h.forgottenBefore !== null && h.from > 40 && h.from < 50, `the budget kept the last seconds: ${JSON.stringify(h)}`);
    assert.ok(h.to >= 59, JSON.stringify(h));
    assert.equal(a.outOfMemory, true);
    assert.match(a.answer, /^I no longer have memory of 0:04–0:08; my memory starts at 0:4\d\.$/);
    assert.deepEqual(a.coverage.missing.map((m) => m.reason), ['before-horizon']);
    assert.equal(a.contextTokens, 0, 'no context was assembled: no model call');
    assert.deepEqual(a.evidence, []);

    // The memory is reused: the range 0:40-0:59 reaches back before the horizon, the needle at 50 s is kept.
    const partial = await runVigil(['ask', clip, blue, '--data', data, ...common, '--from', '40', '--to', '59', '--r', '4']);
    assert.equal(partial.code, 0, partial.stderr);
    assert.match(partial.stdout, /^A: yellow$/m);
    assert.match(partial.stdout, /^ {3}Not in memory: 0:40–0:4\d \(forgotten: my memory starts at 0:4\d\); answered from the rest of 0:40–0:59\.$/m, partial.stdout);
    // The same memory, reused: the same horizon as the first run's JSON, as a line.
    const line = `memory horizon ${streamClock(h.from)}–${streamClock(h.to)} (kv-float32 ${streamClock(h.from)}–${streamClock(h.to)}); forgotten before ${streamClock(h.forgottenBefore)} (${h.forgottenChunks} chunks)`;
    assert.ok(partial.stderr.split('\n').includes(line), `${line}\n${partial.stderr}`);
    const bad = await runVigil(['ask', clip, blue, '--data', data, ...common, '--from', '9', '--to', '3']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--from \(9\) must be <= --to \(3\)/);
  });
});
