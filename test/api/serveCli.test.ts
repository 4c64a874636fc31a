/**
 * `vigil serve` as a user runs it (bin/vigil.js in a child process): it refuses to start without a
 * token unless auth is explicitly off, takes tokens from the environment and cameras from a config
 * file, serves until SIGTERM, and then shuts down cleanly (memories saved, exit code 0).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { VigilRun } from '../helpers/runVigil.js';
import { runVigilCases } from '../helpers/vigilBatch.js';
import { startServe } from '../helpers/serveProcess.js';
import { makeClips, question, tempDir, waitFor } from './helpers.js';

describe('vigil serve', () => {
  it('refuses to start without a token, or with a short one, in one line (exit 2)', async () => {
    const data = tempDir();
    // The first case through the binary, the others through the same main() in one process.
    const [none, short, badConfig] = (await runVigilCases([
      { args: ['serve', '--port', '0', '--data', data], env: { VIGIL_API_TOKENS: '', VIGIL_API_TOKEN: '' } },
      ['serve', '--port', '0', '--data', data, '--token', 'abc'],
      ['serve', '--config', path.join(data, 'missing.yaml')],
    ])) as [VigilRun, VigilRun, VigilRun];
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /no API token.*--no-auth/);
    assert.equal(none.stderr.trim().split('\n').length, 1);
    assert.equal(short.code, 2);
    assert.match(short.stderr, /at least 16 characters/);
    assert.equal(badConfig.code, 2);
    assert.match(badConfig.stderr, /config file not found/);
  });

  it('serves the config file cameras with a token from the environment, and stops cleanly on SIGTERM', async () => {
    const clips = await makeClips();
    const dir = tempDir();
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(config, `data: ${path.join(dir, 'data')}\nport: 0\nurlPolicy:\n  allowFilesDir: ${clips}\ncameras:\n  - { id: front, source: "\${CLIP_DIR}/a.mp4", window: 4 }\n`);
    const token = 'env-token-0123456789abcdef';
    const serve = await startServe(['--config', config, '--quiet'], token, { CLIP_DIR: clips });
    let code: number | null = null;
    try {
      const { url, auth } = serve;
      assert.equal((await fetch(`${url}/v1/streams`)).status, 401);
      await waitFor('the camera to be ingested', async () => {
        const s = (await (await fetch(`${url}/v1/streams/front`, { headers: auth })).json()) as { state: string };
        return s.state === 'ended';
      }, 30_000);
      const res = await fetch(`${url}/v1/streams/front/questions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ question: question('red'), r: 4 }) });
      assert.equal(((await res.json()) as { text: string }).text, 'green');
    } finally {
      code = await serve.stop();
    }
    const stderr = serve.stderr();
    assert.equal(code, 0, stderr);
    assert.match(stderr, /shutting down/);
    assert.ok(!stderr.includes(token), 'the token is never printed');
    assert.ok(fs.existsSync(path.join(dir, 'data', 'streams', 'front', 'index')), 'the index was saved on shutdown');
  });
});
