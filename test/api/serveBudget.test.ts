/**
 * Budgets through `vigil serve` as a user runs it (bin/vigil.js in a child process): `--budget`
 * (the default of streams that set none, over the config file's `defaults.budget`),
 * `--disk-budget` (over the config file's `diskBudget`), a config camera's own `budget`, and the
 * budget in force in each stream's status (the smaller of its own and its data-folder share).
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
  settings: { budget: number | null };
  disk: { budgetBytes: number | null; usedBytes: number; percent: number | null } | null;
}

describe('vigil serve budgets', () => {
  it('--budget and --disk-budget override the config file; each stream keeps the smaller of its budget and its share', async () => {
    const clips = await makeClips();
    const dir = tempDir();
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      config,
      `data: ${path.join(dir, 'data')}\nport: 0\ndiskBudget: 100GB\ndefaults: { budget: 5MB, window: 4 }\nurlPolicy:\n  allowFilesDir: ${clips}\n` +
        `cameras:\n  - { id: front, source: "${clips}/a.mp4", window: 4, budget: 600kB }\n`,
    );
    const token = 'env-token-0123456789abcdef';
    const serve = await startServe(['--config', config, '--quiet', '--budget', '0.9MB', '--disk-budget', '2MB'], token);
    let code: number | null = null;
    try {
      const { url, auth } = serve;
      const status = async (id: string) => (await (await fetch(`${url}/v1/streams/${id}`, { headers: auth })).json()) as Status;
      // The camera alone: its own 600 kB is below its share (all 2 MB).
      const front = await waitFor('the camera to be ingested', async () => {
        const s = await status('front');
        return s.state === 'ended' ? s : undefined;
      }, 30_000);
      assert.equal(front.settings.budget, 600_000);
      assert.equal(front.disk?.budgetBytes, 600_000);
      // A stream through the API without a budget takes --budget (0.9 MB, not the config's 5 MB);
      // with two streams the share is 1 MB, above both budgets.
      const res = await fetch(`${url}/v1/streams`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'api', source: 'b.mp4', window: 4 }) });
      assert.equal(res.status, 201, await res.clone().text());
      const api = (await res.json()) as Status;
      assert.equal(api.settings.budget, 900_000);
      assert.equal(api.disk?.budgetBytes, 900_000);
      // A third with a 1 MB budget gets the 666,666-byte share (2 MB / 3), below its own budget.
      const third = await fetch(`${url}/v1/streams`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'third', source: 'b.mp4', window: 4, budget: '1MB' }) });
      assert.equal(third.status, 201, await third.clone().text());
      assert.equal(((await third.json()) as Status).disk?.budgetBytes, 666_666);
      assert.equal((await status('api')).disk?.budgetBytes, 666_666, 'the other streams shrank to the new share');
      assert.equal((await status('front')).disk?.budgetBytes, 600_000);
    } finally {
      code = await serve.stop();
    }
    assert.equal(code, 0, serve.stderr());
  });

  it('a bad --budget, --disk-budget or config diskBudget is a one-line error (exit 2)', async () => {
    const dir = tempDir();
    const flags = [['--budget', 'big'], ['--disk-budget', '-3GB'], ['--budget', '1.5GX']];
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(config, `data: ${path.join(dir, 'data')}\nport: 0\ndiskBudget: plenty\n`);
    // The first case through the binary, the others through the same main() in one process.
    const runs = await runVigilCases([...flags.map((args) => ['serve', '--no-auth', '--port', '0', '--data', dir, ...args]), ['serve', '--no-auth', '--config', config]]);
    for (const [i, args] of flags.entries()) {
      const r = runs[i]!;
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, /size|more than 0|unit/, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    const bad = runs[flags.length]!;
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /diskBudget: is not a size/);
  });
});
