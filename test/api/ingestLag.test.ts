/**
 * The status's `ingest.lagMs` counts the frame the ingest holds (waiting for the model), not only
 * the frames in the source's queue: with a 2-frame queue at 2 frames/s the queue's oldest frame is
 * at most ~1 s old, while the frame waiting for a model held by other work keeps ageing. Read over
 * HTTP (the OpenAPI schema checked) and from the manager; back near 0 once the model is free.
 * A live RTSP camera (GStreamer's RTSP server on 127.0.0.1); skips loudly without it, except with CI=true.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { AUTH, disposeSharedModel, openApiValidator, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

describe('ingest lag in the stream status', () => {
  let clip: string;
  let camera: RtspServer | null = null;
  let server: TestServer | null = null;

  before(async () => {
    clip = path.join(tempDir('vigil-lag-'), 'moving.mp4');
    await makeProbeClip({ out: clip, durationS: 40, width: 160, height: 90, needles: [] });
  });
  after(async () => {
    await server?.close();
    await camera?.kill();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  it('counts the frame waiting for a held model, and falls back once it is free', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    camera = await startRtspServer(python, { file: clip });
    server = await startTestServer({
      manager: { policy: { allowNetworks: ['127.0.0.1/32'] }, sourceOptions: { socketTimeoutS: 3, queue: { capacity: 2 } } },
    });
    const s = server;
    const valid = await openApiValidator(s.url);
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: camera.url, fps: 2, window: 2 }).expect(201);
    await waitFor('live with frames', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && st.frames >= 2 ? st : undefined;
    }, 30_000);

    let release!: () => void;
    const held = s.ready.scheduler.run('other', 'frame', () => new Promise<void>((r) => (release = r)));
    try {
      await new Promise((r) => setTimeout(r, 3000));
      const res = await request(s.url).get('/v1/streams/cam').set(AUTH).expect(200);
      valid('StreamStatus', res.body);
      const ingest = (res.body as { ingest: { lagMs: number; drops: number; queued: number } }).ingest;
      // The queue (2 frames, the oldest dropped when a third comes) holds frames at most ~1 s old:
      // a lag past 2.2 s is the held frame's age.
      assert.ok(ingest.queued <= 2 && ingest.drops >= 1, JSON.stringify(ingest));
      assert.ok(ingest.lagMs >= 2200, `the frame waiting for the model counts: ${JSON.stringify(ingest)}`);
    } finally {
      release();
      await held;
    }
    await waitFor('caught up', () => {
      const lag = s.ready.status('cam').ingest!.lagMs;
      return lag < 1000 ? lag : undefined;
    }, 10_000);
  });
});
