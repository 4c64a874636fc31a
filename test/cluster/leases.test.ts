/**
 * Stream leases and fencing (src/cluster/leases.ts, fencing.ts) against a real nats-server with
 * JetStream on 127.0.0.1 (test/helpers/natsServer.ts), each "node" its own NATS connection:
 * three nodes racing for leases (one winner each); renewals holding a lease past its TTL; a
 * released lease taken at once with epoch + 1; a node cut off by a partition hearing `lost` within
 * its TTL, before any other node takes over with epoch + 1; a frozen owner (test hook, and a real
 * child process under SIGSTOP) fenced after its lease moved, even before its own timers run;
 * NATS killed and restarted: leases renew again after a short outage, and a node learns it lost
 * them in a long one.
 *
 * Short times: lease TTL 1.5 s (3 s where NATS restarts), renew every 0.5 s, skew grace 0.2 s.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isVigilError } from '../../common/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { openBuckets } from '../../src/cluster/buckets.js';
import { type LeaseEvent, LeaseManager, type LeaseOptions } from '../../src/cluster/leases.js';
import { type ClusterConnection, connectNats } from '../../src/cluster/natsConnection.js';
import { NATS_MISSING, type NatsServer, startNats, startRelay } from '../helpers/natsServer.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const TTL = 1500;
const SKEW = 200;

async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface TestNode {
  conn: ClusterConnection;
  leases: LeaseManager;
  events: (LeaseEvent & { at: number })[];
}

describe('cluster: stream leases and fencing', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  const nodes: TestNode[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  const node = async (nodeId: string, options: Partial<LeaseOptions> & { url?: string } = {}): Promise<TestNode> => {
    const conn = await connectNats({ servers: options.url ?? nats.url, policy, name: nodeId, reconnectWaitMs: 100, requestTimeoutMs: 1000 });
    const buckets = await openBuckets(conn);
    const leases = new LeaseManager(buckets.leases, { nodeId, ttlMs: TTL, renewMs: 500, skewMs: SKEW, ...options });
    const events: TestNode['events'] = [];
    leases.on((e) => events.push({ ...e, at: performance.now() }));
    const n = { conn, leases, events };
    nodes.push(n);
    return n;
  };
  before(async () => (nats = await startNats()));
  after(async () => {
    for (const n of nodes) {
      await n.leases.close();
      await n.conn.close();
    }
    for (const c of cleanups) await c();
    await nats?.stop();
  });

  it('three nodes racing for six leases: exactly one wins each, at epoch 1; the others are refused while it lives', async () => {
    const racers = [await node('r1'), await node('r2'), await node('r3')];
    const streams = ['s1', 's2', 's3', 's4', 's5', 's6'];
    for (const s of streams) {
      const results = await Promise.all(racers.map((r) => r.leases.acquire(s)));
      const winners = results.map((l, i) => (l ? racers[i]! : null)).filter((r) => r !== null);
      assert.equal(winners.length, 1, `${s}: ${winners.length} winners`);
      const state = await racers[0]!.leases.read(s);
      assert.equal(state?.value.owner, winners[0]!.leases.nodeId);
      assert.equal(state?.value.epoch, 1);
    }
    // Renewals keep every lease past twice its TTL; nobody else gets one.
    await sleep(TTL * 2);
    for (const s of streams) {
      const owners = racers.filter((r) => r.leases.holding(s));
      assert.equal(owners.length, 1, `${s} held by ${owners.length}`);
      for (const r of racers) if (!r.leases.holding(s)) assert.equal(await r.leases.acquire(s), null);
      assert.equal((await racers[0]!.leases.read(s))?.value.epoch, 1, 'renewals keep the epoch');
    }
    assert.deepEqual(racers.flatMap((r) => r.events.filter((e) => e.kind === 'lost')), []);
    // A released lease is free at once: the next node takes it with epoch 2.
    const holder = racers.find((r) => r.leases.holding('s1'))!;
    const other = racers.find((r) => r !== holder)!;
    await holder.leases.release('s1');
    const taken = await other.leases.acquire('s1');
    assert.equal(taken?.epoch, 2);
  });

  it('a partitioned owner hears `lost` within its TTL and is fenced before another node takes over with epoch + 1', async () => {
    const relay = await startRelay(nats.port);
    cleanups.push(() => relay.close());
    const a = await node('cut-a', { url: relay.url });
    const b = await node('cut-b');
    const held = await a.leases.acquire('yard');
    assert.equal(held?.epoch, 1);
    const fence = a.leases.fence('yard');
    fence.assertCurrent();
    await fence.assertCurrentInKv();
    await sleep(300);
    const cut = performance.now();
    await relay.cut();
    const lost = await waitFor('the lost event', () => a.events.find((e) => e.kind === 'lost'));
    assert.equal(lost.reason, 'expired');
    assert.ok(lost.at - cut <= TTL + 100, `lost ${(lost.at - cut).toFixed(0)} ms after the cut (TTL ${TTL})`);
    assert.throws(() => fence.assertCurrent(), (e) => isVigilError(e) && e.code === 'STREAM_UNAVAILABLE' && /may no longer write it under epoch 1/.test(e.message));
    // The other node may take it only after expiresAt + skew: after the owner stopped itself.
    const takeover = await waitFor('the takeover', () => b.leases.acquire('yard'));
    const tookAt = performance.now();
    assert.equal(takeover.epoch, 2);
    assert.ok(tookAt > lost.at, 'never two owners: the new one starts after the old one stopped');
    b.leases.fence('yard').assertCurrent();
    // The partition heals: the old owner reconnects, sees the new owner, cannot take it back.
    await relay.restore();
    await waitFor('the reconnect', () => a.conn.connected);
    assert.equal(await a.leases.acquire('yard'), null);
    assert.deepEqual((await a.leases.read('yard'))?.value, { owner: 'cut-b', epoch: 2, expiresAt: (await a.leases.read('yard'))!.value.expiresAt });
    assert.equal(a.events.filter((e) => e.kind === 'lost').length, 1, 'told once');
  });

  it('a frozen owner (no renews, no timers) is fenced after its lease moved, and hears `taken` when it resumes', async () => {
    const a = await node('frozen-a');
    const b = await node('frozen-b');
    assert.equal((await a.leases.acquire('gate'))?.epoch, 1);
    const fence = a.leases.fence('gate');
    a.leases.freezeForTest(true);
    const takeover = await waitFor('the takeover', () => b.leases.acquire('gate'));
    assert.equal(takeover.epoch, 2);
    // The frozen node still "holds" it in memory (no timer of its own ran), yet cannot commit.
    assert.equal(a.events.length, 1, 'only its acquisition: nothing told it yet');
    assert.throws(() => fence.assertCurrent(), (e) => isVigilError(e) && /lease ran out/.test(e.message));
    await assert.rejects(fence.assertCurrentInKv(), (e) => isVigilError(e) && e.code === 'STREAM_UNAVAILABLE');
    assert.equal(fence.current, false);
    a.leases.freezeForTest(false);
    const lost = await waitFor('the lost event', () => a.events.find((e) => e.kind === 'lost'));
    assert.equal(lost.streamId, 'gate');
    // Resumed: its expiry timer fires first (the TTL ran out), or a renew fails its compare-and-set.
    assert.ok(lost.reason === 'expired' || (lost.reason === 'taken' && lost.owner === 'frozen-b' && lost.ownerEpoch === 2), JSON.stringify(lost));
    const bFence = b.leases.fence('gate');
    bFence.assertCurrent();
    await bFence.assertCurrentInKv();
  });

  it('a renew that fails its compare-and-set reports `taken` with the new owner and epoch', async () => {
    const a = await node('cas-a');
    const b = await node('cas-b');
    assert.equal((await a.leases.acquire('dock'))?.epoch, 1);
    // Another node takes the lease while this one still counts it as live (as after a clock jump).
    const state = await b.leases.read('dock');
    const kv = (await openBuckets(b.conn)).leases;
    await kv.update('stream.dock', new TextEncoder().encode(JSON.stringify({ owner: 'cas-b', epoch: 2, expiresAt: Date.now() + TTL })), state!.revision);
    const lost = await waitFor('the lost event', () => a.events.find((e) => e.kind === 'lost'), 2000);
    assert.deepEqual({ reason: lost.reason, owner: lost.owner, ownerEpoch: lost.ownerEpoch }, { reason: 'taken', owner: 'cas-b', ownerEpoch: 2 });
    assert.equal(a.leases.holding('dock'), undefined);
  });

  it('a stale owner frozen by SIGSTOP (a real process) cannot write after its lease moved', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-fence-'));
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const journal = path.join(dir, 'writes.log');
    const script = path.join(dir, 'owner.mts');
    const mod = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, p)).href);
    // The child holds the lease and appends a line every 20 ms, each one through the fence.
    fs.writeFileSync(
      script,
      `import fs from 'node:fs';
import { OutboundPolicy } from ${mod('ingest/net/outboundPolicy.ts')};
import { openBuckets } from ${mod('src/cluster/buckets.ts')};
import { LeaseManager } from ${mod('src/cluster/leases.ts')};
import { connectNats } from ${mod('src/cluster/natsConnection.ts')};
const conn = await connectNats({ servers: ${JSON.stringify(nats.url)}, policy: new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] }) });
const leases = new LeaseManager((await openBuckets(conn)).leases, { nodeId: 'child', ttlMs: ${TTL}, renewMs: 500, skewMs: ${SKEW} });
const held = await leases.acquire('cam');
if (!held) throw new Error('no lease');
const fence = leases.fence('cam');
setInterval(() => {
  try {
    fence.assertCurrent();
    fs.appendFileSync(${JSON.stringify(journal)}, 'write ' + Date.now() + '\\n');
  } catch {
    fs.appendFileSync(${JSON.stringify(journal)}, 'fenced ' + Date.now() + '\\n');
  }
}, 20);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let gone = false;
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        gone = true;
        resolve();
      }),
    );
    cleanups.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    const lines = () => (fs.existsSync(journal) ? fs.readFileSync(journal, 'utf8').trim().split('\n') : []);
    await waitFor(
      "the child's first writes",
      () => {
        if (gone) throw new Error(`the child exited: ${stderr}`);
        return lines().filter((l) => l.startsWith('write')).length >= 3;
      },
      20_000,
    );
    const b = await node('thaw-b');
    child.kill('SIGSTOP');
    const takeover = await waitFor('the takeover', () => b.leases.acquire('cam'));
    const tookAt = Date.now();
    assert.equal(takeover.epoch, 2);
    child.kill('SIGCONT');
    await waitFor('the child to run again', () => lines().some((l) => l.startsWith('fenced')));
    await sleep(200);
    const after = lines().filter((l) => Number(l.split(' ')[1]) >= tookAt);
    assert.ok(after.length >= 5, `the child ran on after SIGCONT (${after.length} lines)`);
    assert.deepEqual(
      after.filter((l) => l.startsWith('write')),
      [],
      'no write passed the fence after the takeover',
    );
  });
});

describe('cluster: leases across a NATS restart', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  let conn: ClusterConnection;
  let leases: LeaseManager;
  const events: LeaseEvent[] = [];
  before(async () => {
    nats = await startNats();
    conn = await connectNats({ servers: nats.url, policy, reconnectWaitMs: 100, requestTimeoutMs: 1000 });
    leases = new LeaseManager((await openBuckets(conn)).leases, { nodeId: 'survivor', ttlMs: 3000, renewMs: 500, skewMs: SKEW });
    leases.on((e) => events.push(e));
  });
  after(async () => {
    await leases?.close();
    await conn?.close();
    await nats?.stop();
  });

  it('NATS killed and restarted at once: renewals land again after the reconnect, nothing lost', async () => {
    const held = await leases.acquire('lobby');
    assert.equal(held?.epoch, 1);
    await nats.kill();
    await nats.restart();
    await waitFor('the reconnect', () => conn.connected);
    const revision = leases.holding('lobby')!.revision;
    await waitFor('a renew after the reconnect', () => (leases.holding('lobby')?.revision ?? 0) > revision, 5000);
    assert.deepEqual(events.map((e) => e.kind), ['acquired']);
    leases.fence('lobby').assertCurrent();
    const state = await leases.read('lobby');
    assert.deepEqual([state?.value.owner, state?.value.epoch], ['survivor', 1]);
  });

  it('NATS down longer than the TTL: `lost` when the TTL runs out; after the restart the lease is taken again with epoch + 1', async () => {
    const fence = leases.fence('lobby');
    const down = performance.now();
    await nats.kill();
    await waitFor('the lost event', () => events.find((e) => e.kind === 'lost'), 5000);
    const lostAfter = performance.now() - down;
    assert.ok(lostAfter <= 3000 + 150, `lost ${lostAfter.toFixed(0)} ms after NATS went away (TTL 3000)`);
    assert.equal(fence.current, false);
    await nats.restart();
    await waitFor('the reconnect', () => conn.connected);
    const again = await waitFor('the lease again', () => leases.acquire('lobby'));
    assert.equal(again.epoch, 2);
    assert.deepEqual(events.map((e) => e.kind), ['acquired', 'lost', 'acquired']);
  });
});
