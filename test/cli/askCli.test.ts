/**
 * `vigil ask VIDEO "question"` end to end on a generated probe clip with the probe-needle model:
 * answers and JSON shape per mode, memory reuse, resume after a SIGKILL mid-encode, bad input.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

interface AnswerJson {
  answer: string;
  mode: string;
  evidence: Array<{ chunkId: number; t: number; score: number }>;
  timing: { retrievalMs: number; loadMs: number; prefillMs: number; ttftMs: number; totalMs: number };
}

describe('vigil ask', () => {
  let scratch: string;
  let clip: string;
  let data: string;
  const red = 'What color was the square on the red screen?';

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ask-'));
    data = path.join(scratch, 'data');
    probeModelDir('probe-needle');
    clip = (await makeProbeClip({ out: path.join(scratch, 'clip.mp4'), durationS: 90, needles: [{ start: 12, duration: 4, background: 'red', square: 'cyan' }] })).clip;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('answers with rekv, misses with window, and reuses the memory on the next run', async () => {
    const first = await runVigil(['ask', clip, red, '--data', data, '--json']);
    assert.equal(first.code, 0, first.stderr);
    const answer = JSON.parse(first.stdout) as AnswerJson;
    assert.equal(answer.answer, 'cyan');
    assert.equal(answer.mode, 'rekv');
    assert.ok(answer.evidence.some((e) => e.t >= 12 && e.t < 16 && e.score > 0));
    for (const key of ['retrievalMs', 'loadMs', 'prefillMs', 'ttftMs', 'totalMs'] as const) assert.equal(typeof answer.timing[key], 'number');

    const window = await runVigil(['ask', clip, red, '--data', data, '--mode', 'window']);
    assert.equal(window.code, 0, window.stderr);
    assert.match(window.stdout, /A: unknown/);
    // 90 sampled frames; the red screen (12-16 s) is one picture for 4 s, so its frames 13-15 are gated.
    assert.match(window.stderr, /reused memory of 87 frames/);
  });

  it('an encode killed with SIGKILL is never taken as complete: the next run resumes it', async () => {
    const killedData = path.join(scratch, 'killed');
    const child = spawn(process.execPath, [path.resolve('bin/vigil.js'), 'ask', clip, red, '--data', killedData, '--window', '4'], { stdio: 'ignore' });
    // Kill once a few frames are committed (the store's segment file has grown).
    const deadline = Date.now() + 60_000;
    for (;;) {
      const segments = fs.existsSync(killedData) ? findFiles(killedData, '.kvseg') : [];
      if (segments.some((f) => fs.statSync(f).size > 200_000)) break;
      if (Date.now() > deadline) throw new Error('the encode never started');
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const record = JSON.parse(fs.readFileSync(findFiles(killedData, 'video.json')[0]!, 'utf8')) as { complete: boolean };
    assert.equal(record.complete, false);

    const resumed = await runVigil(['ask', clip, red, '--data', killedData, '--window', '4', '--json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((JSON.parse(resumed.stdout) as AnswerJson).answer, 'cyan');
    const again = await runVigil(['ask', clip, red, '--data', killedData, '--window', '4']);
    // The first frame after a restart is always encoded: one more when the kill fell inside the red screen.
    assert.match(again.stderr, /reused memory of 8[78] frames/);
  });

  it('bad input: one clear line, exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['ask', clip, '   ', '--data', data], /a question is empty/],
      [['ask', clip, 'x'.repeat(2001), '--data', data], /limit is 2000/],
      [['ask', clip, red, '--mode', 'psychic', '--data', data], /unknown --mode 'psychic'/],
      [['ask', clip, red, '--r', '0', '--data', data], /expected an integer in 1\.\.1024/],
      [['ask', path.join(scratch, 'missing.mp4'), red, '--data', data], /video not found/],
      [['ask', clip, red, '--data', path.join(scratch, 'a-file', 'x')], /not writable/],
      [['ask', clip], /missing required argument 'questions'/],
    ];
    fs.writeFileSync(path.join(scratch, 'a-file'), 'not a folder');
    const notVideo = path.join(scratch, 'notes.mp4');
    fs.writeFileSync(notVideo, 'these are not video frames');
    cases.push([['ask', notVideo, red, '--data', data], /notes\.mp4/]);
    // The first case through the binary, the others through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => args));
    for (const [i, [args, pattern]] of cases.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 2, `${args.join(' ').slice(0, 80)}: ${run.stderr}`);
      assert.match(run.stderr, pattern);
      assert.doesNotMatch(run.stderr, /\n\s+at .+:\d+:\d+\)/);
    }
  });
});

function findFiles(dir: string, suffix: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(suffix)) out.push(path.join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name));
  }
  return out;
}
