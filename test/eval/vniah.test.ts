/**
 * `vigil eval vniah` end to end on a tiny grid: a real probe clip (generated into a fresh cache),
 * ffmpeg sampling, the probe-needle model, disk offload in float32 and int8, every answer mode; then
 * the three outputs. Plus the grid's own rules: needle layout and flag validation.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { CONTROL_COLOR, planClip } from '../../src/eval/clipPlan.js';
import { heatmapSize } from '../../src/eval/vniahHeatmap.js';
import type { VniahCell, VniahResults } from '../../src/eval/vniahRunner.js';
import { DEFAULT_VNIAH_SETTINGS, modesFor, sessionDtypes, vniahSettingsFromFlags } from '../../src/eval/vniahSettings.js';
import { VigilError } from '../../common/errors.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

function assertBadInput(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof VigilError && e.code === 'BAD_INPUT' && pattern.test(e.message));
}

describe('V-NIAH grid rules', () => {
  it('defaults: the design grid, rekv on three storage dtypes, the baselines on float32', () => {
    const s = vniahSettingsFromFlags({});
    assert.deepEqual(s.lengthsMin, [2, 10, 30, 60]);
    assert.deepEqual(s.depthsPct, [0, 25, 50, 75, 100]);
    assert.deepEqual(s.modes, ['full', 'window', 'uniform', 'rekv', 'oracle']);
    assert.equal(s.retrieve, 64);
    assert.equal(s.windowFrames, 16);
    assert.equal(s.sinkFrames, 1);
    assert.deepEqual(sessionDtypes(s), ['float32', 'float16', 'int8']);
    assert.deepEqual(modesFor(s, 'float32'), ['full', 'window', 'uniform', 'rekv', 'oracle']);
    assert.deepEqual(modesFor(s, 'int8'), ['rekv']);
    assert.deepEqual(DEFAULT_VNIAH_SETTINGS.lengthsMin, [2, 10, 30, 60], 'flags never change the defaults');
  });

  it('parses lists (fractional lengths, any order) and rejects bad flags with clear errors', () => {
    const s = vniahSettingsFromFlags({ lengths: '1.5,0.5', depths: '100,0', modes: 'oracle,rekv', retrieve: '8' });
    assert.deepEqual(s.lengthsMin, [0.5, 1.5]);
    assert.deepEqual(s.depthsPct, [0, 100]);
    assert.deepEqual(s.modes, ['rekv', 'oracle']);
    assertBadInput(() => vniahSettingsFromFlags({ modes: 'rekv,psychic' }), /--modes: unknown mode 'psychic'/);
    assertBadInput(() => vniahSettingsFromFlags({ depths: '50,101' }), /--depths: '101' is not a depth in 0\.\.100/);
    assertBadInput(() => vniahSettingsFromFlags({ retrieve: '0' }), /--retrieve must be an integer in 1\.\./);
    assertBadInput(() => vniahSettingsFromFlags({ lengths: '2,,10' }), /--lengths must be a comma-separated list/);
    assertBadInput(() => vniahSettingsFromFlags({ lengths: '0' }), /shorter than one second/);
    assertBadInput(() => vniahSettingsFromFlags({ dtypes: 'int4' }), /unknown storage dtype 'int4'/);
    // The compressed tier is measured on request.
    assert.deepEqual(sessionDtypes(vniahSettingsFromFlags({ dtypes: 'float32,kivi4' })), ['float32', 'kivi4']);
    assertBadInput(() => vniahSettingsFromFlags({ depths: '50,50' }), /lists a value twice/);
  });

  it('plans one needle per depth inside the clip, distinct colors, a control color drawn nowhere', () => {
    const plan = planClip(2, [0, 25, 50, 75, 100], 2, 1);
    assert.equal(plan.durationS, 120);
    assert.deepEqual(plan.needles.map((n) => n.start), [1, 30, 60, 89, 118], 'depth 0 comes right after the 1-s sink lead-in');
    assert.equal(plan.needles.at(-1)!.end, 120, 'depth 100 ends with the clip');
    const backgrounds = plan.needles.map((n) => n.background);
    const squares = plan.needles.map((n) => n.square);
    assert.equal(new Set(backgrounds).size, 5);
    assert.equal(new Set(squares).size, 5);
    for (const n of plan.needles) assert.notEqual(n.background, n.square);
    assert.equal(plan.control, CONTROL_COLOR);
    assert.ok(![...backgrounds, ...squares].includes(plan.control));
    assertBadInput(() => planClip(0.05, [0, 50, 100], 2), /too short for needles at depths/);
    assertBadInput(() => planClip(10, [0, 10, 20, 30, 40, 50, 60, 70], 2), /at most 7 depths/);
  });
});

describe('vigil eval vniah', () => {
  let scratch: string;
  let needleModel: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-vniah-test-'));
    needleModel = probeModelDir('probe-needle');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('runs a tiny grid end to end: rekv and oracle always right, window loses the needle that left it', async () => {
    const out = path.join(scratch, 'out');
    const cache = path.join(scratch, 'cache');
    // r = 4 of 59 candidate frames: retrieval has to choose (r >= the clip would retrieve everything).
    const run = await runVigil(
      ['eval', 'vniah', '--lengths', '1', '--depths', '50,100', '--modes', 'rekv,window,oracle,uniform,full', '--dtypes', 'float32,int8',
        '--retrieve', '4', '--full-limit', '500', '--repeats', '2', '--model', needleModel, '--out', out, '--json'],
      { VIGIL_CACHE_DIR: cache },
    );
    assert.equal(run.code, 0, run.stderr);
    const results = JSON.parse(run.stdout) as VniahResults;
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')), results, '--json prints results.json');
    assert.match(results.commandLine, /^vigil eval vniah --lengths 1 /);
    assert.ok(results.machine.cores > 0);
    assert.equal(results.clips.length, 1);
    assert.equal(results.clips[0]!.cached, false, 'the clip was generated into the fresh cache');
    assert.ok(fs.existsSync(results.clips[0]!.clip) && results.clips[0]!.clip.startsWith(cache));
    assert.deepEqual(results.ingests.map((i) => [i.dtype, i.frames]), [['float32', 60], ['int8', 60]]);

    const cells = (mode: string, dtype = 'float32') => results.cells.filter((c) => c.mode === mode && c.dtype === dtype);
    const at = (list: VniahCell[], depth: number | null) => list.find((c) => c.depthPct === depth)!;
    // 2 needles + control for rekv x2 dtypes, window, oracle, uniform, full (skipped).
    assert.equal(results.cells.length, 6 * 3);
    for (const dtype of ['float32', 'int8']) {
      for (const c of cells('rekv', dtype)) {
        assert.equal(c.correct, true, `rekv ${dtype} depth ${c.depthPct}: '${c.answer}' for '${c.expected}'`);
        if (c.kind === 'needle') {
          assert.equal(c.recall, 1, 'the needle frames are retrieved at the signal layer');
          assert.equal(c.chosenAtSignalLayer, 4);
          assert.ok(c.ttftMs! > 0 && c.rssBytes! > 0 && c.contextTokens! > 0);
          assert.equal(c.ttftMsRuns.length, 2, 'each question asked --repeats times');
          assert.ok(c.best!.ttftMs <= c.ttftMs!);
        }
      }
    }
    assert.ok(cells('oracle').every((c) => c.correct), 'oracle');
    assert.equal(at(cells('window'), 50).answer, 'unknown', 'the 50% needle (29-30 s) left the 16-frame window of a 60-s clip');
    assert.equal(at(cells('window'), 50).recall, 0);
    assert.equal(at(cells('window'), 100).correct, true, 'the 100% needle is still in the window');
    for (const c of results.cells.filter((x) => x.kind === 'control' && x.correct !== null)) assert.equal(c.answer, 'unknown', `${c.mode} control`);
    for (const c of results.cells.filter((x) => x.kind === 'needle' && x.correct !== null)) {
      assert.equal(c.correct, c.recall! > 0, `${c.mode} ${c.dtype} ${c.depthPct}%: right exactly when the needle is in context`);
    }
    assert.ok(cells('full').every((c) => c.skipped !== null && c.correct === null), 'full over --full-limit is skipped');
    assert.match(results.notes.join('\n'), /full skipped at 1 min: .*60 frames x \d+ tokens/);

    const table = fs.readFileSync(path.join(out, 'table.md'), 'utf8');
    assert.match(table, /\| rekv \| int8 \| 100% \(2\/2\) \|/);
    assert.match(table, /\| window \| float32 \| 50% \(1\/2\) \|/);
    assert.match(table, /\| full \| float32 \| skipped \|/);
    assert.match(table, /## Time to first token/);

    const png = path.join(out, 'heatmap.png');
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.deepEqual({ width: meta.width, height: meta.height }, heatmapSize(6, 1, 2));
    const stats = await sharp(png).stats();
    assert.ok(stats.channels.some((ch) => ch.max - ch.min > 100), 'the image is not blank');
  });

  it('bad flags exit 2 with one clear line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--modes', 'rekv,psychic'], /unknown mode 'psychic'/],
      [['--depths', '0,150'], /'150' is not a depth in 0\.\.100/],
      [['--retrieve', '0'], /--retrieve must be an integer in 1\.\./],
      [['--lengths', '0.05', '--depths', '0,100'], /too short for needles/],
    ];
    // The first case through the binary, the others through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => ['eval', 'vniah', '--model', needleModel, '--out', path.join(scratch, 'bad'), ...args]));
    for (const [i, [args, pattern]] of cases.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, pattern);
      assert.doesNotMatch(run.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
    }
    assert.ok(!fs.existsSync(path.join(scratch, 'bad', 'results.json')));
  });
});
