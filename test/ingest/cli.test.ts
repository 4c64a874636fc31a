/**
 * The two commands end to end through bin/vigil.js: `vigil clip make` writes a clip and its ground
 * truth, `vigil source check` reports it; bad input exits with code 2 and one clear line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../fixtures/ingestClips.js';
import { runVigilCases } from '../helpers/vigilBatch.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function vigil(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), ...args], { encoding: 'utf8', timeout: 120_000, cwd: ROOT });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('vigil clip make / vigil source check', () => {
  const dir = tempDir('vigil-ingest-cli-');
  const clip = path.join(dir, 'probe.mp4');

  it('makes a probe clip with its ground truth', () => {
    const r = vigil('clip', 'make', '--out', clip, '--duration', '20', '--size', '160x90', '--needle', '5:red:green', '--needle', '12.5:blue:yellow:3', '--json');
    assert.equal(r.code, 0, r.stderr);
    const truth = JSON.parse(r.stdout);
    assert.deepEqual(truth.needles.map((n: { start: number; end: number; background: string; square: string }) => [n.start, n.end, n.background, n.square]), [
      [5, 9, 'red', 'green'],
      [12.5, 15.5, 'blue', 'yellow'],
    ]);
    assert.deepEqual([truth.width, truth.height, truth.durationS], [160, 90, 20]);
    assert.ok(fs.statSync(clip).size > 1000);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'probe.json'), 'utf8')).needles, truth.needles);
  });

  it('checks the clip: container, codec, size, native fps and sampled timestamps', () => {
    const r = vigil('source', 'check', clip, '--fps', '0.5', '--frames', '4', '--json');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.match(report.container, /mp4/);
    assert.deepEqual([report.codec, report.width, report.height, report.nativeFps, report.durationS], ['h264', 160, 90, 10, 20]);
    assert.deepEqual(report.frames.map((f: { t: number }) => f.t), [0, 2, 4, 6]);
    const text = vigil('source', 'check', clip, '--frames', '2', '--size', '80x45');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^video +h264 \(High\), 160x90, 10 fps/m);
    assert.match(text.stdout, /t= +1\.000 s +80x45/);
  });

  it('bad input: exit code 2 and one line, no stack trace', async () => {
    const notVideo = path.join(dir, 'notes.mp4');
    fs.writeFileSync(notVideo, 'hello\n');
    const cases = [
      [['source', 'check', 'ftp://example.com/x.mp4'], /scheme "ftp:" is not allowed/],
      [['source', 'check', notVideo], /not a video/],
      [['source', 'check', path.join(dir, 'missing.mp4')], /not found/],
      [['clip', 'make', '--out', path.join(dir, 'x.mp4'), '--needle', '5:red:teal'], /unknown colour "teal"/],
      [['clip', 'make', '--out', path.join(dir, 'x.mp4'), '--duration', '10', '--needle', '8:red:green'], /past the end/],
    ] as const;
    // One real spawn per command (source, clip); the other cases through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => [...args]), [0, 3]);
    for (const [i, [args, pattern]] of cases.entries()) {
      const r = runs[i]!;
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });
});
