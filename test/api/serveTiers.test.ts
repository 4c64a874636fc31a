/**
 * Memory tiers through `vigil serve` as a user runs it (bin/vigil.js in a child process): the config
 * file's `defaults.tiers` and a camera's own `tiers`, `--keep-full` / `--kv-share` / `--no-archive`
 * over the file's defaults field by field, the tiers in each stream's status before and after a
 * restart of the process; bad values in flags or the config file are one-line errors.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runVigilCases } from '../helpers/vigilBatch.js';
import { startServe } from '../helpers/serveProcess.js';
import { makeClips, tempDir, waitFor } from './helpers.js';

interface Status {
  state: string;
  settings: { tiers: { keepFullSec: number; kvShare: number; archive: boolean } };
}

describe('vigil serve tiers', () => {
  it('config defaults, camera tiers and flags combine field by field, and survive a restart', async () => {
    const clips = await makeClips();
    const dir = tempDir();
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      config,
      `data: ${path.join(dir, 'data')}\nport: 0\ndefaults: { budget: 2MB, window: 4, tiers: { keepFullSec: 900, kvShare: 0.3 } }\nurlPolicy:\n  allowFilesDir: ${clips}\n` +
        `cameras:\n  - { id: front, source: "${clips}/a.mp4", window: 4, budget: 2MB, tiers: { kvShare: 0.5 } }\n`,
    );
    const token = 'env-token-0123456789abcdef';
    const args = ['--config', config, '--quiet', '--kv-share', '0.6', '--no-archive'];
    const run = async (check: (status: (id: string) => Promise<Status>, serve: { url: string; auth: { Authorization: string } }) => Promise<void>) => {
      const serve = await startServe(args, token);
      let code: number | null = null;
      try {
        const status = async (id: string) => (await (await fetch(`${serve.url}/v1/streams/${id}`, { headers: serve.auth })).json()) as Status;
        await check(status, serve);
      } finally {
        code = await serve.stop();
      }
      assert.equal(code, 0, serve.stderr());
    };
    await run(async (status, { url, auth }) => {
      // The camera: its own kvShare, keepFullSec from the file's defaults, archive off from the flag.
      const front = await waitFor('the camera to be ingested', async () => {
        const s = await status('front');
        return s.state === 'ended' ? s : undefined;
      }, 30_000);
      assert.deepEqual(front.settings.tiers, { keepFullSec: 900, kvShare: 0.5, archive: false });
      // A stream through the API without tiers: --kv-share (0.6) over the file's 0.3.
      const res = await fetch(`${url}/v1/streams`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'api', source: 'b.mp4', window: 4 }) });
      assert.equal(res.status, 201, await res.clone().text());
      assert.deepEqual(((await res.json()) as Status).settings.tiers, { keepFullSec: 900, kvShare: 0.6, archive: false });
      // Its own fields win.
      const own = await fetch(`${url}/v1/streams`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'own', source: 'b.mp4', window: 4, tiers: { keepFullSec: 10, archive: true } }) });
      assert.equal(own.status, 201, await own.clone().text());
      assert.deepEqual(((await own.json()) as Status).settings.tiers, { keepFullSec: 10, kvShare: 0.6, archive: true });
      await waitFor('the API streams to be ingested', async () => ((await status('api')).state === 'ended' && (await status('own')).state === 'ended') || undefined, 30_000);
    });
    // Restarted with the same command: every stream keeps its tiers.
    await run(async (status) => {
      assert.deepEqual((await status('front')).settings.tiers, { keepFullSec: 900, kvShare: 0.5, archive: false });
      assert.deepEqual((await status('api')).settings.tiers, { keepFullSec: 900, kvShare: 0.6, archive: false });
      assert.deepEqual((await status('own')).settings.tiers, { keepFullSec: 10, kvShare: 0.6, archive: true });
    });
  });

  it('a bad --kv-share, --keep-full or config tiers is a one-line error (exit 2)', async () => {
    const dir = tempDir();
    const flagCases = [
      [['--kv-share', '1.5'], /--kv-share.*from 0 to 1, got '1\.5'/],
      [['--kv-share', 'half'], /--kv-share.*from 0 to 1/],
      [['--keep-full', '-1'], /--keep-full.*seconds >= 0, got '-1'/],
    ] as const;
    const configCases = [
      [`defaults: { tiers: { kvShare: 2 } }\n`, /defaults\.tiers\.kvShare/],
      [`cameras:\n  - { id: x, source: "rtsp://cam.example.com/s", tiers: { keepFullSec: -3 } }\n`, /cameras\.0\.tiers\.keepFullSec/],
    ] as const;
    const configs = configCases.map(([yaml], i) => {
      const config = path.join(dir, `vigil-${i}.yaml`);
      fs.writeFileSync(config, `data: ${path.join(dir, 'data')}\nport: 0\n${yaml}`);
      return config;
    });
    // The first case through the binary, the others through the same main() in one process.
    const runs = await runVigilCases([
      ...flagCases.map(([args]) => ['serve', '--no-auth', '--port', '0', '--data', dir, ...args]),
      ...configs.map((config) => ['serve', '--no-auth', '--config', config]),
    ]);
    for (const [i, [args, message]] of flagCases.entries()) {
      const r = runs[i]!;
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, message, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    for (const [i, [, message]] of configCases.entries()) {
      const bad = runs[flagCases.length + i]!;
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message, bad.stderr);
    }
  });
});
