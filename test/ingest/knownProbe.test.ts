/**
 * A live source opened with the probe of an earlier connection (`knownProbe`, what the manager
 * keeps in source-probe.json): against a real RTSP server on 127.0.0.1 it starts without probing
 * and frames flow; a saved probe that does not fit the stream (another picture size) is dropped
 * with a warning and the source probes and ingests as usual. Files ignore it. Skips loudly without
 * the RTSP server, except with CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseStreamVideo } from '../../ingest/ffmpegLog.js';
import { openSource } from '../../ingest/openSource.js';
import { resolveOptions } from '../../ingest/options.js';
import { probeCount } from '../../ingest/probe.js';
import { cachedProbeClip, type ProbeClip } from '../../ingest/probeClip.js';
import type { ProbeInfo } from '../../ingest/types.js';
import type { VideoSource } from '../../ingest/videoSource.js';
import { isVigilError } from '../../common/errors.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';

let clip: ProbeClip;
let camera: RtspServer | null = null;

before(async () => {
  clip = await cachedProbeClip({ durationS: 20, width: 320, height: 180, fps: 10, gopS: 1, needles: [] });
});

after(async () => {
  await camera?.kill();
  assertNoChildrenLeft('after the known-probe tests');
});

/** Opens the source, takes `frames` frames; returns what it saw (ms to the first frame, probes run, warnings, probe events). */
async function take(url: string, knownProbe: ProbeInfo | undefined, frames: number) {
  const probesBefore = probeCount();
  const started = Date.now();
  const source: VideoSource = await openSource(url, { fps: 1, ...(knownProbe ? { knownProbe } : {}) });
  const warnings: string[] = [];
  const probed: ProbeInfo[] = [];
  source.on('warning', (w) => warnings.push(w));
  source.on('probe', (p) => probed.push(p));
  let firstFrameMs = -1;
  try {
    for (let i = 0; i < frames; i++) {
      const frame = await source.next();
      assert.ok(frame, `frame ${i}: ${JSON.stringify(source.stats())}`);
      if (i === 0) firstFrameMs = Date.now() - started;
    }
    return { firstFrameMs, probes: probeCount() - probesBefore, warnings, probed, probe: source.probe, stats: source.stats() };
  } finally {
    await source.dispose();
  }
}

describe('a known probe spares a live source its probe', () => {
  it('RTSP: the second open skips the probe; a probe that does not fit is dropped and the source probes again', { timeout: 60_000 }, async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    camera = await startRtspServer(python, { file: clip.clip });

    const first = await take(camera.url, undefined, 2);
    assert.equal(first.probes, 1);
    assert.equal(first.probed.length, 1, 'the probe is announced (the manager saves it)');
    const saved = JSON.parse(JSON.stringify(first.probed[0])) as ProbeInfo;
    assert.deepEqual([saved.video.codec, saved.video.width, saved.video.height], ['h264', 320, 180]);

    const again = await take(camera.url, saved, 2);
    assert.equal(again.probes, 0, 'no probe run with a fitting saved probe');
    assert.deepEqual(again.probed, [], 'nothing new to save');
    assert.deepEqual(again.warnings, []);
    assert.equal(again.stats.live, true);
    assert.equal(again.stats.decodeMode, 'keyframes', 'the saved keyframe timing picks the decode mode');

    const wrong: ProbeInfo = { ...saved, video: { ...saved.video, width: 640, height: 360 } };
    const refit = await take(camera.url, wrong, 2);
    assert.equal(refit.probes, 1, 'probed again');
    assert.ok(refit.warnings.some((w) => /saved probe of .* did not fit .*320x180.*640x360.*probing again/.test(w)), refit.warnings.join(' | '));
    assert.equal(refit.probed.length, 1);
    assert.deepEqual([refit.probe?.video.width, refit.probe?.video.height], [320, 180], 'the fresh probe replaces the saved one');
    assert.deepEqual(refit.stats.gaps, [], 'a probe dropped before the first frame is no outage');
    t.diagnostic(`first frame: probed ${first.firstFrameMs} ms, saved probe ${again.firstFrameMs} ms, misfit ${refit.firstFrameMs} ms`);
  });

  it('a file ignores a known probe and is probed', async () => {
    const known: ProbeInfo = { container: 'rtsp', containerLongName: null, durationS: null, startTimeS: 0, bitRate: null, audio: null, keyframes: null, video: { codec: 'mpeg4', codecLongName: null, profile: null, width: 64, height: 64, fps: 5, pixFmt: null, rotation: 0, sar: 1 } };
    const result = await take(clip.clip, known, 1);
    assert.equal(result.probes, 1);
    assert.deepEqual([result.probe?.video.codec, result.probe?.video.width], ['h264', 320]);
  });

  it('parses the input stream line of ffmpeg; a malformed known probe is refused', () => {
    assert.deepEqual(
      parseStreamVideo('[info]   Stream #0:0[0x1](und), 1, 1/10240: Video: h264 (High 4:4:4 Predictive), 1 reference frame (avc1 / 0x31637661), yuv444p(progressive, left), 320x180 (320x192) [SAR 1:1 DAR 16:9], 10 fps'),
      { codec: 'h264', width: 320, height: 180 },
    );
    assert.deepEqual(parseStreamVideo('[info]   Stream #0:0: Video: hevc (Main), yuv420p(tv, bt709), 1920x1080, 25 fps'), { codec: 'hevc', width: 1920, height: 1080 });
    assert.equal(parseStreamVideo('[info]   Stream #0:1: Audio: aac (LC), 44100 Hz, stereo'), null);
    assert.throws(() => resolveOptions({ knownProbe: { video: { codec: 'h264' } } as unknown as ProbeInfo }), (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT');
  });
});
