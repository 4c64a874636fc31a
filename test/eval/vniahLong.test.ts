/**
 * The long-horizon V-NIAH grid (issue 15) scaled down to a test: a busy stream of 0.05 days
 * (72 min at 1 frame/s) fast-forwarded under a 4 MB budget with the tiny probe-needle model (old
 * history straight into the archive tier), needles at depths 0-100% plus band needles. Every needle
 * the memory still holds, in a KV tier or the archive (re-encoded from its still), must be answered
 * with the needle circuit's full margin; one the budget deleted must be answered 'unknown'. Plus the camera scene's real frame gate and the
 * flags' rules.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { VigilError } from '../../common/errors.js';
import { cameraGatePattern, DEFAULT_CAMERA, planLongStream } from '../../src/eval/longScene.js';
import { longVniahSettingsFromFlags, type LongVniahResults, runLongVniah, writeLongVniahOutputs } from '../../src/eval/vniahLong.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';

describe('long V-NIAH grid (scaled down)', () => {
  let model: VisionLanguageModel;
  let results: LongVniahResults;
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-vniah-long-test-'));

  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    const settings = longVniahSettingsFromFlags({ days: '0.05', scene: 'busy', budget: '4MB', keepFullSec: '60', depths: '0,25,50,75,100' });
    results = await runLongVniah(model, { settings, modelDir: probeModelDir('probe-needle') });
  });
  after(async () => {
    await model?.dispose();
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('holds the recent part with KV and the older part in the archive, within the budget, and forgets the oldest', () => {
    const tiers = results.run.horizon.spans.map((s) => s.tier);
    assert.equal(tiers[0], 'archive', JSON.stringify(results.run.horizon));
    assert.equal(tiers.at(-1), 'kv-float32', JSON.stringify(results.run.horizon));
    assert.ok(results.run.written.archived > 0);
    assert.ok(results.run.diskBytes <= results.run.budgetBytes * 1.1, `${results.run.diskBytes} on disk for a ${results.run.budgetBytes} budget`);
    const byLabel = new Map(results.rows.map((r) => [r.label, r]));
    assert.equal(byLabel.get('float32 band')!.tier, 'float32');
    assert.equal(byLabel.get('depth 50%')!.tier, 'archive');
    assert.equal(byLabel.get('depth 0%')!.tier, 'forgotten');
  });

  it('answers every needle held in a KV tier with the circuit margin, and a forgotten one with unknown', () => {
    for (const row of results.rows) {
      if (row.tier === 'float32' || row.tier === 'kivi4' || row.tier === 'archive' || row.tier === 'window') {
        assert.ok(row.result.correct, `${row.label} (${row.tier}): answered '${row.result.answer}', expected '${row.square}'`);
        assert.ok(row.result.margin !== null && row.result.margin > 20, `${row.label} (${row.tier}): margin ${row.result.margin}`);
      } else if (row.tier === 'forgotten') {
        assert.equal(row.result.answer, 'unknown', `${row.label}: the needle was deleted, yet answered '${row.result.answer}'`);
      }
    }
    const held = results.tiers.filter((t) => t.tier !== 'forgotten');
    assert.ok(held.length >= 2, JSON.stringify(results.tiers));
    for (const t of held) assert.equal(t.accuracy, 1, `${t.tier}: ${t.correct}/${t.needles}`);
    // Archived needles were answered by re-encoding their stills.
    assert.ok(results.rows.filter((r) => r.tier === 'archive').every((r) => (r.result.archive?.reencoded ?? 0) > 0));
  });

  it('writes the table, JSON and heatmap', async () => {
    const files = await writeLongVniahOutputs(out, results);
    const md = fs.readFileSync(files.tableMd, 'utf8');
    assert.match(md, /\| archive \| \d+ \| \d+\/\d+ \|/);
    assert.match(md, /float32 band/);
    const meta = await sharp(files.heatmapPng).metadata();
    assert.equal(meta.format, 'png');
    assert.ok((meta.width ?? 0) > 200);
    assert.equal((JSON.parse(fs.readFileSync(files.resultsJson, 'utf8')) as LongVniahResults).kind, 'vigil-vniah-long');
  });
});

describe('long V-NIAH scenes and flags', () => {
  it('camera scene: the real gate encodes <= 10% of frames, keeps every event, and repeats per period', () => {
    const pattern = cameraGatePattern({ ...DEFAULT_CAMERA, eventEverySec: 120, gateSeconds: 30 + 3 * 120 });
    assert.equal(pattern.eventsKept, pattern.events);
    assert.ok(pattern.events >= 3);
    assert.ok(pattern.periodic, JSON.stringify(pattern.periodOffsets));
    assert.ok(pattern.periodOffsets.length / 120 <= 0.1, `${pattern.periodOffsets.length} per 120 s`);
    const plan = planLongStream('camera', 86400, [{ t: 5000, seconds: 2, background: 'red', square: 'green' }], { busyVariants: 1, camera: pattern });
    assert.ok(plan.length / 86400 <= 0.1);
    const needle = plan.find((c) => c.kind === 'needle')!;
    assert.deepEqual([needle.tStart, needle.tEnd], [5000, 5001]);
    for (let i = 1; i < plan.length; i++) assert.equal(plan[i]!.tStart, plan[i - 1]!.tEnd + 1, 'chunks tile the stream');
  });

  it('rejects bad flags', () => {
    const bad = (flags: Parameters<typeof longVniahSettingsFromFlags>[0], re: RegExp) =>
      assert.throws(() => longVniahSettingsFromFlags(flags), (e: unknown) => e instanceof VigilError && e.code === 'BAD_INPUT' && re.test(e.message));
    bad({ days: '0' }, /--days/);
    bad({ scene: 'street' }, /--scene must be one of busy, camera/);
    bad({ scale: '0.5' }, /--scale/);
    bad({ depths: '50,120' }, /--depths/);
    assert.equal(longVniahSettingsFromFlags({ days: '30', scene: 'camera', scale: '10' }).scale, 10);
  });
});
