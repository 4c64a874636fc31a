/**
 * Frame gating through the service: the default gate on a static clip with an event (the live
 * ingest loop, the manager, status, /metrics, evidence spans), `gate: 'off'`, and bad gate settings
 * from the API, the config file and the command line. A live RTSP camera showing the same static
 * scene before and after an outage: no chunk's span reaches across the outage (skips loudly without
 * the RTSP server, except with CI=true).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { loadServiceConfig } from '../../api/config.js';
import { makeProbeClip } from '../../ingest/index.js';
import { ChunkStore } from '../../memory/store/index.js';
import { streamDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { DEFAULT_GATE } from '../../src/engine/frameGate.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { runVigilCases } from '../helpers/vigilBatch.js';
import { AUTH, disposeSharedModel, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor } from './helpers.js';

const CLIP_S = 40;

// The cases share only the clip and the server (each its own stream ids); the live camera has a
// server of its own and mostly waits on real time: they run at once.
describe('frame gating in the service', { concurrency: true }, () => {
  let server: TestServer;
  let clips: string;
  let camera: RtspServer | null = null;

  before(async () => {
    clips = tempDir('vigil-gate-clips-');
    // A static textured scene (one noise frame, held for 40.5 s: samples at 0..40 s) with one event.
    await makeProbeClip({ out: path.join(clips, 'camera.mp4'), durationS: CLIP_S, width: 160, height: 90, noiseFps: 1 / (CLIP_S + 0.5), needles: [{ start: 10, duration: 3, background: 'red', square: 'green' }] });
    // No defaults: the manager's own default gate.
    server = await startTestServer({ filesDir: clips, manager: { defaults: {} } });
  });
  after(async () => {
    await server?.close();
    await camera?.kill();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });
  const http = () => request(server.url);

  it('the default gate encodes the scene once and the event once; status, metrics and evidence show it', async () => {
    const created = await http().post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'camera.mp4', window: 4 }).expect(201);
    assert.deepEqual(created.body.settings.gate, DEFAULT_GATE);
    const status = await waitEnded(server, 'cam');
    // 41 samples: the first frame, the red screen at 10 s, the scene again at 13 s.
    assert.equal(status.frames, 3);
    assert.equal(status.ingest?.gated, CLIP_S + 1 - 3);
    assert.equal(status.memory?.chunks, 3);
    assert.ok(Math.abs(status.memory!.lastT! - CLIP_S) < 1e-6, `the last chunk reaches the last sample: ${status.memory?.lastT}`);

    const metrics = await http().get('/metrics').set(AUTH).expect(200);
    assert.match(metrics.text, new RegExp(`^vigil_ingest_frames_gated_total\\{stream="cam"\\} ${CLIP_S + 1 - 3}$`, 'm'));
    assert.match(metrics.text, /^vigil_ingest_frames_total\{stream="cam"\} 3$/m);

    const answer = await http().post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 2, maxTokens: 3 }).expect(200);
    assert.equal(answer.body.text.trim(), 'green');
    const red = answer.body.evidence.find((e: { tStart?: number }) => e.tStart !== undefined && Math.abs(e.tStart - 10) < 1e-6);
    assert.ok(red, JSON.stringify(answer.body.evidence));
    assert.ok(Math.abs(red.tEnd - 12) < 1e-6, `the red screen's chunk spans 10..12 s: ${JSON.stringify(red)}`);
  });

  it("gate 'off' encodes every sampled frame; a partial gate takes the other field's default", async () => {
    await http().post('/v1/streams').set(AUTH).send({ id: 'all', source: 'camera.mp4', window: 4, gate: 'off' }).expect(201);
    const status = await waitEnded(server, 'all');
    assert.equal(status.settings.gate, 'off');
    assert.equal(status.memory?.chunks, CLIP_S + 1);
    assert.equal(status.ingest?.gated, 0);
    const partial = await http().post('/v1/streams').set(AUTH).send({ id: 'held', source: 'camera.mp4', window: 4, gate: { maxHoldSec: 5 } }).expect(201);
    assert.deepEqual(partial.body.settings.gate, { threshold: DEFAULT_GATE.threshold, maxHoldSec: 5 });
    const held = await waitEnded(server, 'held');
    // At least one frame every 5 s of the static scene, besides the event's two.
    assert.ok(held.memory!.chunks >= 9 && held.memory!.chunks <= 12, `${held.memory?.chunks} chunks`);
  });

  it('bad gate settings are 400 BAD_INPUT naming the field; nothing is created', async () => {
    for (const gate of ['on', 0.01, { threshold: 0 }, { threshold: 1.5 }, { maxHoldSec: 0 }, { maxHoldSec: 'x' }, { other: 1 }]) {
      const res = await http().post('/v1/streams').set(AUTH).send({ id: 'bad', source: 'camera.mp4', gate });
      assert.equal(res.status, 400, `${JSON.stringify(gate)}: ${res.text}`);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, /gate/);
    }
    await http().get('/v1/streams/bad').set(AUTH).expect(404);
    // Uploads: the gate as a form field, 'off' or JSON.
    const video = path.join(clips, 'camera.mp4');
    for (const field of ['{"threshold": 5}', 'sometimes', '{"maxHoldSec": 0}']) {
      const res = await http().post('/v1/streams').set(AUTH).field('id', 'up-bad').field('gate', field).attach('file', video);
      assert.equal(res.status, 400, `${field}: ${res.text}`);
      assert.match(res.body.error.message, /gate/);
    }
    const off = await http().post('/v1/streams').set(AUTH).field('id', 'up-off').field('gate', 'off').attach('file', video).expect(201);
    assert.equal(off.body.settings.gate, 'off');
    const json = await http().post('/v1/streams').set(AUTH).field('id', 'up-json').field('gate', '{"threshold": 0.02}').attach('file', video).expect(201);
    assert.deepEqual(json.body.settings.gate, { threshold: 0.02, maxHoldSec: DEFAULT_GATE.maxHoldSec });
    await waitEnded(server, 'up-off');
    await waitEnded(server, 'up-json');
    // The config file takes the same schema.
    const file = path.join(tempDir('vigil-gate-config-'), 'vigil.yaml');
    fs.writeFileSync(file, 'cameras:\n  - { id: x, source: "rtsp://cam.example.com/s", gate: { threshold: 2 } }\n');
    assert.throws(() => loadServiceConfig(file, {}), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && /gate/.test(e.message));
    fs.writeFileSync(file, 'defaults: { gate: "off" }\ncameras:\n  - { id: x, source: "rtsp://cam.example.com/s", gate: { threshold: 0.02, maxHoldSec: 30 } }\n');
    assert.doesNotThrow(() => loadServiceConfig(file, {}));
  });

  it('bad --gate / --gate-max-hold values are one clear line and exit code 2', async () => {
    const video = path.join(clips, 'camera.mp4');
    const cases: Array<[string[], RegExp]> = [
      [['ask', video, 'q', '--gate', 'on'], /--gate.*expected 'off' or a fraction/],
      [['ask', video, 'q', '--gate', '2'], /--gate.*expected 'off' or a fraction/],
      [['ask', video, 'q', '--gate', '0'], /--gate.*expected 'off' or a fraction/],
      [['ask', video, 'q', '--gate-max-hold', '0'], /--gate-max-hold.*expected seconds/],
      [['ask', video, 'q', '--gate', 'off', '--gate-max-hold', '10', '--data', tempDir('vigil-gate-data-')], /--gate-max-hold needs the gate on/],
      [['serve', '--gate', 'sometimes'], /--gate.*expected 'off' or a fraction/],
    ];
    // One real spawn per command (ask, serve); the other cases through the same main() in one process.
    const runs = await runVigilCases(cases.map(([args]) => args), [0, cases.length - 1]);
    for (const [i, [args, pattern]] of cases.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, pattern);
    }
  });

  it('a live camera showing the same scene after an outage: the first frame after it is encoded, no span reaches across it', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    const live = await startTestServer({ filesDir: clips, manager: { defaults: {}, policy: { allowNetworks: ['127.0.0.1/32'] }, sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3 } } });
    try {
      camera = await startRtspServer(python, { file: path.join(clips, 'camera.mp4') });
      await request(live.url).post('/v1/streams').set(AUTH).send({ id: 'door', source: camera.url, fps: 1, window: 2 }).expect(201);
      await waitFor('live for a few static seconds', () => {
        const st = live.ready.status('door');
        return st.state === 'live' && (st.ingest?.gated ?? 0) >= 3 ? st : undefined;
      }, 30_000);
      const port = camera.port;
      await camera.kill();
      await waitFor('the outage to be noticed', () => ['backing-off', 'connecting'].includes(live.ready.status('door').state), 20_000);
      camera = await startRtspServer(python, { file: path.join(clips, 'camera.mp4'), port });
      const back = await waitFor('reconnected, the outage persisted, static frames after it', () => {
        const st = live.ready.status('door');
        return st.state === 'live' && (st.memory?.gaps ?? 0) >= 1 && (st.memory?.lastT ?? 0) > st.memory!.lastGap!.to + 3 ? st : undefined;
      }, 40_000);
      const gap = back.memory!.lastGap!;
      // The scene is the same picture on both sides of the outage (the clip restarts at its static
      // start). The stored spans, read beside the running writer:
      const store = ChunkStore.open({ dir: streamStoreDir(streamDir(live.dataDir, 'door')), readOnly: true });
      let spans: Array<{ id: number; tStart: number; tEnd: number }>;
      try {
        const times = store.chunkTimes();
        spans = Array.from(times.ids, (id, i) => ({ id, tStart: times.tStart[i]!, tEnd: times.tEnd[i]! }));
      } finally {
        await store.dispose();
      }
      assert.ok(spans.length >= 2, JSON.stringify(spans));
      for (const c of spans) {
        assert.ok(c.tEnd <= gap.from + 1e-6 || c.tStart >= gap.to - 1e-6, `chunk ${c.id} (${c.tStart}..${c.tEnd}) reaches across the outage ${gap.from}..${gap.to}`);
      }
      assert.ok(spans.some((c) => c.tStart < gap.from && c.tEnd > c.tStart), `a chunk before the outage spans gated frames: ${JSON.stringify(spans)}`);
      assert.ok(spans.some((c) => Math.abs(c.tStart - gap.to) < 1e-6), `the first frame after the outage starts a chunk: ${JSON.stringify(spans)}`);
      assert.ok(back.ingest!.gated >= 3, 'static frames were gated');
    } finally {
      await live.close();
    }
  });
});
