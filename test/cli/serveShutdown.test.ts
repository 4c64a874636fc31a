/**
 * `vigil serve` stops cleanly however it is stopped:
 * - started as users start it (`npx vigil serve`), a SIGTERM sent to the npx process only (as a
 *   supervisor does) stops every process under it within a bounded time, frees the port and the
 *   memories' locks (a second server opens the same data folder);
 * - `node bin/vigil.js serve` ingesting a file stops on SIGTERM with exit code 0 within its bound,
 *   leaves no ffmpeg behind, and a restarted server sees every chunk reported committed before;
 * - the shutdown logic itself: a second signal or the deadline exits at once, with a log line.
 * Only processes these tests started are signalled.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { makeProbeClip } from '../../ingest/index.js';
import { startedByLauncher, type ShutdownProcess, watchShutdown } from '../../src/cli/shutdown.js';
import { disposeSharedModel, startTestServer, tempDir, waitFor } from '../api/helpers.js';

const ROOT = path.resolve('.');
const BIN = path.join(ROOT, 'bin/vigil.js');
/** The server's own bound (--shutdown-timeout default) plus slack for a loaded 2-core machine. */
const SHUTDOWN_BOUND_MS = 10_000;
const SLACK_MS = 5_000;

interface Proc {
  pid: number;
  ppid: number;
  start: string;
  cmd: string;
}

/** Every process on the machine (Linux /proc): pid, parent, start time (guards against pid reuse), command line. */
function processTable(): Proc[] {
  const table: Proc[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue; // exited, waiting for its parent to reap it
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      table.push({ pid: Number(name), ppid: Number(fields[1]), start: fields[19]!, cmd });
    } catch {
      // exited while we looked
    }
  }
  return table;
}

function descendants(root: number): Proc[] {
  const table = processTable();
  const found: Proc[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of table) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

/** Which of these processes (same pid and start time) still run. */
function stillRunning(procs: Proc[]): Proc[] {
  const now = new Map(processTable().map((p) => [p.pid, p.start]));
  return procs.filter((p) => now.get(p.pid) === p.start);
}

/** Kills whatever is left of the processes this test started (cleanup after a failure only). */
function killLeftovers(procs: Proc[]): void {
  for (const p of stillRunning(procs)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

interface Served {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  url: string;
}

async function serve(command: string, args: string[]): Promise<Served> {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, VIGIL_API_TOKENS: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const url = await waitFor('the server to listen', () => /listening on (http:\/\/[^\s]+) /.exec(stderr)?.[1], 60_000);
  await waitFor('ready', async () => (await fetch(`${url}/readyz`)).ok, 60_000);
  return { child, stderr: () => stderr, exited, url };
}

interface StreamState {
  state: string;
  memory: { chunks: number; lastT: number | null } | null;
}

async function streamStatus(url: string, id: string): Promise<StreamState> {
  return (await (await fetch(`${url}/v1/streams/${id}`)).json()) as StreamState;
}

async function createStream(url: string, id: string, source: string, fps: number): Promise<void> {
  const res = await fetch(`${url}/v1/streams`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id, source, fps, window: 4 }) });
  assert.equal(res.status, 201, await res.text());
}

const clipsDir = tempDir('vigil-shutdown-clips-');
const LONG_CLIP = path.join(clipsDir, 'long.mp4');
let clipMade: Promise<unknown> | null = null;
/** A clip long enough that its ingest is still running when the server is stopped. */
function longClip(): Promise<unknown> {
  clipMade ??= makeProbeClip({ out: LONG_CLIP, durationS: 1200, width: 96, height: 64, needles: [{ start: 10, duration: 3, background: 'red', square: 'green' }] });
  return clipMade;
}

after(() => disposeSharedModel());

describe('vigil serve shutdown', () => {
  it('stops every process under `npx vigil serve` when only the npx process gets SIGTERM, and frees the port and data folder', async () => {
    await longClip();
    const data = tempDir('vigil-shutdown-data-');
    const npx = await serve('npx', ['--yes', 'vigil', 'serve', '--port', '0', '--no-auth', '--data', data, '--allow-files', clipsDir, '--quiet']);
    const tree = descendants(npx.child.pid!);
    try {
      await createStream(npx.url, 'cam', LONG_CLIP, 2);
      await waitFor('chunks to be stored', async () => ((await streamStatus(npx.url, 'cam')).memory?.chunks ?? 0) >= 3, 60_000);
      tree.push(...descendants(npx.child.pid!).filter((p) => !tree.some((t) => t.pid === p.pid)));
      const server = tree.find((p) => /bin\/vigil(\.js)? serve/.test(p.cmd) && /node/.test(p.cmd));
      assert.ok(server, `the node server is under npx: ${tree.map((p) => p.cmd).join(' | ')}`);
      assert.ok(tree.some((p) => /ffmpeg/.test(p.cmd)), 'an ffmpeg ingest runs under it');
      const port = Number(new URL(npx.url).port);
      assert.equal(fs.existsSync(path.join(data, 'streams', 'cam')), true);

      const signalledAt = Date.now();
      npx.child.kill('SIGTERM'); // the npx process only, as a supervisor would
      await waitFor('every process under npx to exit', () => stillRunning(tree).length === 0, SHUTDOWN_BOUND_MS + SLACK_MS).catch(() => {
        assert.fail(`still running ${Date.now() - signalledAt} ms after SIGTERM: ${stillRunning(tree).map((p) => `${p.pid} ${p.cmd}`).join(' | ')}\n${npx.stderr()}`);
      });
      const tookMs = Date.now() - signalledAt;
      await npx.exited;
      assert.match(npx.stderr(), /shutting down/, npx.stderr());
      assert.match(npx.stderr(), /stopped/);
      assert.equal(await portFree(port), true, 'the port is free again');
      const locks = fs.readdirSync(path.join(data, 'streams'), { recursive: true }).map(String).filter((f) => path.basename(f) === 'LOCK');
      assert.deepEqual(locks, [], 'no store lock left');

      // A second server opens the same data folder and the stream's memory with it.
      const second = await startTestServer({ dataDir: data, filesDir: clipsDir, manager: { store: { fsync: 'none' } } });
      try {
        const status = second.ready.status('cam');
        assert.notEqual(status.state, 'unavailable', JSON.stringify(status.error));
        assert.ok((status.memory?.chunks ?? 0) >= 3);
        await second.ready.stop('cam');
      } finally {
        await second.close();
      }
      process.stderr.write(`# npx tree gone ${tookMs} ms after SIGTERM to npx: ${tree.map((p) => p.cmd.split(' ').slice(0, 3).join(' ')).join(' | ')}\n`);
    } finally {
      npx.child.kill('SIGKILL');
      killLeftovers(tree);
    }
  });

  it('node bin/vigil.js serve: SIGTERM during ingest exits 0 within the bound, no ffmpeg left, nothing committed is lost', async () => {
    await longClip();
    const data = tempDir('vigil-shutdown-data-');
    const served = await serve(process.execPath, [BIN, 'serve', '--port', '0', '--no-auth', '--data', data, '--allow-files', clipsDir, '--quiet']);
    const tree: Proc[] = [];
    try {
      await createStream(served.url, 'cam', LONG_CLIP, 2);
      await waitFor('chunks to be stored', async () => ((await streamStatus(served.url, 'cam')).memory?.chunks ?? 0) >= 5, 60_000);
      tree.push(...descendants(served.child.pid!));
      const ffmpeg = tree.filter((p) => /ffmpeg/.test(p.cmd));
      assert.ok(ffmpeg.length > 0, `an ffmpeg ingest runs: ${tree.map((p) => p.cmd).join(' | ')}`);
      const before = await streamStatus(served.url, 'cam');
      assert.equal(before.state, 'processing', 'the ingest is still running when the signal comes');

      const signalledAt = Date.now();
      served.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([served.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), SHUTDOWN_BOUND_MS + SLACK_MS)))]);
      clearTimeout(timer);
      assert.ok(exit, `no exit ${SHUTDOWN_BOUND_MS + SLACK_MS} ms after SIGTERM\n${served.stderr()}`);
      assert.equal(exit.code, 0, served.stderr());
      assert.ok(exit.at - signalledAt < SHUTDOWN_BOUND_MS, `exited ${exit.at - signalledAt} ms after SIGTERM`);
      assert.doesNotMatch(served.stderr(), /forced/);
      assert.deepEqual(stillRunning(ffmpeg).map((p) => p.cmd), [], 'no ffmpeg left');
      assert.deepEqual(stillRunning(tree).map((p) => p.cmd), [], 'no child process left');

      // Everything reported committed before the signal is there after a restart.
      const second = await startTestServer({ dataDir: data, filesDir: clipsDir, manager: { store: { fsync: 'none' } } });
      try {
        await second.ready.stop('cam'); // the restored stream resumes its file; stop it to look at what was kept
        const after = second.ready.status('cam');
        assert.ok((after.memory?.chunks ?? 0) >= before.memory!.chunks, `chunks ${after.memory?.chunks} >= ${before.memory!.chunks}`);
        assert.ok((after.memory?.lastT ?? -1) >= (before.memory!.lastT ?? 0), `lastT ${after.memory?.lastT} >= ${before.memory!.lastT}`);
      } finally {
        await second.close();
      }
      process.stderr.write(`# serve exited 0 ${exit.at - signalledAt} ms after SIGTERM with ${before.memory!.chunks}+ chunks committed\n`);
    } finally {
      served.child.kill('SIGKILL');
      killLeftovers(tree);
    }
  });

  it('a second signal exits at once, the deadline forces an exit, a launcher exit counts as a stop', async () => {
    class FakeProcess extends EventEmitter {
      ppid = 4242;
      env: NodeJS.ProcessEnv = { npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' };
      exits: number[] = [];
      exit(code: number): void {
        this.exits.push(code);
      }
    }
    const fake = (): FakeProcess & ShutdownProcess => new FakeProcess() as FakeProcess & ShutdownProcess;

    const lines: string[] = [];
    const a = fake();
    const first = watchShutdown({ log: (l) => lines.push(l), graceMs: 60_000, process: a });
    a.emit('SIGTERM');
    assert.equal(await first.requested, 'SIGTERM');
    a.emit('SIGINT');
    assert.deepEqual(a.exits, [130]);
    assert.match(lines.join('\n'), /second SIGINT: exiting now/);
    first.finished();

    const b = fake();
    const stuck = watchShutdown({ log: (l) => lines.push(l), graceMs: 50, process: b });
    b.emit('SIGHUP');
    assert.equal(await stuck.requested, 'SIGHUP');
    await waitFor('the forced exit', () => b.exits.length > 0, 2000);
    assert.deepEqual(b.exits, [1]);
    assert.match(lines.join('\n'), /did not finish within 0.05 s: exiting now \(forced\)/);

    const c = fake();
    const orphan = watchShutdown({ log: () => {}, graceMs: 60_000, parentPollMs: 10, process: c });
    assert.equal(orphan.watchingParent, true);
    c.ppid = 1; // the launcher died: reparented to init
    const keepAlive = setInterval(() => {}, 1000); // the poll is unref'd (a server holds the loop open)
    assert.equal(await orphan.requested, 'launcher (pid 4242) exited');
    clearInterval(keepAlive);
    orphan.finished();

    assert.equal(startedByLauncher({}), false, 'started directly (a shell, systemd): no launcher watch');
    assert.equal(startedByLauncher({ npm_lifecycle_event: 'npx' }), true);
    assert.equal(startedByLauncher({ npm_command: 'exec', VIGIL_EXIT_WITH_PARENT: '0' }), false);
    assert.equal(startedByLauncher({ VIGIL_EXIT_WITH_PARENT: '1' }), true);
  });
});
