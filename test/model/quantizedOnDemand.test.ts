/**
 * A probe's `_quantized` / `_q4` files are built only when a caller asks for a q8 / q4 dtype (issue
 * 19: they doubled the 256m folders' build time). A folder built without them has none; asking adds
 * them (beside the folder, renamed in, the second stamp last), byte-equal to a folder built with them
 * at once; asking again reuses them; a folder holding them without the second stamp (built before
 * this change) is claimed, never rebuilt; an add cut short is redone. The CLI paths: resolveModelDir
 * with a dtype (probe names and probe folders given by path), and `vigil models build --dtype` run by
 * two processes at once on the same folder.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveModelDir } from '../../src/cli/resolveModel.js';
import { buildProbeModel, type ProbeBuildProgress } from '../../src/model/probe/probeModelFolder.js';
import { QUANTIZED_STAMP_FILE } from '../../src/model/probe/probeQuantizedFiles.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

const QUANTIZED = /_(quantized|q4)\.onnx(_data)?$/;

const onnxFiles = (dir: string) => fs.readdirSync(path.join(dir, 'onnx')).sort();
const quantizedFiles = (dir: string) => onnxFiles(dir).filter((f) => QUANTIZED.test(f));

/** Builds with progress recorded: the stages reported and whether the folder was reused. */
function build(name: string, outDir: string, dtype?: 'q8' | 'q4'): { stages: string[]; reused: boolean } {
  const stages: string[] = [];
  const onProgress = (p: ProbeBuildProgress) => stages.push(p.stage);
  const { reused } = buildProbeModel(name, { outDir, onProgress, ...(dtype ? { dtype } : {}) });
  return { stages, reused };
}

function assertSameFiles(a: string, b: string): void {
  assert.deepEqual(onnxFiles(a), onnxFiles(b));
  for (const file of onnxFiles(a)) assert.ok(fs.readFileSync(path.join(a, 'onnx', file)).equals(fs.readFileSync(path.join(b, 'onnx', file))), `${file} differs`);
}

describe('probe quantized files, built on request', () => {
  let root: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-q-on-demand-'));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  for (const name of ['probe-random-tiny', 'probe-needle']) {
    it(`${name}: none without a dtype; q8 adds them (stamp last) equal to a folder built with them; again reuses`, () => {
      const later = path.join(root, `${name}-later`);
      const plain = build(name, later);
      assert.equal(plain.reused, false);
      assert.ok(!plain.stages.includes('quantized'), `stages ${plain.stages.join(',')}`);
      assert.deepEqual(quantizedFiles(later), [], 'no quantized files without a dtype');
      assert.ok(!fs.existsSync(path.join(later, QUANTIZED_STAMP_FILE)));
      assert.equal(build(name, later, undefined).reused, true);

      const added = build(name, later, 'q8');
      assert.deepEqual([added.reused, added.stages], [false, ['quantized', 'done']]);
      const stamp = path.join(later, QUANTIZED_STAMP_FILE);
      assert.equal(fs.readFileSync(stamp, 'utf8'), fs.readFileSync(path.join(later, 'vigil-probe.json'), 'utf8'), 'the second stamp holds the folder stamp');
      const newest = Math.max(...quantizedFiles(later).map((f) => fs.statSync(path.join(later, 'onnx', f)).mtimeMs));
      assert.ok(fs.statSync(stamp).mtimeMs >= newest, 'the stamp is written after the files');
      assert.deepEqual(
        quantizedFiles(later).filter((f) => f.endsWith('.onnx')),
        ['decoder_model_merged', 'embed_tokens', 'vision_encoder'].flatMap((g) => [`${g}_q4.onnx`, `${g}_quantized.onnx`]).sort(),
      );
      assert.deepEqual(fs.readdirSync(root).filter((f) => f.includes('.partial-')), [], 'no partial folders left');

      const again = build(name, later, 'q4');
      assert.deepEqual([again.reused, again.stages], [true, []]);

      const together = path.join(root, `${name}-together`);
      const once = build(name, together, 'q4');
      assert.ok(once.stages.includes('quantized'));
      assertSameFiles(later, together);
    });
  }

  it('a folder holding them without the second stamp (built before) is claimed, not rebuilt; a cut-short add is redone', () => {
    const dir = path.join(root, 'probe-needle-together');
    const stamp = path.join(dir, QUANTIZED_STAMP_FILE);
    const decoder = path.join(dir, 'onnx', 'decoder_model_merged_quantized.onnx');
    fs.rmSync(stamp);
    const before = fs.statSync(decoder).mtimeMs;
    assert.equal(build('probe-needle', dir, 'q8').reused, true);
    assert.equal(fs.statSync(decoder).mtimeMs, before, 'not rebuilt');
    assert.ok(fs.existsSync(stamp), 'claimed by the second stamp');

    // Cut short: some files renamed in, no stamp.
    fs.rmSync(stamp);
    fs.rmSync(path.join(dir, 'onnx', 'decoder_model_merged_q4.onnx'));
    assert.equal(build('probe-needle', dir, 'q8').reused, false);
    assert.ok(fs.existsSync(stamp));
    assertSameFiles(dir, path.join(root, 'probe-needle-later'));
  });

  it('resolveModelDir with a q8 / q4 dtype: a probe name builds them into the cache, a probe folder by path gets them', () => {
    const cache = process.env.VIGIL_CACHE_DIR;
    process.env.VIGIL_CACHE_DIR = path.join(root, 'cache');
    try {
      const fp32 = resolveModelDir('probe-needle', { quiet: true });
      assert.deepEqual(quantizedFiles(fp32), []);
      assert.equal(resolveModelDir('probe-needle', { quiet: true, dtype: 'q8' }), fp32);
      assert.ok(fs.existsSync(path.join(fp32, QUANTIZED_STAMP_FILE)));
      assert.equal(quantizedFiles(fp32).length, 6);
    } finally {
      if (cache === undefined) delete process.env.VIGIL_CACHE_DIR;
      else process.env.VIGIL_CACHE_DIR = cache;
    }
    const byPath = path.join(root, 'by-path');
    build('probe-needle', byPath);
    assert.equal(resolveModelDir(byPath, { quiet: true, dtype: 'fp32' }), byPath);
    assert.deepEqual(quantizedFiles(byPath), [], 'fp32 asks for nothing more');
    resolveModelDir(byPath, { quiet: true, dtype: 'q4' });
    assertSameFiles(byPath, path.join(root, 'probe-needle-later'));
  });

  it('a probe with no q8 files keeps the loader\'s clear error (the dtype and the folder named)', async () => {
    const dir = probeModelDir('probe-random-tiny-gqa', { dtype: 'q8' });
    assert.deepEqual(onnxFiles(dir).filter((f) => f.includes('_quantized')), []);
    await assert.rejects(VisionLanguageModel.load(resolveModelDir(dir, { quiet: true, dtype: 'q8' }), { dtype: 'q8' }), (error: Error) => {
      assert.match(error.message, /_quantized\.onnx not found \(dtype q8\); available: /);
      assert.ok(error.message.includes(path.join(dir, 'onnx')), error.message);
      return true;
    });
  });

  it('`vigil models build --dtype q8` from two processes at once on a folder without them: both succeed, the files equal', async (t) => {
    const dir = path.join(root, 'cli');
    build('probe-random-tiny', dir);
    const args = ['models', 'build', 'probe-random-tiny', '--out', dir, '--dtype', 'q8'];
    const [a, b, refused] = await Promise.all([runVigil(args), runVigil(args), runVigil(['models', 'build', 'probe-needle', '--out', path.join(root, 'refused'), '--dtype', 'q4f16'])]);
    for (const run of [a, b]) {
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout.trim(), dir);
    }
    // Whether both added them depends on timing (one may find them claimed): the outcome must not.
    t.diagnostic(`processes that added the files: ${[a, b].filter((run) => !run.stderr.includes('already built')).length}`);
    assert.ok(fs.existsSync(path.join(dir, QUANTIZED_STAMP_FILE)));
    assertSameFiles(dir, path.join(root, 'probe-random-tiny-together'));
    assert.deepEqual(fs.readdirSync(root).filter((f) => f.includes('.partial-')), [], 'no partial folders left');
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /probe-needle has no q4f16 files \(its dtypes: fp32, q8, q4\)/);
  });
});
