/**
 * NATS lost while a node ingests a live camera (a real nats-server and a real RTSP server on
 * 127.0.0.1, one in-process node over probe-needle): the lease lapses after its TTL, the node holds
 * the camera's frames (in the source's bounded queue; none is stored under a lapsed lease) and keeps
 * the stream open; when NATS is back it takes the lease back (epoch + 1, same node, same memory, no
 * restore) and the held frames are stored: the outage leaves no hole in the stream's memory.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import request from 'supertest';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { makeProbeClip } from '../../ingest/index.js';
import { ClusterNode } from '../../src/cluster/clusterNode.js';
import { AUTH, disposeSharedModel, startTestServer, type TestServer, tempDir, waitFor } from '../api/helpers.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { NATS_MISSING, type NatsServer, startNats } from '../helpers/natsServer.js';

const TTL_MS = 3000;

describe('cluster: NATS lost under a running node', { skip: NATS_MISSING }, () => {
  let nats: NatsServer;
  let rtsp: RtspServer | null = null;
  let node: ClusterNode | null = null;
  let server: TestServer | null = null;
  const logs: string[] = [];

  before(async () => {
    const clips = tempDir('vigil-outage-');
    const clip = path.join(clips, 'camera.mp4');
    [nats] = await Promise.all([startNats(), makeProbeClip({ out: clip, durationS: 120, width: 160, height: 90, needles: [{ start: 2, duration: 3, background: 'red', square: 'green' }] })]);
    // In CI a missing RTSP server throws here (the suite fails); elsewhere it is reported loudly and the test skips.
    const python = requireRtsp({ skip: () => {} });
    if (python) rtsp = await startRtspServer(python, { file: clip });
    node = await ClusterNode.connect({
      servers: nats.url,
      nodeId: 'n1',
      capacity: 2,
      policy: new OutboundPolicy({ allowNetworks: ['127.0.0.0/8'] }),
      leaseTtlMs: TTL_MS,
      skewMs: 500,
      nodeTtlMs: TTL_MS,
      reconcileMs: 300,
      replicationIntervalSec: 1,
      connection: { reconnectWaitMs: 200, requestTimeoutMs: 1000 },
      log: (line) => logs.push(line),
    });
    server = await startTestServer({ manager: { ...node.managerOptions(), policy: { allowNetworks: ['127.0.0.0/8'] } }, server: { clusterNode: { node } } });
  });

  after(async () => {
    if (nats && !nats.running()) await nats.restart();
    await server?.close();
    await node?.dispose();
    await rtsp?.kill();
    await nats?.stop();
    await disposeSharedModel();
  });

  it('holds frames while the lease is lapsed, takes it back when NATS returns, and stores what it held', async (t) => {
    if (!rtsp) return t.skip('no RTSP server');
    const s = server!;
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: rtsp.url, window: 4 }).expect(201);
    await waitFor('the camera past 6 s', () => s.ready.status('cam').progress.t >= 6, 30_000);
    const chunkTimes = (): number[] => {
      const db = new Database(path.join(s.dataDir, 'streams', 'cam', 'kv', 'manifest.sqlite'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT t_start AS t FROM chunks ORDER BY chunk_id').all() as Array<{ t: number }>).map((r) => r.t);
      } finally {
        db.close();
      }
    };

    await nats.kill();
    const tKill = s.ready.status('cam').progress.t;
    await waitFor('the lease to lapse', () => logs.some((l) => /cam: lease lapsed at epoch 1/.test(l)), 10_000);
    // Held, not stored: nothing is added under a lapsed lease, and the stream stays open here.
    const storedAtLapse = chunkTimes().length;
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(chunkTimes().length, storedAtLapse, 'no frame stored while the lease is lapsed');
    assert.equal(s.ready.status('cam').owner, 'n1');
    const tHeld = tKill + (TTL_MS + 3000) / 1000;

    await nats.restart();
    await waitFor('the lease taken back', () => logs.some((l) => /cam: lease taken back at epoch 2/.test(l)), 20_000);
    const status = s.ready.status('cam');
    assert.equal(status.epoch, 2);
    assert.ok(!logs.some((l) => /restored from snapshot/.test(l)), 'no restore: the local memory is the newest');
    // The frames held through the outage are stored: chunks every second across it (the queue holds 16).
    await waitFor('the held frames stored', () => chunkTimes().some((time) => time > tHeld + 1), 20_000);
    const during = chunkTimes().filter((time) => time > tKill && time <= tHeld);
    assert.ok(during.length >= Math.floor(tHeld - tKill) - 2, `${during.length} chunks between ${tKill} and ${tHeld.toFixed(1)} s: ${during.join(', ')}`);
    assert.equal((await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: 'What colour is the square shown on the red screen? Answer with one word.', r: 4, maxTokens: 8 }).expect(200)).body.text, 'green');
  });
});
