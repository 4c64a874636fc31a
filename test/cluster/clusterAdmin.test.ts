/**
 * Cluster status and drain (docs/scale-out.md, "Status and drain"), over a real nats-server on
 * 127.0.0.1 and two Vigil nodes in this process (two servers with their own data folders sharing
 * the probe-needle model): GET /v1/cluster on both nodes, `vigil cluster status [--json]` through
 * the CLI's main(), `vigil cluster drain --wait` moving a stream to the other node (epoch + 1) where
 * it still answers, undo over REST and the CLI, the vigil_cluster_* metrics (promtool), the web
 * page's Cluster panel, and the errors: an unknown or malformed node, a server outside a cluster,
 * a NATS that is not there or holds no cluster, and NATS lost under /metrics.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { ClusterAdmin } from '../../src/cluster/clusterAdmin.js';
import { ClusterNode } from '../../src/cluster/clusterNode.js';
import type { ClusterStatus } from '../../src/cluster/clusterStatus.js';
import { ClusterConnection } from '../../src/cluster/natsConnection.js';
import { AUTH, disposeSharedModel, openApiValidator, startTestServer, tempDir, type TestServer, TOKEN, waitFor } from '../api/helpers.js';
import { freePort } from '../helpers/freePort.js';
import { NATS_MISSING, type NatsServer, startNats } from '../helpers/natsServer.js';
import { runVigilBatch } from '../helpers/vigilBatch.js';
import { isExpectedConsoleError, launchChromium, requireChromium } from '../web/browser.js';

type ClusterAnswer = ClusterStatus & { node: string };

const QUESTION = 'What color was the square on the red screen?';

describe('cluster status and drain', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  let empty: NatsServer;
  const nodes: ClusterNode[] = [];
  const servers: TestServer[] = [];
  const logs: string[] = [];
  let clips: string;

  const api = (i: number) => request(servers[i]!.url);
  const cluster = async (i: number): Promise<ClusterAnswer> => (await api(i).get('/v1/cluster').set(AUTH).expect(200)).body as ClusterAnswer;
  const metrics = async (i: number): Promise<string> => (await api(i).get('/metrics').set(AUTH).expect(200)).text;
  const cli = (...args: string[]) => ['cluster', ...args];

  before(async () => {
    clips = tempDir('vigil-clips-');
    [nats, empty] = await Promise.all([
      startNats(),
      startNats(),
      makeProbeClip({ out: path.join(clips, 'a.mp4'), durationS: 16, width: 160, height: 90, needles: [{ start: 5, duration: 3, background: 'red', square: 'green' }] }),
    ]);
    for (const nodeId of ['n1', 'n2']) {
      const node = await ClusterNode.connect({
        servers: nats.url,
        nodeId,
        capacity: 2,
        policy: new OutboundPolicy({ allowNetworks: ['127.0.0.0/8'] }),
        reconcileMs: 300,
        replicationIntervalSec: 1,
        log: (line) => logs.push(`${nodeId}: ${line}`),
      });
      nodes.push(node);
      servers.push(
        await startTestServer({
          filesDir: clips,
          manager: node.managerOptions(),
          server: { clusterNode: { node } },
        }),
      );
    }
  });

  after(async () => {
    // NATS back first (a test may have killed it), so the nodes hand over and leave cleanly.
    if (nats && !nats.running()) await nats.restart();
    for (const server of servers) await server.close();
    for (const node of nodes) await node.dispose();
    await Promise.all([nats?.stop(), empty?.stop()]);
    await disposeSharedModel();
  });

  it('shows both nodes and the stream everywhere; drain moves it (epoch + 1) where it still answers; undo', async (t) => {
    // Created through n2: placement picks n1 (equal room, the lower id) and the call is forwarded there.
    const created = await api(1).post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'a.mp4' }).expect(201);
    assert.equal(created.body.owner, 'n1');
    assert.equal(created.body.epoch, 1);
    await waitFor('cam to be ingested and replicated to its end', async () => {
      const s = (await cluster(1)).streams.find((x) => x.id === 'cam');
      return s?.state === 'ended' && s.lagSec === 0 ? s : undefined;
    }, 30_000);

    const valid = await openApiValidator(servers[0]!.url);
    const views = [await cluster(0), await cluster(1)];
    for (const [i, view] of views.entries()) {
      valid('ClusterStatus', view);
      // A stream's own status in cluster mode (owner, epoch) is a StreamStatus too.
      valid('StreamStatus', (await api(i).get('/v1/streams/cam').set(AUTH).expect(200)).body);
      assert.equal(view.node, `n${i + 1}`, 'each node answers itself (not forwarded)');
      assert.deepEqual(view.nodes.map((n) => [n.nodeId, n.capacity, n.apiUrl, n.draining, n.streams]), [
        ['n1', 2, servers[0]!.url, false, ['cam']],
        ['n2', 2, servers[1]!.url, false, []],
      ]);
      assert.deepEqual(view.streams.map((s) => [s.id, s.owner, s.epoch, s.stopped, s.state]), [['cam', 'n1', 1, false, 'ended']]);
      const cam = view.streams[0]!;
      assert.ok(cam.recoveryPoint && cam.recoveryPoint.streamTime >= 14, `recovery point near the end: ${JSON.stringify(cam.recoveryPoint)}`);
      assert.ok(cam.bytesPerSec !== null && cam.bytesPerSec > 0);
    }

    const [json, table, drain] = await runVigilBatch([
      cli('status', '--json', '--cluster', nats.url),
      { args: cli('status'), env: { VIGIL_CLUSTER: nats.url } },
      cli('drain', 'n1', '--wait', '--timeout', '60', '--cluster', nats.url),
    ]);
    assert.equal(json!.code, 0, json!.stderr);
    const fromCli = JSON.parse(json!.stdout) as ClusterStatus;
    assert.deepEqual(fromCli.nodes, views[0]!.nodes, 'the CLI reads the nodes the API shows');
    assert.deepEqual(fromCli.streams.map((s) => [s.id, s.owner, s.epoch, s.state, s.lagSec]), [['cam', 'n1', 1, 'ended', 0]]);
    assert.equal(table!.code, 0, table!.stderr);
    assert.match(table!.stdout, /^\| n1 \| 2 \| 1\/2 \(cam\) \| no \| http:\/\/127\.0\.0\.1:\d+ \|$/m);
    assert.match(table!.stdout, /^\| n2 \| 2 \| 0\/2 \| no \| /m);
    assert.match(table!.stdout, /^\| cam \| n1 \| 1 \| ended \| 0\.0 s \| t=0:1\d \|$/m);
    assert.equal(drain!.code, 0, `${drain!.stdout}${drain!.stderr}`);
    assert.match(drain!.stdout, /^node n1 owns no stream \(cam on n2\)$/m);
    assert.match(drain!.stderr, /draining n1: 1 stream left \(cam\)/);

    const moved = await cluster(0);
    assert.deepEqual(moved.nodes.map((n) => [n.nodeId, n.draining, n.streams]), [
      ['n1', true, []],
      ['n2', false, ['cam']],
    ]);
    assert.deepEqual(moved.streams.map((s) => [s.id, s.owner, s.epoch]), [['cam', 'n2', 2]]);
    const status = servers[1]!.ready.status('cam');
    assert.deepEqual([status.owner, status.epoch], ['n2', 2]);
    // Asked on n1, answered by n2 from the memory it restored.
    const answer = await api(0).post('/v1/streams/cam/questions').set(AUTH).send({ question: QUESTION, r: 4 }).expect(200);
    assert.equal(answer.headers['x-vigil-node'], 'n2');
    assert.equal(answer.body.text.trim(), 'green');

    // Metrics: the owner's leases and replication, the cluster's nodes; valid for promtool.
    const text = await waitFor('n2 to report cam\'s replication', async () => {
      const m = await metrics(1);
      return /^vigil_cluster_replication_lag_seconds\{stream="cam"\} /m.test(m) ? m : undefined;
    });
    assert.match(text, /^vigil_cluster_streams_owned 1$/m);
    assert.match(text, /^vigil_cluster_lease_epoch\{stream="cam"\} 2$/m);
    assert.match(text, /^vigil_cluster_replication_bytes_per_second\{stream="cam"\} \d/m);
    assert.match(text, /^vigil_cluster_nodes 2$/m);
    assert.match(text, /^vigil_cluster_streams_unowned 0$/m);
    assert.match(text, /^vigil_cluster_status_errors_total 0$/m);
    assert.match(await metrics(0), /^vigil_cluster_streams_owned 0$/m);
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (promtool.error) t.diagnostic('promtool is not installed: the exposition format is not checked here (test/api/consistency.test.ts does)');
    else assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    // Undo over REST: n1 may take streams again; cam stays where it went (a move costs a failover).
    await api(1).delete('/v1/cluster/nodes/n1/drain').set(AUTH).expect(204);
    await new Promise((r) => setTimeout(r, 1000));
    const undone = await cluster(1);
    assert.deepEqual(undone.nodes.map((n) => [n.nodeId, n.draining]), [
      ['n1', false],
      ['n2', false],
    ]);
    assert.deepEqual(undone.streams.map((s) => [s.id, s.owner, s.epoch]), [['cam', 'n2', 2]]);
    // Drain over REST, undo with the CLI (n1 owns nothing: nothing moves).
    const accepted = await api(1).post('/v1/cluster/nodes/n1/drain').set(AUTH).expect(202);
    assert.equal(accepted.text, '');
    assert.equal((await cluster(0)).nodes.find((n) => n.nodeId === 'n1')?.draining, true);
    const closedPort = await freePort();
    const [undo, ghost, noNats, noCluster, noServers, badId] = await runVigilBatch([
      cli('drain', 'n1', '--undo', '--cluster', nats.url),
      cli('drain', 'ghost', '--cluster', nats.url),
      cli('status', '--cluster', `nats://127.0.0.1:${closedPort}`),
      cli('status', '--cluster', empty.url),
      cli('status'),
      cli('drain', 'a.b', '--cluster', nats.url),
    ]);
    assert.equal(undo!.code, 0, undo!.stderr);
    assert.match(undo!.stdout, /node n1 is no longer draining/);
    const settled = await cluster(0);
    assert.deepEqual(settled.nodes.map((n) => [n.nodeId, n.draining]), [
      ['n1', false],
      ['n2', false],
    ]);
    assert.deepEqual(settled.streams.map((s) => [s.id, s.owner, s.epoch]), [['cam', 'n2', 2]], 'cam never left n2');
    // What `drain --wait` gives up on (exit 1 in the CLI): a node that still owns a stream when the time is up.
    const admin = await ClusterAdmin.open({ servers: nats.url });
    try {
      const polls: string[][] = [];
      const wait = await admin.waitDrained('n2', { timeoutMs: 300, pollMs: 100, onProgress: (p) => polls.push(p.owned) });
      assert.equal(wait.drained, false);
      assert.deepEqual(wait.last.owned, ['cam']);
      assert.ok(polls.length >= 2 && polls.every((o) => o.join() === 'cam'), JSON.stringify(polls));
    } finally {
      await admin.dispose();
    }
    assert.deepEqual([ghost!.code, ghost!.stderr], [2, "vigil: no live node 'ghost' in the cluster (live: n1, n2)\n"]);
    assert.deepEqual([noNats!.code, noNats!.stderr], [2, `vigil: cannot connect to NATS at nats://127.0.0.1:${closedPort}: connection refused (is nats-server running there?)\n`]);
    assert.equal(noCluster!.code, 2);
    assert.match(noCluster!.stderr, /^vigil: no Vigil cluster on this NATS \(no vigil_nodes bucket\)/);
    assert.deepEqual([noServers!.code, noServers!.stderr], [2, 'vigil: no cluster given: pass --cluster nats://host:4222 or set VIGIL_CLUSTER\n']);
    assert.equal(badId!.code, 2);
    assert.match(badId!.stderr, /^vigil: 'a\.b' is not a node id/);
    // The empty NATS was only read: no bucket was made there.
    assert.deepEqual(await bucketNames(empty.url), []);
  });

  it('the web page shows the Cluster panel', async (t) => {
    if (!requireChromium(t)) return;
    const started = performance.now();
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && !isExpectedConsoleError(message)) problems.push(`console: ${message.text()}`);
      });
      page.setDefaultTimeout(15_000);
      await page.goto(servers[0]!.url);
      await page.fill('#token', TOKEN);
      await page.click('#token-form button');
      await page.locator('#cluster-section').waitFor({ state: 'visible' });
      await page.locator('#cluster-summary', { hasText: '2 nodes · 1 stream · answered by n1' }).waitFor();
      const cells = (selector: string) => page.locator(selector).locator('td').allInnerTexts();
      assert.deepEqual(await cells('#cluster-nodes tr[data-id="n1"]'), ['n1', '–', '0/2', '', servers[0]!.url]);
      assert.deepEqual(await cells('#cluster-nodes tr[data-id="n2"]'), ['n2', 'cam', '1/2', '', servers[1]!.url]);
      await page.locator('#cluster-streams tr[data-id="cam"]', { hasText: 'ended' }).waitFor();
      const cam = await cells('#cluster-streams tr[data-id="cam"]');
      assert.deepEqual(cam.slice(0, 4), ['cam', 'n2', '2', 'ended']);
      assert.match(cam[4]!, /^\d+\.\d s$/);
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
    t.diagnostic(`browser check ${Math.round(performance.now() - started)} ms`);
  });

  it('answers 404 outside a cluster and 400 for a node that is not one; NATS lost does not fail /metrics', async () => {
    const standalone = await startTestServer();
    try {
      const res = await request(standalone.url).get('/v1/cluster').set(AUTH).expect(404);
      assert.deepEqual(res.body, { error: { code: 'NOT_FOUND', message: 'this server is not part of a cluster (start it with --cluster)' } });
      await request(standalone.url).post('/v1/cluster/nodes/n1/drain').set(AUTH).expect(404);
      assert.doesNotMatch((await request(standalone.url).get('/metrics').set(AUTH).expect(200)).text, /vigil_cluster_/);
    } finally {
      await standalone.close();
    }
    await api(0).get('/v1/cluster').expect(401);
    const ghost = await api(0).post('/v1/cluster/nodes/ghost/drain').set(AUTH).expect(400);
    assert.equal(ghost.body.error.message, "no live node 'ghost' in the cluster");
    const bad = await api(0).delete('/v1/cluster/nodes/a%20b/drain').set(AUTH).expect(400);
    assert.equal(bad.body.error.code, 'BAD_INPUT');

    // NATS gone: the scrape still answers, without the cluster-wide gauges, and counts the failed read.
    await nats.kill();
    const text = await waitFor('a scrape after the cached status expired', async () => {
      const m = await metrics(1);
      return /^vigil_cluster_status_errors_total [1-9]/m.test(m) ? m : undefined;
    }, 15_000);
    assert.doesNotMatch(text, /^vigil_cluster_nodes /m);
    assert.doesNotMatch(text, /^vigil_cluster_streams_unowned /m);
    // This node's own figures need no NATS (its lease on cam may run out meanwhile: 0 or 1).
    assert.match(text, /^vigil_cluster_streams_owned [01]$/m);
    assert.match(text, /^vigil_streams\{state="ended"\} \d+$/m);
    await api(1).get('/v1/cluster').set(AUTH).expect(503);
    await nats.restart();
  });
});

/** The JetStream streams (KV buckets are KV_<name>) a NATS server holds, asked through a plain admin connection. */
async function bucketNames(url: string): Promise<string[]> {
  const conn = await ClusterConnection.open({ servers: url, policy: OutboundPolicy.trusted });
  try {
    return (await conn.jsm.streams.names().next()).filter((name) => name.length > 0);
  } finally {
    await conn.close();
  }
}
