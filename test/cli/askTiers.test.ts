/**
 * `vigil ask --keep-full / --kv-share / --no-archive` (issue 15, memory tiers): the flags become
 * the offline memory's tiers (part of its identity, in video.json) and its store's retention
 * policy; bad values and tiers without --budget are one-line CLI errors naming the limit.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { planBudget } from '../../memory/store/budget.js';
import { budgetShape } from '../../src/engine/manager/streamBudget.js';
import { openOfflineVideo } from '../../src/engine/offlineVideo.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

const WINDOW = 4;
const BUDGET = 1_000_000;

describe('vigil ask tiers', () => {
  let scratch: string;
  let clip: string;
  const red = 'What color was the square on the red screen?';
  const common = ['--window', String(WINDOW), '--gate', 'off', '--json'];

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ask-tiers-'));
    probeModelDir('probe-needle');
    clip = (await makeProbeClip({ out: path.join(scratch, 'clip.mp4'), durationS: 30, width: 160, height: 90, needles: [{ start: 20, duration: 3, background: 'red', square: 'green' }] })).clip;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('--keep-full, --kv-share and --no-archive are the memory tiers, in its identity', async () => {
    const data = path.join(scratch, 'data');
    const r = await runVigil(['ask', clip, red, '--data', data, '--budget', '1MB', '--keep-full', '30', '--kv-share', '0.5', '--no-archive', ...common]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { answer: string }).answer, 'green');
    const root = path.join(data, 'offline');
    const dirs = fs.readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory());
    assert.equal(dirs.length, 1);
    const record = JSON.parse(fs.readFileSync(path.join(root, dirs[0]!.name, 'video.json'), 'utf8')) as { settings: { budget: number; tiers: unknown } };
    assert.equal(record.settings.budget, BUDGET);
    assert.deepEqual(record.settings.tiers, { keepFullSec: 30, kvShare: 0.5, archive: false });
    // Other tiers are another memory; the same ones reuse it.
    const other = await runVigil(['ask', clip, red, '--data', data, '--budget', '1MB', '--keep-full', '60', ...common]);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(fs.readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).length, 2);
    const again = await runVigil(['ask', clip, red, '--data', data, '--budget', '1MB', '--kv-share', '0.5', '--no-archive', '--keep-full', '30', ...common]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(fs.readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).length, 2);
  });

  it("the tiers reach the store's retention policy (openOfflineVideo)", async () => {
    const model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    try {
      const memory = await openOfflineVideo(model, clip, { dataDir: path.join(scratch, 'engine'), windowFrames: WINDOW, gate: 'off', budget: BUDGET, tiers: { keepFullSec: 12, kvShare: 0.75 } });
      try {
        const retention = memory.session.store.retention!;
        assert.deepEqual([retention.budgetBytes, retention.keepFullSec, retention.kvShare, retention.archive], [BUDGET, 12, 0.75, undefined]);
      } finally {
        await memory.session.dispose();
      }
      await assert.rejects(
        openOfflineVideo(model, clip, { dataDir: path.join(scratch, 'engine'), windowFrames: WINDOW, tiers: { archive: false } }),
        (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /need a disk budget/.test(e.message),
      );
      await assert.rejects(
        openOfflineVideo(model, clip, { dataDir: path.join(scratch, 'engine'), windowFrames: WINDOW, budget: BUDGET, tiers: { kvShare: 3 } }),
        (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /tiers\.kvShare: .*<=1/.test(e.message),
      );
    } finally {
      await model.dispose();
    }
  });

  it('bad values, a too small --kv-share and tiers without --budget are one-line errors naming the limit', async () => {
    const data = path.join(scratch, 'bad');
    const cases = [
      [['--budget', '1MB', '--kv-share', '1.5'], /--kv-share.*from 0 to 1, got '1\.5'/],
      [['--budget', '1MB', '--keep-full', '-2'], /--keep-full.*seconds >= 0, got '-2'/],
      [['--keep-full', '30'], /--keep-full, --kv-share and --no-archive .*give --budget/],
      [['--no-archive'], /give --budget/],
    ] as const;
    const model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    const plan = planBudget(BUDGET, budgetShape(model, 'float32', WINDOW));
    await model.dispose();
    // The first case through the binary, the others (the too small --kv-share last) through the same main() in one process.
    const runs = await runVigilCases([...cases.map(([args]) => args), ['--budget', '1MB', '--kv-share', '0.01']].map((args) => ['ask', clip, red, '--data', data, ...common, ...args]));
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!;
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    const small = runs[cases.length]!;
    assert.equal(small.code, 2, small.stderr);
    assert.match(small.stderr, /--kv-share 0\.01 is too small for --budget 1000000 bytes/);
    assert.ok(small.stderr.includes(`one store segment (${plan.segmentBytes} bytes`), small.stderr);
    assert.ok(small.stderr.includes(`the window's ${WINDOW} frames (${WINDOW} x ${plan.recordBytes} bytes)`), small.stderr);
    assert.ok(!fs.existsSync(path.join(data, 'offline')) || fs.readdirSync(path.join(data, 'offline')).every((f) => !fs.statSync(path.join(data, 'offline', f)).isDirectory()), 'no memory folder left');
  });
});
