/**
 * `vigil watch VIDEO "question"` end to end on a generated probe clip with probe-needle: when the
 * condition became true and false again (JSON and table), a watch that never fires, bad input.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

interface WatchJson {
  spans: Array<{ from: number; to: number | null; answer: string; evidence: Array<{ t: number; score: number }> }>;
  alerts: Array<{ t: number; answer: string }>;
  framesEncoded: number;
  modelChecks: number;
  checkFraction: number;
  prefilterMsPerFrame: number;
  errors: number;
}

describe('vigil watch', () => {
  let scratch: string;
  let clip: string;
  const red = 'What color was the square on the red screen?';

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-watch-cli-'));
    probeModelDir('probe-needle');
    clip = (await makeProbeClip({ out: path.join(scratch, 'clip.mp4'), durationS: 30, needles: [{ start: 10, duration: 3, background: 'red', square: 'green' }] })).clip;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('answer-matches: true when the needle appears, false again when it leaves, with evidence; few model checks', async () => {
    const run = await runVigil(['watch', clip, red, '--trigger', 'answer-matches', '--pattern', 'green', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as WatchJson;
    assert.equal(result.spans.length, 1, run.stdout);
    const [span] = result.spans;
    assert.equal(span!.from, 10);
    assert.equal(span!.to, 13);
    assert.equal(span!.answer, 'green');
    assert.deepEqual(span!.evidence.map((e) => e.t), [10]);
    assert.ok(span!.evidence[0]!.score > 0);
    assert.deepEqual(result.alerts.map((a) => [a.t, a.answer]), [[10, 'green']]);
    assert.equal(result.errors, 0);
    assert.ok(result.checkFraction <= 0.25, `${result.modelChecks} checks of ${result.framesEncoded} frames`);
    assert.ok(result.prefilterMsPerFrame < 5);
  });

  it('a table by default; a watch on a screen that never appears reports nothing', async () => {
    // Two independent runs (no data folder), side by side.
    const [table, never] = await Promise.all([
      runVigil(['watch', clip, red, '--trigger', 'answer-matches', '--pattern', 'green']),
      runVigil(['watch', clip, 'What color was the square on the cyan screen?']),
    ]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /\| became true \| false again \| answer \| evidence \(s: score\) \| check \|/);
    assert.match(table.stdout, /\| 0:10 \| 0:13 \| green \| 0:10: 9\.\d\d \| \d+ ms \|/);
    assert.match(table.stderr, /model checks \(\d+\.\d% of frames/);
    assert.equal(never.code, 0, never.stderr);
    assert.match(never.stdout, /the answer never changed/);
  });

  it('bad input exits 2 with one line: unknown trigger, malformed pattern, pattern without answer-matches', async () => {
    const cases = [
      [['--trigger', 'sometimes'], /unknown --trigger 'sometimes'/],
      [['--trigger', 'answer-matches', '--pattern', '(green'], /not a valid regular expression/],
      [['--trigger', 'answer-matches'], /needs a pattern/],
      [['--pattern', 'green'], /--pattern is for --trigger answer-matches/],
    ] as const;
    // The first case through the binary, the others through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => ['watch', clip, red, ...args]));
    for (const [i, [, message]] of cases.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
    }
  });
});
