/**
 * A live RTSP camera through the service, stopped and started again: the stream's source probe is
 * kept in its folder (source-probe.json), so the second start runs no probe (counted) and frames
 * flow; a saved probe that does not fit the camera (another picture size written into it) is
 * dropped with a warning in the log, the source is probed again, the file rewritten, and the
 * stream ingests. PROBE_REUSE_RUNS=N adds N interleaved timed starts with and without the file
 * (the figure in docs/ingest.md). Skips loudly without the RTSP server, except with CI=true.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import { probeCount } from '../../ingest/probe.js';
import type { ProbeInfo } from '../../ingest/types.js';
import { streamDir } from '../../src/engine/dataLayout.js';
import { SOURCE_PROBE_FILE } from '../../src/engine/manager/sourceProbeFile.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { AUTH, disposeSharedModel, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

describe('a live stream keeps its source probe across a stop and start', () => {
  let clip: string;
  let camera: RtspServer | null = null;
  let server: TestServer | null = null;

  before(async () => {
    clip = path.join(tempDir('vigil-probe-reuse-'), 'cam.mp4');
    await makeProbeClip({ out: clip, durationS: 120, width: 160, height: 90, needles: [] });
  });
  after(async () => {
    await server?.close();
    await camera?.kill();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  it('the second start skips the probe; a saved probe that does not fit is dropped and the stream still ingests', { timeout: 120_000 }, async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    camera = await startRtspServer(python, { file: clip });
    const s = (server = await startTestServer({ manager: { policy: { allowNetworks: ['127.0.0.0/8'] } } }));
    const file = path.join(streamDir(s.dataDir, 'cam'), SOURCE_PROBE_FILE);
    const readSaved = () => JSON.parse(fs.readFileSync(file, 'utf8')) as { sourceHash: string; probe: ProbeInfo };

    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: camera.url, fps: 1, window: 2 }).expect(201);
    await waitFor('frames from the first start', () => s.ready.status('cam').frames >= 1, 30_000);
    const saved = await waitFor('source-probe.json', () => fs.existsSync(file) && readSaved(), 5_000);
    assert.deepEqual([saved.probe.video.codec, saved.probe.video.width, saved.probe.video.height], ['h264', 160, 90]);
    assert.match(saved.sourceHash, /^[0-9a-f]{64}$/);
    assert.ok(!fs.readFileSync(file, 'utf8').includes(camera.url), 'the file names the source by its hash only');

    /** Stops the stream, then starts it and waits for its first new frame: ms from the start call, probes run meanwhile. */
    const restart = async (): Promise<{ ms: number; probes: number }> => {
      await request(s.url).post('/v1/streams/cam/stop').set(AUTH).expect(200);
      const probes = probeCount();
      const started = performance.now();
      await request(s.url).post('/v1/streams/cam/start').set(AUTH).expect(200);
      await waitFor('a frame after the start', () => s.ready.status('cam').frames >= 1, 30_000);
      return { ms: Math.round(performance.now() - started), probes: probeCount() - probes };
    };

    const reused = await restart();
    assert.equal(reused.probes, 0, 'no probe with the saved one');

    // The camera "changed" (what the file says no longer fits): dropped, probed again, rewritten.
    fs.writeFileSync(file, JSON.stringify({ ...saved, probe: { ...saved.probe, video: { ...saved.probe.video, width: 640, height: 360 } } }));
    const refit = await restart();
    assert.equal(refit.probes, 1, 'probed again');
    assert.ok(s.logs.some((l) => /stream cam: the saved probe of .* did not fit .*probing again/.test(l)), s.logs.join('\n'));
    await waitFor('the fresh probe saved', () => readSaved().probe.video.width === 160, 5_000);

    const runs = Number(process.env['PROBE_REUSE_RUNS'] ?? 0);
    const timed: Record<'saved' | 'probed', number[]> = { saved: [reused.ms], probed: [] };
    for (let i = 0; i < runs; i++) {
      const probed = (fs.rmSync(file), await restart());
      assert.equal(probed.probes, 1);
      timed.probed.push(probed.ms);
      await waitFor('the probe saved again', () => fs.existsSync(file), 5_000);
      const again = await restart();
      assert.equal(again.probes, 0);
      timed.saved.push(again.ms);
    }
    t.diagnostic(`start -> first new frame (ms): saved probe ${timed.saved.join(', ')}; probed ${timed.probed.join(', ')}; misfit ${refit.ms}`);
  });
});
