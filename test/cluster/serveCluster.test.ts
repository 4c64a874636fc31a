/**
 * `vigil serve --cluster` refusing to start, as real processes against a real nats-server on
 * 127.0.0.1: nothing listening at the NATS address, an address the URL policy refuses, a node id
 * that a live node already has. Each is one clear line and exit code 2 (a configuration to fix), never a stack, and the
 * second node's refusal leaves the first one serving.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/freePort.js';
import { NATS_MISSING, type NatsServer, startNats } from '../helpers/natsServer.js';
import { type ServeProcess, startServe } from '../helpers/serveProcess.js';

const TOKEN = 'serve-cluster-test-token';
const BIN = path.resolve('bin/vigil.js');

/** Runs `vigil serve ...` to its exit (it must exit by itself); its code and stderr. */
function serveUntilExit(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, VIGIL_API_TOKENS: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vigil serve did not exit within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('vigil serve --cluster: refusals at start', { skip: NATS_MISSING }, () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-serve-cluster-'));
  let nats: NatsServer;
  let first: ServeProcess | null = null;
  const common = (id: string) => ['--port', '0', '--data', path.join(scratch, id), '--model', 'probe-random-tiny', '--quiet'];

  before(async () => {
    nats = await startNats();
  });
  after(async () => {
    await first?.stop();
    await nats.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('names the NATS address nothing listens at, and an address the URL policy refuses', async () => {
    const port = await freePort();
    const down = await serveUntilExit([...common('a'), '--allow-network', '127.0.0.0/8', '--cluster', `nats://127.0.0.1:${port}`]);
    assert.equal(down.code, 2, down.stderr);
    assert.match(down.stderr, new RegExp(`cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(down.stderr, /\n\s+at /, 'no stack');

    const refused = await serveUntilExit([...common('b'), '--cluster', nats.url]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /refused by the URL policy|URL policy/);
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack');
  });

  it('refuses a second node with a live node\'s id, and the first keeps serving', async () => {
    first = await startServe([...common('n1'), '--allow-network', '127.0.0.0/8', '--cluster', nats.url, '--node-id', 'n1'], TOKEN);
    const second = await serveUntilExit([...common('n1b'), '--allow-network', '127.0.0.0/8', '--cluster', nats.url, '--node-id', 'n1']);
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /node id 'n1' is in use by a live node/);
    assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack');
    const cluster = (await (await fetch(`${first.url}/v1/cluster`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json()) as { node: string; nodes: Array<{ nodeId: string }> };
    assert.equal(cluster.node, 'n1');
    assert.deepEqual(cluster.nodes.map((n) => n.nodeId), ['n1']);
  });
});
