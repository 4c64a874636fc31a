/**
 * A build killed mid-way leaves `<target>.partial-<pid>` behind (a probe folder is hundreds of MB).
 * The next build of the same target removes the partials of processes that are gone and keeps those
 * of live processes (a concurrent build). Real files, real builds; the dead pid is that of a node
 * process that has exited, the live ones this test's own process and a sleeping child.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeStalePartials } from '../../common/stalePartials.js';
import { defaultTestImage } from '../../src/cli/defaultImage.js';
import { contentHash } from '../../src/engine/fileFingerprint.js';
import { prepareQueryTaps, queryTapCacheEntry } from '../../src/model/onnx/queryTapSurgery.js';
import { buildProbeFolder, buildProbeModel } from '../../src/model/probe/probeModelFolder.js';
import { addQuantizedFiles } from '../../src/model/probe/probeQuantizedFiles.js';
import { findProbeSpec } from '../../src/model/probe/probeSpecs.js';

/** The pid of a process that has exited (it may be reused later, but not within this test's instants). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  assert.equal(child.status, 0);
  assert.throws(() => process.kill(child.pid!, 0), { code: 'ESRCH' });
  return child.pid!;
}

/** A partial folder (one file inside, as a killed build leaves) or file. */
function plantFolder(target: string, pid: number, kind = 'partial'): string {
  const dir = `${target}.${kind}-${pid}`;
  fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'onnx', 'half-written.onnx'), Buffer.alloc(1024));
  return dir;
}

function plantFile(target: string, pid: number): string {
  const file = `${target}.partial-${pid}`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'half written');
  return file;
}

describe('stale partials of killed builds', () => {
  let root: string;
  let sleeper: ChildProcess;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-partials-'));
    // Stands in for a concurrent build in another process.
    sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
  });
  after(() => {
    sleeper.kill();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('removes partials of gone processes only; live pids, other targets and other names are kept', () => {
    const target = path.join(root, 'unit', 'model');
    const dead = deadPid();
    const gone = [plantFolder(target, dead), plantFolder(target, dead, 'partial-quantized'), plantFile(`${target}`, deadPid())];
    const kept = [
      plantFolder(target, process.pid),
      plantFolder(target, sleeper.pid!, 'partial-quantized'),
      plantFolder(`${target}-other`, dead),
      plantFile(`${target}.json`, dead),
      `${target}.partial-notapid`,
      `${target}.partial-quantized-${dead}-x`,
    ];
    fs.writeFileSync(kept[4]!, '');
    fs.writeFileSync(kept[5]!, '');
    // pid 1 is alive: kill(1, 0) succeeds as root, else EPERM; either way it is not ours to remove.
    kept.push(plantFolder(target, 1));

    assert.deepEqual(removeStalePartials(target).sort(), gone.sort());
    for (const file of gone) assert.ok(!fs.existsSync(file), `${file} removed`);
    for (const file of kept) assert.ok(fs.existsSync(file), `${file} kept`);
  });

  it('a target with no partials, or whose folder does not exist, is fine', () => {
    const target = path.join(root, 'empty', 'model');
    fs.mkdirSync(target, { recursive: true });
    assert.deepEqual(removeStalePartials(target), []);
    assert.ok(fs.existsSync(target), 'the target itself is never touched');
    assert.deepEqual(removeStalePartials(path.join(root, 'nowhere', 'model')), []);
  });

  it('the next probe folder build removes a dead build\'s partial folder and keeps a live one', () => {
    const dir = path.join(root, 'probe', 'probe-random-tiny');
    const dead = plantFolder(dir, deadPid());
    const live = plantFolder(dir, sleeper.pid!);
    assert.equal(buildProbeModel('probe-random-tiny', { outDir: dir }).reused, false);
    assert.ok(!fs.existsSync(dead), 'the dead build\'s partial is removed');
    assert.ok(fs.existsSync(live), 'a live build\'s partial is kept');
    assert.ok(!fs.existsSync(`${dir}.partial-${process.pid}`), 'this build left none of its own');

    // A complete folder reused as it is still clears what a killed rebuild left.
    const deadAgain = plantFolder(dir, deadPid());
    assert.equal(buildProbeModel('probe-random-tiny', { outDir: dir }).reused, true);
    assert.ok(!fs.existsSync(deadAgain));
    assert.ok(fs.existsSync(live));
  });

  it('a `vigil models build` killed mid-build leaves its partial; the next build of that folder removes it', async () => {
    const outDir = path.join(root, 'killed', 'model');
    // The 256m probe takes seconds to write, so the partial is there to be caught.
    const child = spawn(process.execPath, [path.resolve('bin/vigil.js'), 'models', 'build', 'probe-random-smolvlm2-256m', '--out', outDir], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const partial = `${outDir}.partial-${child.pid}`;
    const deadline = Date.now() + 120_000;
    while (!fs.existsSync(path.join(partial, 'onnx')) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    assert.ok(fs.existsSync(partial), 'the killed build left its partial');
    assert.ok(!fs.existsSync(outDir), 'and no folder');

    // Any build into that folder cleans it; the tiny probe's is quick.
    buildProbeFolder(findProbeSpec('probe-random-tiny')!, { outDir });
    assert.ok(!fs.existsSync(partial), 'the next build removed it');
  });

  it('adding the quantized files removes a dead add\'s partial and keeps a live one', () => {
    const spec = findProbeSpec('probe-random-tiny')!;
    const { dir } = buildProbeFolder(spec, { outDir: path.join(root, 'quantized', 'model') });
    const dead = plantFolder(dir, deadPid(), 'partial-quantized');
    const live = plantFolder(dir, sleeper.pid!, 'partial-quantized');
    addQuantizedFiles(dir, spec, 0, fs.readFileSync(path.join(dir, 'vigil-probe.json'), 'utf8'));
    assert.ok(!fs.existsSync(dead), 'the dead add\'s partial is removed');
    assert.ok(fs.existsSync(live), 'a live add\'s partial is kept');
    assert.ok(fs.existsSync(path.join(dir, 'onnx', 'decoder_model_merged_quantized.onnx')), 'the add itself still works');
  });

  it('the query-tap surgery copy removes a dead copy\'s partial', () => {
    const spec = { ...findProbeSpec('probe-random-tiny')!, name: 'probe-tiny-no-taps', queryTaps: false };
    const { dir } = buildProbeFolder(spec, { outDir: path.join(root, 'surgery', 'model') });
    const decoder = path.join(dir, 'onnx', 'decoder_model_merged.onnx');
    const cache = path.join(root, 'surgery', 'cache');
    const copy = path.join(queryTapCacheEntry(decoder, cache), 'decoder_model_merged.onnx');
    const dead = plantFile(copy, deadPid());
    const live = plantFile(copy, sleeper.pid!);
    const prepared = prepareQueryTaps(decoder, cache);
    assert.equal(prepared.kind, 'candidate', `prepared ${prepared.kind}`);
    assert.ok(fs.existsSync(copy), 'the copy is written');
    assert.ok(!fs.existsSync(dead));
    assert.ok(fs.existsSync(live));
  });

  it('the content-hash cache and the default test image remove dead partials of their files', async () => {
    const cacheFile = path.join(root, 'hashes', 'hashes.json');
    const deadHash = plantFile(cacheFile, deadPid());
    const liveHash = plantFile(cacheFile, sleeper.pid!);
    const video = path.join(root, 'hashes', 'clip.bin');
    fs.writeFileSync(video, 'bytes');
    assert.match(await contentHash(video, cacheFile), /^[0-9a-f]{64}$/);
    assert.ok(!fs.existsSync(deadHash));
    assert.ok(fs.existsSync(liveHash));

    const saved = process.env.VIGIL_CACHE_DIR;
    process.env.VIGIL_CACHE_DIR = path.join(root, 'image-cache');
    try {
      const image = path.join(root, 'image-cache', 'images', 'test-card-red-on-blue.png');
      const deadImage = plantFile(image, deadPid());
      assert.equal(await defaultTestImage(), image);
      assert.ok(!fs.existsSync(deadImage));
    } finally {
      if (saved === undefined) delete process.env.VIGIL_CACHE_DIR;
      else process.env.VIGIL_CACHE_DIR = saved;
    }
  });
});
