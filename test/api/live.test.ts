/**
 * A live RTSP camera through the service (GStreamer's RTSP server on 127.0.0.1 publishing a needle
 * clip in real time, behind basic auth): the stream goes live, a question asked while it ingests is
 * answered from frames that already left the window, an outage shows as a gap and a reconnect in
 * the status, a busy model makes it drop frames (counted) rather than fall behind, and after the service restarts the stream reconnects and its timeline continues.
 * Skips loudly without the RTSP server, except with CI=true.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { runVigil } from '../helpers/runVigil.js';
import { makeProbeClip } from '../../ingest/index.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { AUTH, disposeSharedModel, question, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

describe('live RTSP stream through the service', () => {
  let clip: string;
  let camera: RtspServer | null = null;
  let server: TestServer | null = null;

  before(async () => {
    clip = path.join(tempDir('vigil-live-'), 'live.mp4');
    await makeProbeClip({ out: clip, durationS: 90, width: 160, height: 90, needles: [{ start: 2, duration: 2, background: 'red', square: 'green' }] });
  });
  after(async () => {
    await server?.close();
    await camera?.kill();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  it('goes live, answers while ingesting, records an outage, and reconnects after a restart', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    camera = await startRtspServer(python, { file: clip, user: 'cam', password: 'rtsp-secret-pw' });
    const options = {
      manager: {
        policy: { allowNetworks: ['127.0.0.1/32'] },
        // A small frame queue, so a busy model makes this live source drop frames quickly.
        sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3, queue: { capacity: 2 } },
      },
    };
    server = await startTestServer(options);
    const source = `rtsp://cam:rtsp-secret-pw@127.0.0.1:${camera.port}/stream`;
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source, fps: 2, window: 2 }).expect(201);
    assert.equal(created.body.source, `rtsp://***@127.0.0.1:${camera.port}/stream`);
    assert.equal(created.body.live, true);

    const s = server;
    await waitFor('live past the needle', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && (st.memory?.lastT ?? 0) >= 6 ? st : undefined;
    }, 30_000);
    // The needle (2-4 s) has left the 2-frame window: the answer needs retrieval from disk.
    const answer = await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
    assert.equal(answer.body.text, 'green');
    assert.equal((await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), mode: 'window' })).body.text, 'unknown');

    // The model busy for 3 s (e.g. other streams): the live source drops frames instead of queueing them.
    let release!: () => void;
    const held = s.ready.scheduler.run('other', 'frame', () => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 3000));
    const busy = s.ready.status('cam');
    release();
    await held;
    assert.ok(busy.ingest!.drops >= 1, `frames dropped while the model was busy: ${JSON.stringify(busy.ingest)}`);
    assert.ok(busy.ingest!.lagMs > 0, 'the waiting frames show as lag');
    assert.ok(busy.ingest!.queued <= 2);

    // Camera outage: the stream backs off, then reconnects on the same port; the status shows the gap.
    const port = camera.port;
    await camera.kill();
    await waitFor('the outage to be noticed', () => ['backing-off', 'connecting'].includes(s.ready.status('cam').state), 20_000);
    camera = await startRtspServer(python, { file: clip, user: 'cam', password: 'rtsp-secret-pw', port });
    const back = await waitFor('reconnected', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && (st.ingest?.restarts ?? 0) >= 1 && (st.ingest?.gaps ?? 0) >= 1 ? st : undefined;
    }, 30_000);
    assert.equal(back.ingest?.lastGap?.endT !== null, true, 'the gap closed when frames came back');

    // Service restart: the stream comes back, reconnects, and its stream time continues after the stored frames.
    const lastT = s.ready.status('cam').memory!.lastT!;
    const dataDir = s.dataDir;
    await s.close();
    server = await startTestServer({ ...options, dataDir });
    const restored = server;
    const resumed = await waitFor('live again after the restart', () => {
      const st = restored.ready.status('cam');
      return st.state === 'live' && st.frames >= 2 ? st : undefined;
    }, 30_000);
    assert.ok(resumed.memory!.lastT! > lastT, `time continues: ${resumed.memory!.lastT} > ${lastT}`);
    assert.equal((await request(restored.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 })).body.text, 'green');
    assert.ok(restored.logs.concat(s.logs).every((line) => !line.includes('rtsp-secret-pw')));

    // Both outages (the camera's, and the service's own restart) are in the manifest, in stream
    // time, and `vigil store stats` shows them beside the running server.
    const stats = await runVigil(['store', 'stats', '--data', dataDir, '--stream', 'cam', '--json']);
    assert.equal(stats.code, 0, stats.stderr);
    const gaps = (JSON.parse(stats.stdout) as Array<{ gaps: Array<{ tStart: number; tEnd: number; reason: string }> }>)[0]!.gaps;
    assert.ok(gaps.length >= 2, `persisted gaps: ${JSON.stringify(gaps)}`);
    assert.ok(gaps.every((g) => g.tEnd > g.tStart && g.tStart >= 0), JSON.stringify(gaps));
    assert.ok(gaps.some((g) => /not ingesting/.test(g.reason)), 'the restart is a gap');
    // (Its times are not compared with lastT: on a loaded machine the frames around it may still be queued.)
    assert.ok(gaps.some((g) => !/not ingesting/.test(g.reason)), `the camera outage is a gap: ${JSON.stringify(gaps)}`);
  });
});
