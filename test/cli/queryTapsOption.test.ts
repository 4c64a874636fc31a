/**
 * `--query-taps auto|off` on the commands that load a model, `queryTaps` in the serve config, and an
 * unknown `--dtype` refused with the list of weight formats instead of being ignored.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadServiceConfig } from '../../api/config.js';
import { parseGraphDtype, resolveGraphFile } from '../../src/model/graphFiles.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

describe('--query-taps and --dtype', () => {
  let scratch: string;
  let modelDir: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-query-taps-cli-'));
    modelDir = probeModelDir('probe-random-tiny-gqa');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('models inspect: taps by surgery under auto, none under off; the state is reported', async () => {
    const env = { VIGIL_CACHE_DIR: path.join(scratch, 'cache') };
    const auto = await runVigil(['models', 'inspect', modelDir, '--dtype', 'q4f16', '--json'], env);
    assert.equal(auto.code, 0, auto.stderr);
    const a = JSON.parse(auto.stdout) as { queryTaps: string; queryTapState: string; kvType: string };
    assert.deepEqual([a.queryTaps, a.queryTapState, a.kvType], ['yes', 'surgery', 'float16']);
    const off = await runVigil(['models', 'inspect', modelDir, '--query-taps', 'off', '--json'], env);
    assert.equal(off.code, 0, off.stderr);
    const o = JSON.parse(off.stdout) as { queryTaps: string; queryTapState: string };
    assert.deepEqual([o.queryTaps, o.queryTapState], ['no', 'off']);
  });

  it('an unknown --dtype or --query-taps value is an error naming the accepted values', async () => {
    const cases = [
      ['models', 'inspect', modelDir, '--dtype', 'fp8'],
      ['chat', '--model', modelDir, '--dtype', 'fp8', 'hello'],
      ['ask', 'clip.mp4', 'what?', '--model', modelDir, '--dtype', 'fp8'],
      ['models', 'inspect', modelDir, '--query-taps', 'sometimes'],
    ];
    // One real spawn per command (models, chat, ask); the last case through the same main() in another process.
    const runs = await runVigilCases(cases, [0, 1, 2]);
    for (const [i, args] of cases.slice(0, 3).entries()) {
      const run = runs[i]!;
      assert.notEqual(run.code, 0);
      assert.match(run.stderr, /unknown dtype 'fp8' \(fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4\)/, args.join(' '));
    }
    const taps = runs[3]!;
    assert.notEqual(taps.code, 0);
    assert.match(taps.stderr, /expected auto or off, got 'sometimes'/);
    // The library refuses it too (a JavaScript caller passing a string).
    assert.throws(() => parseGraphDtype('fp8'), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /unknown dtype 'fp8'/.test(e.message));
    assert.throws(() => resolveGraphFile(modelDir, 'decoder_model_merged', 'fp8' as 'fp32', {}), /unknown dtype 'fp8'/);
  });

  it('the serve config takes queryTaps auto or off', () => {
    const file = path.join(scratch, 'vigil.yaml');
    fs.writeFileSync(file, 'queryTaps: off\n');
    assert.equal(loadServiceConfig(file, {}).queryTaps, 'off');
    fs.writeFileSync(file, 'queryTaps: sometimes\n');
    assert.throws(() => loadServiceConfig(file, {}), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && /queryTaps/.test(e.message));
  });
});
