/** VIGIL_FFMPEG takes a path or the words 'bundled' / 'system' (the README's fresh-machine path uses the bundled build). */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { runVigil } from '../helpers/runVigil.js';

it('VIGIL_FFMPEG=bundled and a bad path', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ffmpeg-env-'));
  try {
    const { clip } = await makeProbeClip({ out: path.join(dir, 'clip.mp4'), durationS: 3, needles: [] });
    const bundled = await runVigil(['source', 'check', clip, '--frames', '2'], { VIGIL_FFMPEG: 'bundled' });
    assert.equal(bundled.code, 0, bundled.stderr);
    assert.match(bundled.stdout, /\[bundled\]/);
    const missing = await runVigil(['source', 'check', clip, '--frames', '2'], { VIGIL_FFMPEG: path.join(dir, 'no-ffmpeg') });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /does not exist or is not executable/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
