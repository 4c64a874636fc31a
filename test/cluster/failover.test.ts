/**
 * Three `vigil serve --cluster` processes (probe-needle) on a 3-server NATS cluster (JetStream,
 * buckets with 3 replicas), six live cameras from a real RTSP server, all on 127.0.0.1:
 *   - placement is balanced (2/2/2);
 *   - a node killed with SIGKILL mid-ingest: its streams are taken over and ingest again on the
 *     other nodes within 15 s (lease TTL 5 s), and the needle each saw before the kill is answered
 *     from its replicated memory, asked on any node;
 *   - a node frozen (SIGSTOP) until its leases moved, then continued: it starts no frame more of
 *     them (fencing: at most the one whose commit was under way when it froze completes, locally)
 *     and lets them go;
 *   - a NATS server killed and restarted: no stream lost, and no stream ever runs on two nodes at
 *     once.
 * Each node is a real child process; the test only signals processes it started.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { makeProbeClip } from '../../ingest/index.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { BUCKETS } from '../../src/cluster/buckets.js';
import { type ClusterConnection, connectNats } from '../../src/cluster/natsConnection.js';
import { FORWARDED_HEADER } from '../../src/cluster/streamRoutes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { NATS_MISSING, type NatsServer, startNatsCluster } from '../helpers/natsServer.js';
import { type ServeProcess, startServe } from '../helpers/serveProcess.js';
import { waitFor } from '../api/helpers.js';
import type { ListedStream } from '../helpers/clusterListing.js';

const TOKEN = 'cluster-failover-test-token';
const QUESTION = 'What colour is the square shown on the red screen? Answer with one word.';
const STREAMS = ['cam1', 'cam2', 'cam3', 'cam4', 'cam5', 'cam6'];


describe('cluster: failover of live streams between three nodes', { skip: NATS_MISSING }, () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-failover-'));
  let nats: NatsServer[] = [];
  let rtsp: RtspServer | null = null;
  const nodes = new Map<string, ServeProcess>();
  let conn: ClusterConnection | null = null;

  const headers = { Authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const api = async <T>(node: string, route: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(`${nodes.get(node)!.url}${route}`, { ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } });
    const text = await res.text();
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${route} on ${node}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : null) as T;
  };
  /** Every stream as the cluster lists it (merged over the live nodes), asked of `node`. */
  const listed = async (node: string) => (await api<{ streams: ListedStream[] }>(node, '/v1/streams')).streams;
  /** The streams a node runs itself (a forwarded request is answered locally). */
  const localIds = async (node: string) => (await api<{ streams: ListedStream[] }>(node, '/v1/streams', { headers: { [FORWARDED_HEADER]: 'test' } })).streams.map((s) => s.id);
  const ask = (node: string, id: string) => api<{ text: string }>(node, `/v1/streams/${id}/questions`, { method: 'POST', body: JSON.stringify({ question: QUESTION, r: 4, maxTokens: 8 }) });
  const chunksIn = (node: string, id: string): number => {
    const db = new Database(path.join(scratch, `data-${node}`, 'streams', id, 'kv', 'manifest.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM chunks').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  before(async () => {
    const clip = path.join(scratch, 'camera.mp4');
    // The camera (clip, then RTSP server) and the cluster (NATS, then the nodes) start side by side.
    const camera = (async () => {
      await makeProbeClip({ out: clip, durationS: 300, width: 160, height: 90, needles: [{ start: 2, duration: 4, background: 'red', square: 'green' }] });
      // In CI a missing RTSP server throws here (the suite fails); elsewhere it is reported loudly and the test skips.
      const python = requireRtsp({ skip: () => {} });
      if (python) rtsp = await startRtspServer(python, { file: clip });
    })();
    const cluster = (async () => {
      nats = await startNatsCluster(3);
      conn = await connectNats({ servers: nats.map((s) => s.url), policy: new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] }), jetStreamWaitMs: 15_000 });
      const servers = nats.map((s) => s.url).join(',');
      await Promise.all(
        ['n1', 'n2', 'n3'].map(async (id) => {
          const args = ['--port', '0', '--data', path.join(scratch, `data-${id}`), '--model', 'probe-needle', '--allow-network', '127.0.0.0/8'];
          args.push('--cluster', servers, '--node-id', id, '--capacity', '6', '--cluster-replicas', '3', '--quiet');
          nodes.set(id, await startServe(args, TOKEN));
        }),
      );
    })();
    // Both settled before a failure is thrown, so after() finds every process that was started.
    const [a, b] = await Promise.allSettled([camera, cluster]);
    for (const r of [a, b]) if (r.status === 'rejected') throw r.reason;
  });

  after(async () => {
    // Killed, not stopped: a graceful stop would hand every stream over first (tested elsewhere).
    for (const node of nodes.values()) {
      process.kill(node.pid, 'SIGKILL');
      await node.exited;
    }
    await rtsp?.kill();
    await conn?.close();
    await Promise.all(nats.map((s) => s.stop()));
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('balances six cameras, fails a killed node over within 15 s, fences a frozen one, and survives a NATS server loss', async (t) => {
    if (!rtsp) return t.skip('no RTSP server');
    // Six cameras, created on n1: each lands where placement says (2/2/2).
    for (const id of STREAMS) await api('n1', '/v1/streams', { method: 'POST', body: JSON.stringify({ id, source: rtsp.url, window: 4 }) });
    const owners = await waitFor('every stream owned', async () => {
      const streams = await listed('n2');
      return streams.length === 6 && streams.every((s) => s.owner) ? streams : undefined;
    });
    const load = (streams: ListedStream[]) => Object.fromEntries(['n1', 'n2', 'n3'].map((n) => [n, streams.filter((s) => s.owner === n).length]));
    assert.deepEqual(load(owners), { n1: 2, n2: 2, n3: 2 });

    // Past the needle (2-6 s) and two snapshot intervals (5 s) later: the needle is replicated.
    await waitFor('every stream past 16 s', async () => (await listed('n1')).every((s) => s.progress.t >= 16), 90_000);

    // SIGKILL n2 mid-ingest.
    const victims = owners.filter((s) => s.owner === 'n2').map((s) => s.id);
    process.kill(nodes.get('n2')!.pid, 'SIGKILL');
    await nodes.get('n2')!.exited;
    nodes.delete('n2');
    const killed = performance.now();
    let takenAfter = 0;
    const moved = await waitFor(
      "n2's streams ingesting on other nodes",
      async () => {
        const streams = (await listed('n3')).filter((s) => victims.includes(s.id));
        if (streams.length === victims.length && streams.every((s) => s.owner && s.owner !== 'n2') && takenAfter === 0) takenAfter = performance.now() - killed;
        return streams.length === victims.length && streams.every((s) => s.owner && s.owner !== 'n2' && s.frames > 0) ? streams : undefined;
      },
      30_000,
    );
    const resumedAfter = performance.now() - killed;
    process.stdout.write(`# failover: taken over ${(takenAfter / 1000).toFixed(1)} s, ingesting again ${(resumedAfter / 1000).toFixed(1)} s after SIGKILL\n`);
    assert.ok(resumedAfter < 15_000, `ingest resumed ${Math.round(resumedAfter)} ms after the kill`);
    for (const s of moved) assert.equal(s.epoch, 2, `${s.id}: a new tenure`);
    // The needle seen before the kill, answered from replicated memory, asked on either node left.
    assert.equal((await ask('n1', victims[0]!)).text, 'green');
    assert.equal((await ask('n3', victims[1]!)).text, 'green');

    // SIGSTOP n3 until its leases have moved to n1, then SIGCONT: it starts no frame more of them.
    const frozenIds = await localIds('n3');
    assert.ok(frozenIds.length >= 2, `n3 runs ${frozenIds.join(', ')}`);
    const n3 = nodes.get('n3')!;
    process.kill(n3.pid, 'SIGSTOP');
    let frozenCounts: Record<string, number> = {};
    try {
      await waitFor(
        "n3's streams on n1",
        async () => {
          const mine = (await localIds('n1')).filter((id) => frozenIds.includes(id));
          return mine.length === frozenIds.length;
        },
        30_000,
      );
      // Counted while it is frozen (its store is read as committed so far).
      frozenCounts = Object.fromEntries(frozenIds.map((id) => [id, chunksIn('n3', id)]));
    } finally {
      process.kill(n3.pid, 'SIGCONT');
    }
    await waitFor('n3 to let its old streams go', async () => (await localIds('n3')).length === 0, 15_000);
    await new Promise((r) => setTimeout(r, 2000));
    // A frame whose commit was under way when the process froze (it passed the fence before) may
    // complete, on this node's own disk only (its replicator is fenced too); no new frame starts.
    for (const id of frozenIds) {
      const after = chunksIn('n3', id) - frozenCounts[id]!;
      assert.ok(after <= 1, `${id}: ${after} frames stored by the stale owner after it resumed`);
    }
    assert.match(n3.stderr(), /holds it now \(epoch \d+\); ingest stopped here/);

    // The NATS server leading the leases (the worst one to lose) killed and restarted: every stream
    // keeps exactly one owner, and none is lost. With the 5 s TTL the leases lapse during the
    // election (4.9-6.6 s); each owner, alive, takes its own back (docs/scale-out.md).
    const leasesLeader = (await conn!.jsm.streams.info(`KV_${BUCKETS.leases}`)).cluster?.leader;
    const ownersBefore = Object.fromEntries((await listed('n1')).map((s) => [s.id, s.owner]));
    const victim = nats.find((s) => s.name === leasesLeader)!;
    assert.ok(victim, `leases' leader ${leasesLeader}`);
    const doubles: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const where = new Map<string, string[]>();
        for (const node of nodes.keys()) {
          try {
            for (const id of await localIds(node)) where.set(id, [...(where.get(id) ?? []), node]);
          } catch {
            // A node busy reconnecting: the next round asks again.
          }
        }
        for (const [id, on] of where) if (on.length > 1) doubles.push(`${id} on ${on.join('+')}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    let settled: ListedStream[];
    try {
      await victim.kill();
      await new Promise((r) => setTimeout(r, 4000));
      await victim.restart();
      let last: ListedStream[] = [];
      settled = await waitFor(
        'every stream owned and ingesting after the NATS restart',
        async () => {
          const streams = (last = await listed('n1'));
          return streams.length === 6 && streams.every((s) => s.owner && (s.state === 'live' || s.state === 'processing')) ? streams : undefined;
        },
        40_000,
      ).catch((error: unknown) => {
        const logs = [...nodes].map(([id, n]) => `--- ${id}\n${n.stderr().split('\n').slice(-40).join('\n')}`).join('\n');
        throw new Error(`${(error as Error).message}: ${JSON.stringify(last.map((s) => [s.id, s.owner, s.epoch, s.state]))}\n${logs}`);
      });
    } finally {
      sampling = false;
      await sampler;
    }
    assert.deepEqual(doubles, [], 'no stream ever ran on two nodes at once');
    assert.deepEqual(settled.map((s) => s.id).sort(), STREAMS);
    const changed = settled.filter((s) => s.owner !== ownersBefore[s.id]).map((s) => s.id);
    process.stdout.write(`# NATS leader loss: ${changed.length} of ${settled.length} streams changed owner${changed.length ? ` (${changed.join(', ')})` : ''}\n`);
    const t0 = Object.fromEntries(settled.map((s) => [s.id, s.progress.t]));
    await waitFor('every stream to move on', async () => (await listed('n1')).every((s) => s.progress.t > t0[s.id]!), 20_000);
  });
});
