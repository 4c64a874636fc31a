/**
 * The `vigil` command as a user runs it: a real child process of bin/vigil.js (through tsx), real
 * probe models, real files. Errors must be one clear line and a non-zero exit, never a stack trace.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil, type VigilRun } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

type Run = VigilRun;
const vigil = runVigil;

function assertCleanError(run: Run, pattern: RegExp): void {
  assert.equal(run.code, 2, `exit code; stderr: ${run.stderr}`);
  assert.match(run.stderr, pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at .+\(.+:\d+:\d+\)/, 'no stack trace');
}

describe('vigil CLI', () => {
  let scratch: string;
  let cache: string;
  let tinyDir: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-cli-'));
    cache = path.join(scratch, 'cache');
    tinyDir = probeModelDir('probe-random-tiny');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('--help works on every command', async () => {
    const cases = [['--help'], ['models', '--help'], ['models', 'list', '--help'], ['models', 'build', '--help'], ['models', 'inspect', '--help'], ['chat', '--help']];
    // The binary once; the other commands' help through the same main() in one process.
    const runs = await runVigilCases(cases);
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 0, `${cases[i]!.join(' ')}: ${run.stderr}`);
      assert.match(run.stdout, /Usage: vigil/);
    }
  });

  it('chat runs end to end on a fresh cache (builds the default probe model, makes the test card)', async () => {
    const run = await vigil(['chat', '--json', '--max-new-tokens', '6', 'What color is the square?'], { VIGIL_CACHE_DIR: cache });
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { answer: string; tokenIds: number[]; imageTokens: number; promptTokens: number; decodeTokensPerSecond: number };
    assert.equal(result.tokenIds.length, 6);
    assert.equal(result.imageTokens, 4);
    assert.ok(result.promptTokens > result.imageTokens);
    assert.ok(result.decodeTokensPerSecond > 0);
    assert.ok(fs.existsSync(path.join(cache, 'models', 'probe-random-tiny-seed0', 'vigil-probe.json')));
  });

  it('chat prints the answer on stdout and token/s on stderr', async () => {
    const image = path.join(scratch, 'frame.png');
    const sharp = (await import('sharp')).default;
    await sharp({ create: { width: 80, height: 60, channels: 3, background: '#ffff00' } }).png().toFile(image);
    const run = await vigil(['chat', '--model', tinyDir, '--image', image, '--max-new-tokens', '3', 'Describe it']);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.trim().length > 0);
    assert.match(run.stderr, /3 tokens at [\d.]+ token\/s/);
  });

  it('models list, build and inspect', async () => {
    const out = path.join(scratch, 'built-fp16');
    // list and build are independent: side by side.
    const [list, build] = await Promise.all([vigil(['models', 'list', '--json'], { VIGIL_CACHE_DIR: cache }), vigil(['models', 'build', 'probe-random-tiny-fp16', '--out', out, '--seed', '3'])]);
    assert.equal(list.code, 0);
    const names = (JSON.parse(list.stdout) as Array<{ name: string }>).map((m) => m.name);
    assert.deepEqual(names, [
      'probe-random-tiny', 'probe-random-tiny-fp16', 'probe-random-smolvlm2-256m', 'probe-random-smolvlm2-256m-fp16', 'probe-needle', 'probe-needle-256m',
      'probe-random-tiny-gqa', 'probe-random-tiny-gqa-qnorm', 'probe-random-tiny-gqa-cache-branch', 'probe-random-smolvlm2-256m-gqa',
      'probe-random-smolvlm2-256m-gqa-qnorm', 'probe-needle-gqa', 'probe-needle-256m-gqa',
    ]);
    assert.equal(build.code, 0, build.stderr);
    assert.equal(build.stdout.trim(), out);
    assert.ok(fs.existsSync(path.join(out, 'onnx', 'decoder_model_merged_fp16.onnx')));
    const inspect = await vigil(['models', 'inspect', out, '--json']);
    assert.equal(inspect.code, 0, inspect.stderr);
    const info = JSON.parse(inspect.stdout) as { family: string; kvType: string; queryTaps: string; probe: { seed: number } };
    assert.equal(info.family, 'idefics3');
    assert.equal(info.kvType, 'float16');
    assert.equal(info.queryTaps, 'yes');
    assert.equal(info.probe.seed, 3);
  });

  it('bad input gives one clear line and exit code 2', async () => {
    const notImage = path.join(scratch, 'text.jpg');
    fs.writeFileSync(notImage, 'just text');
    const notModel = path.join(scratch, 'empty');
    fs.mkdirSync(notModel);
    const cases: Array<[string[], RegExp]> = [
      [['chat', '--model', path.join(scratch, 'nope'), 'q'], /vigil: model '.*nope' is neither a folder nor a probe model/],
      [['chat', '--model', tinyDir, '--image', path.join(scratch, 'missing.jpg'), 'q'], /missing\.jpg/],
      [['chat', '--model', tinyDir, '--image', notImage, 'q'], /text\.jpg/],
      [['chat', '--max-new-tokens', '0', 'q'], /expected an integer in 1\.\.1024/],
      [['models', 'build', 'probe-nope'], /unknown probe model 'probe-nope'/],
      [['chat'], /missing required argument 'question'/],
      [['models', 'inspect', notModel], /not a model folder/],
    ];
    // One real spawn per command (chat, models); the other cases through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => args), [0, 4]);
    for (const [i, run] of runs.entries()) assertCleanError(run, cases[i]![1]);
  });
});
