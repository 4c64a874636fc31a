/**
 * Frame gating through the service: the default gate on a static clip with an event (the live
 * ingest loop, the manager, status, /metrics, evidence spans), `gate: 'off'`, and bad gate settings
 * from the API, the config file and the command line.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { loadServiceConfig } from '../../api/config.js';
import { makeProbeClip } from '../../ingest/index.js';
import { DEFAULT_GATE } from '../../src/engine/frameGate.js';
import { runVigil } from '../helpers/runVigil.js';
import { AUTH, disposeSharedModel, question, startTestServer, tempDir, type TestServer, waitEnded } from './helpers.js';

const CLIP_S = 40;

describe('frame gating in the service', () => {
  let server: TestServer;
  let clips: string;

  before(async () => {
    clips = tempDir('vigil-gate-clips-');
    // A static textured scene (one noise frame, held for 40.5 s: samples at 0..40 s) with one event.
    await makeProbeClip({ out: path.join(clips, 'camera.mp4'), durationS: CLIP_S, width: 160, height: 90, noiseFps: 1 / (CLIP_S + 0.5), needles: [{ start: 10, duration: 3, background: 'red', square: 'green' }] });
    // No defaults: the manager's own default gate.
    server = await startTestServer({ filesDir: clips, manager: { defaults: {} } });
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
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
    for (const [args, pattern] of cases) {
      const run = await runVigil(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, pattern);
    }
  });
});
