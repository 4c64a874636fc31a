/**
 * The cluster's NATS connection, node registry and desired state (src/cluster/) against a real
 * nats-server with JetStream on 127.0.0.1 (test/helpers/natsServer.ts): clear errors when NATS is
 * unreachable, has no JetStream, or is refused by the URL policy; every dial (reconnects too) made
 * through the policy; two nodes registered, a duplicate id refused while the first is alive, a
 * dead node's entry expiring by the bucket's TTL; desired state written on one node and read,
 * watched and validated on another.
 *
 * The policy allows 127.0.0.1 with allowNetworks ['127.0.0.1/32'], as an operator would for a
 * NATS server on a private network.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isVigilError } from '../../common/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { type ClusterBuckets, BUCKETS, encodeJson, openBuckets } from '../../src/cluster/buckets.js';
import { type DesiredChange, DesiredState } from '../../src/cluster/desiredState.js';
import { type ClusterConnection, connectNats, parseNatsServers } from '../../src/cluster/natsConnection.js';
import { NodeRegistry, type RegistryEvent } from '../../src/cluster/nodeRegistry.js';
import { freePort } from '../helpers/mosquitto.js';
import { NATS_MISSING, type NatsServer, startNats } from '../helpers/natsServer.js';

const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const NODE_TTL_MS = 1500;

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rejectsWith(code: string, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(isVigilError(error), `not a VigilError: ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /\n\s+at /, 'no stack in the message');
    return true;
  };
}

describe('cluster: NATS connection', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  before(async () => (nats = await startNats()));
  after(async () => nats?.stop());

  it('NATS unreachable at start: BAD_CONFIG naming the URL, at once', async () => {
    const port = await freePort();
    const started = performance.now();
    await assert.rejects(connectNats({ servers: `nats://127.0.0.1:${port}`, policy }), rejectsWith('BAD_CONFIG', new RegExp(`cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}: connection refused`)));
    assert.ok(performance.now() - started < 3000, 'fails fast, no retry loop at start');
  });

  it('bad server URLs: BAD_CONFIG, never echoing credentials', () => {
    assert.throws(() => parseNatsServers('http://127.0.0.1:4222'), rejectsWith('BAD_CONFIG', /nats:\/\//));
    assert.throws(() => parseNatsServers('nats://user:s3cret-pass@127.0.0.1:4222'), (e) => rejectsWith('BAD_CONFIG', /user:password/)(e) && !String((e as Error).message).includes('s3cret'));
    assert.throws(() => parseNatsServers(' , '), rejectsWith('BAD_CONFIG', /no NATS server/));
    assert.deepEqual(parseNatsServers('nats://a.example,nats://127.0.0.1:4333'), [
      { host: 'a.example', port: 4222, display: 'nats://a.example:4222' },
      { host: '127.0.0.1', port: 4333, display: 'nats://127.0.0.1:4333' },
    ]);
  });

  it('a loopback NATS server is refused by the default URL policy (BAD_CONFIG), nothing is dialled', async () => {
    await assert.rejects(connectNats({ servers: nats.url, policy: new OutboundPolicy() }), rejectsWith('BAD_CONFIG', /refused by the URL policy/));
  });

  it('a server without JetStream: BAD_CONFIG saying so', async () => {
    const plain = await startNats({ jetStream: false });
    try {
      await assert.rejects(connectNats({ servers: plain.url, policy, jetStreamWaitMs: 2000 }), rejectsWith('BAD_CONFIG', /no JetStream/));
    } finally {
      await plain.stop();
    }
  });

  it('every dial goes through the policy: the first and each reconnect; a rebound address is never connected to', async () => {
    let target = '127.0.0.1';
    let lookups = 0;
    const counting = new OutboundPolicy({
      allowNetworks: ['127.0.0.1/32'],
      lookup: async () => {
        lookups++;
        return [target];
      },
    });
    const conn = await connectNats({ servers: `nats://nats.test:${nats.port}`, policy: counting, reconnectWaitMs: 100 });
    const links: string[] = [];
    conn.onLink((e) => links.push(e.kind));
    try {
      assert.ok(lookups >= 2, `checked at start and at the dial (${lookups})`);
      // The name now resolves to a refused address: the reconnects must not connect anywhere.
      target = '10.1.2.3';
      await nats.kill();
      await nats.restart();
      const before = lookups;
      await waitFor('reconnect attempts', () => lookups >= before + 2);
      assert.equal(conn.connected, false);
      assert.deepEqual(links, ['disconnected']);
      target = '127.0.0.1';
      await waitFor('the reconnect', () => conn.connected);
      assert.deepEqual(links, ['disconnected', 'reconnected']);
    } finally {
      await conn.close();
    }
  });
});

describe('cluster: node registry and desired state', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  const conns: ClusterConnection[] = [];
  const open = async (): Promise<[ClusterConnection, ClusterBuckets]> => {
    const conn = await connectNats({ servers: nats.url, policy, reconnectWaitMs: 100 });
    conns.push(conn);
    return [conn, await openBuckets(conn, { nodeTtlMs: NODE_TTL_MS })];
  };
  before(async () => (nats = await startNats()));
  after(async () => {
    for (const c of conns) await c.close();
    await nats?.stop();
  });

  it('registers two nodes, refuses a second node with a live id, frees the id when the node leaves', async () => {
    const [, b1] = await open();
    const [, b2] = await open();
    assert.equal(b1.nodeTtlMs, NODE_TTL_MS);
    const n1 = await NodeRegistry.join(b1, { nodeId: 'n1', capacity: 3, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8001' });
    const n2 = await NodeRegistry.join(b2, { nodeId: 'n2', capacity: 5, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8002' });
    assert.deepEqual(
      (await NodeRegistry.list(b2)).map((n) => [n.nodeId, n.capacity, n.apiUrl]),
      [
        ['n1', 3, 'http://127.0.0.1:8001'],
        ['n2', 5, 'http://127.0.0.1:8002'],
      ],
    );
    // Heartbeats keep it alive well past the TTL.
    await new Promise((r) => setTimeout(r, NODE_TTL_MS * 2));
    assert.deepEqual((await NodeRegistry.list(b2)).map((n) => n.nodeId), ['n1', 'n2']);
    await assert.rejects(
      NodeRegistry.join(b2, { nodeId: 'n1', capacity: 1, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8009' }),
      rejectsWith('BAD_CONFIG', /node id 'n1' is in use by a live node \(joined .*, API http:\/\/127\.0\.0\.1:8001\)/),
    );
    assert.equal(n1.registered, true, 'the refused duplicate changed nothing');
    await n1.close();
    const again = await NodeRegistry.join(b2, { nodeId: 'n1', capacity: 1, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8009' });
    await again.close();
    await n2.close();
    assert.deepEqual(await NodeRegistry.list(b1), []);
  });

  it("a dead node's entry expires by the TTL; its id is free again", async () => {
    const [conn, buckets] = await open();
    const [, observer] = await open();
    const doomed = await NodeRegistry.join(buckets, { nodeId: 'doomed', capacity: 1, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8003' });
    // The process dies: its connection ends without a goodbye, no more heartbeats.
    await conn.nc.close();
    const died = performance.now();
    await waitFor('the entry to expire', async () => (await NodeRegistry.list(observer)).every((n) => n.nodeId !== 'doomed'));
    const gone = performance.now() - died;
    assert.ok(gone < NODE_TTL_MS + 1500, `gone ${gone.toFixed(0)} ms after the last heartbeat (TTL ${NODE_TTL_MS})`);
    const events: RegistryEvent[] = [];
    const heir = await NodeRegistry.join(observer, { nodeId: 'doomed', capacity: 1, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8004' }, { onEvent: (e) => events.push(e) });
    await heir.close();
    assert.deepEqual(events, []);
    // Its heartbeat timer (which a dead process would not have) stops; removing the entry fails quietly.
    await doomed.close();
  });

  it('NATS down longer than the TTL: the entry expires, and the node registers again after the reconnect', async () => {
    const [conn, buckets] = await open();
    const events: RegistryEvent[] = [];
    const lines: string[] = [];
    const node = await NodeRegistry.join(buckets, { nodeId: 'rejoiner', capacity: 2, startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:8005' }, { onEvent: (e) => events.push(e), log: (l) => lines.push(l) });
    try {
      await nats.kill();
      await new Promise((r) => setTimeout(r, NODE_TTL_MS + 500));
      await nats.restart();
      await waitFor('the reconnect', () => conn.connected);
      await waitFor(`the rejoin (${lines.join('; ')})`, () => events.length > 0);
      assert.deepEqual(events, [{ kind: 'rejoined', nodeId: 'rejoiner' }]);
      assert.ok((await NodeRegistry.list(buckets)).some((n) => n.nodeId === 'rejoiner' && n.capacity === 2));
      assert.equal(node.registered, true);
    } finally {
      await node.close();
    }
  });

  it('refuses invalid node ids and capacities (BAD_CONFIG)', async () => {
    const [, buckets] = await open();
    const info = { startedAt: new Date().toISOString(), apiUrl: 'http://127.0.0.1:1' };
    await assert.rejects(NodeRegistry.join(buckets, { ...info, nodeId: 'a.b', capacity: 1 }), rejectsWith('BAD_CONFIG', /node id 'a\.b' is not valid/));
    await assert.rejects(NodeRegistry.join(buckets, { ...info, nodeId: 'ok', capacity: -2 }), rejectsWith('BAD_CONFIG', /capacity/));
  });

  it('desired state: written on one node, read, listed and watched on another; compare-and-set; deletes', async () => {
    const [, b1] = await open();
    const [, b2] = await open();
    const writer = new DesiredState(b1);
    const lines: string[] = [];
    const reader = new DesiredState(b2, (l) => lines.push(l));
    const changes: DesiredChange[] = [];
    const stop = await reader.watch((c) => changes.push(c));
    const rev = await writer.put({ id: 'door', settings: { source: 'rtsp://cam/door', model: 'probe-random-tiny' }, watches: [{ id: 'w1', question: 'is the door open?' }] });
    const got = await reader.get('door');
    assert.equal(got?.revision, rev);
    assert.deepEqual(got?.state.settings, { source: 'rtsp://cam/door', model: 'probe-random-tiny' });
    assert.deepEqual(got?.state.watches, [{ id: 'w1', question: 'is the door open?' }]);
    // A write based on a stale revision fails instead of overwriting the newer one.
    const rev2 = await reader.put({ ...got!.state, watches: [] }, rev);
    await assert.rejects(writer.put({ ...got!.state, settings: { stale: true } }, rev), /wrong last sequence/);
    await assert.rejects(writer.put({ id: 'door', settings: {}, watches: [] }, 0), /wrong last sequence/, 'revision 0: only when new');
    await writer.put({ id: 'yard', settings: {}, watches: [] }, 0);
    assert.deepEqual((await reader.list()).map((e) => [e.state.id, e.revision]), [
      ['door', rev2],
      ['yard', rev2 + 1],
    ]);
    await writer.delete('yard');
    assert.equal(await reader.get('yard'), null);
    await waitFor('the watch to see 4 changes', () => changes.length >= 4);
    stop();
    assert.deepEqual(
      changes.map((c) => [c.id, c.state === null ? 'deleted' : c.state.watches.length]),
      [
        ['door', 1],
        ['door', 0],
        ['yard', 0],
        ['yard', 'deleted'],
      ],
    );
    assert.deepEqual(lines, []);
  });

  it('desired state: values are validated on write and on read (a bad value is STORE_CORRUPT on get, skipped by list)', async () => {
    const [, buckets] = await open();
    const lines: string[] = [];
    const desired = new DesiredState(buckets, (l) => lines.push(l));
    await assert.rejects(desired.put({ id: 'bad id', settings: {}, watches: [] }), rejectsWith('BAD_INPUT', /stream id/));
    await assert.rejects(desired.put({ id: 'dup', settings: {}, watches: [{ id: 'w' }, { id: 'w' }] }), rejectsWith('BAD_INPUT', /watch ids must be unique/));
    await desired.put({ id: 'good', settings: {}, watches: [] });
    // Someone wrote garbage under a stream key, and a value whose id is another stream's.
    await buckets.desired.put('stream.broken', new TextEncoder().encode('{not json'));
    await buckets.desired.put('stream.liar', encodeJson({ id: 'good', settings: {}, watches: [], updatedAt: 1 }));
    await assert.rejects(desired.get('broken'), rejectsWith('STORE_CORRUPT', /stream 'broken'/));
    await assert.rejects(desired.get('liar'), rejectsWith('STORE_CORRUPT', /stream 'liar'/));
    assert.ok((await desired.list()).some((e) => e.state.id === 'good'));
    assert.ok((await desired.list()).every((e) => e.state.id !== 'broken' && e.state.id !== 'liar'));
    assert.ok(lines.some((l) => l.includes('stream.broken')));
    assert.equal(BUCKETS.desired, 'vigil_desired');
  });
});
