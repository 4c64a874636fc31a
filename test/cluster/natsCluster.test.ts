/**
 * The cluster's KV on a 3-server NATS cluster (routes on loopback, test/helpers/natsServer.ts)
 * with replicas-3 buckets: one NATS server killed, and the KV keeps working (a quorum of 2 is
 * left): a lease held through it keeps renewing, desired state and the registry are written and
 * read, a new lease is taken; a node connected only to the killed server finds the others by the
 * cluster's gossip (through the URL policy); the server restarted catches up and serves the
 * same data.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { type ClusterBuckets, BUCKETS, openBuckets } from '../../src/cluster/buckets.js';
import { DesiredState } from '../../src/cluster/desiredState.js';
import { type LeaseEvent, LeaseManager } from '../../src/cluster/leases.js';
import { type ClusterConnection, connectNats } from '../../src/cluster/natsConnection.js';
import { NodeRegistry } from '../../src/cluster/nodeRegistry.js';
import { NATS_MISSING, type NatsServer, startNatsCluster } from '../helpers/natsServer.js';

const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
// Longer than the default 5 s: losing a stream's leader stalls its writes until the other servers
// elect one (4.9-6.6 s measured with nats-server 2.9.10, docs/scale-out.md), and a lease must outlast that.
const TTL = 12_000;

async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('cluster: a 3-server NATS cluster with one server killed', { skip: NATS_MISSING }, () => {
  let servers: NatsServer[] = [];
  const conns: ClusterConnection[] = [];
  const closers: (() => Promise<void>)[] = [];
  const connect = async (urls: string[]): Promise<[ClusterConnection, ClusterBuckets]> => {
    const conn = await connectNats({ servers: urls, policy, reconnectWaitMs: 100, requestTimeoutMs: 1500, jetStreamWaitMs: 15_000 });
    conns.push(conn);
    // A fresh cluster elects its JetStream meta leader first: replicas-3 buckets may be refused until it has.
    const buckets = await waitFor('the replicas-3 buckets', () => openBuckets(conn, { replicas: 3 }));
    return [conn, buckets];
  };
  before(async () => (servers = await startNatsCluster(3)));
  after(async () => {
    for (const close of closers) await close();
    for (const c of conns) await c.close();
    for (const s of servers) await s.stop();
  });

  it('keeps leases, desired state and the registry working when the server leading the leases is killed, and it catches up', async () => {
    const [, bucketsB] = await connect(servers.map((s) => s.url));
    // The worst server to lose: the leader of the leases' stream (its writes stall until a new one is elected).
    const info = await bucketsB.jsm.streams.info(`KV_${BUCKETS.leases}`);
    assert.equal(info.config.num_replicas, 3);
    assert.equal((info.cluster?.replicas?.length ?? 0) + 1, 3, 'a leader and two replicas');
    const victim = servers.find((s) => s.name === info.cluster?.leader)!;
    assert.ok(victim, `leader ${info.cluster?.leader}`);
    // Node A knows only that server; node B knows all three.
    const [connA, bucketsA] = await connect([victim.url]);

    const leasesA = new LeaseManager(bucketsA.leases, { nodeId: 'a', ttlMs: TTL });
    const events: LeaseEvent[] = [];
    leasesA.on((e) => events.push(e));
    closers.push(() => leasesA.close());
    const leasesB = new LeaseManager(bucketsB.leases, { nodeId: 'b', ttlMs: TTL });
    closers.push(() => leasesB.close());
    const registryLog: string[] = [];
    const registryB = await NodeRegistry.join(bucketsB, { nodeId: 'b', capacity: 2, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8002' }, { log: (l) => registryLog.push(l) });
    closers.push(() => registryB.close());
    assert.equal((await leasesA.acquire('cam1'))?.epoch, 1);
    const desiredB = new DesiredState(bucketsB);
    await desiredB.put({ id: 'cam1', settings: { source: 'rtsp://cam/1' }, watches: [] });

    await victim.kill();
    const killed = performance.now();
    // A reconnects to a server it learned from the cluster's gossip (dialled through the URL policy).
    const gone = `127.0.0.1:${victim.port}`;
    const now = await waitFor('node A to reconnect elsewhere', () => connA.connected && connA.nc.getServer() !== gone && connA.nc.getServer());
    assert.ok(servers.some((s) => s !== victim && now === `127.0.0.1:${s.port}`), now);
    // Lease writes go through again once the 2 servers left have elected a new leader.
    const taken = await waitFor('a new lease after the loss', () => leasesB.acquire('cam2'));
    const leaseWrites = performance.now() - killed;
    assert.equal(taken.epoch, 1);
    assert.equal(await leasesB.acquire('cam1'), null, 'A still holds cam1');
    const desiredA = new DesiredState(bucketsA);
    await waitFor('a desired-state write after the loss', () => desiredA.put({ id: 'cam2', settings: { source: 'rtsp://cam/2' }, watches: [] }));
    assert.deepEqual((await desiredB.list()).map((e) => e.state.id), ['cam1', 'cam2']);
    // A's lease renewed through the election: a renew landed after the kill and it was never lost.
    const revision = leasesA.holding('cam1')?.revision ?? Infinity;
    await waitFor('a renew of cam1 after the loss', () => (leasesA.holding('cam1')?.revision ?? 0) > revision);
    assert.deepEqual(events.map((e) => e.kind), ['acquired']);
    leasesA.fence('cam1').assertCurrent();
    await leasesA.fence('cam1').assertCurrentInKv();
    // The registry stays (its entry may have expired during the election: then the node registers again).
    await waitFor(`node b in the registry (${registryLog.join('; ')})`, async () => (await NodeRegistry.list(bucketsA)).some((n) => n.nodeId === 'b'));
    assert.equal(registryB.registered, true);

    // The server returns and catches up: a node that knows only it reads what was written meanwhile.
    await victim.restart();
    const [, bucketsC] = await connect([victim.url]);
    const seen = await waitFor('the restarted server to serve the writes it missed', async () => {
      const ids = (await new DesiredState(bucketsC).list()).map((e) => e.state.id);
      return ids.length === 2 ? ids : null;
    });
    assert.deepEqual(seen, ['cam1', 'cam2']);
    console.log(`# lease writes resumed ${leaseWrites.toFixed(0)} ms after the leases' leader was killed (registry: ${registryLog.length ? registryLog.join('; ') : 'no gap'})`);
  });
});
