/**
 * Every bad input gives a clear VigilError or source state with the reason, never a crash, and never
 * leaves an ffmpeg/ffprobe process behind. Runs with both ffmpeg builds.
 * (Wrong RTSP credentials and RTSP 404 need the GStreamer server: see rtsp.test.ts.)
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkSource } from '../../ingest/check.js';
import { bundledFfmpeg, type FfmpegBinary, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { openSource } from '../../ingest/openSource.js';
import type { ProbeClip } from '../../ingest/probeClip.js';
import type { Frame } from '../../ingest/types.js';
import { isVigilError, type VigilErrorCode } from '../../common/errors.js';
import { closedPort, silentTcpServer, startHttpServer, type TestServer } from '../fixtures/httpServer.js';
import { audioOnly, corrupted, needleClip, tempDir, textFile, truncatedNoIndex, truncatedWithIndex, unknownCodec } from '../fixtures/ingestClips.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';

const binaries = [bundledFfmpeg(), systemFfmpeg()].filter((b): b is FfmpegBinary => b !== null);

function matches(code: VigilErrorCode, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(isVigilError(error), `expected a VigilError, got ${error instanceof Error ? error.stack : String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /\n\s+at /, 'no stack trace in the message');
    return true;
  };
}

/** Opens a file source and expects it to fail with `code`: the frame stream rejects, the state says why. */
async function expectSourceFailure(input: string, binary: FfmpegBinary, code: VigilErrorCode, pattern: RegExp): Promise<void> {
  const source = await openSource(input, { ffmpeg: binary });
  await assert.rejects(source.next(), matches(code, pattern));
  const stats = source.stats();
  assert.equal(stats.state, 'failed');
  assert.equal(stats.lastError?.code, code);
  await source.dispose();
  assertNoChildrenLeft(input);
}

let clip: ProbeClip;
let dir: string;
let http: TestServer;
let silent: TestServer;

before(async () => {
  clip = await needleClip();
  dir = tempDir();
  fs.copyFileSync(clip.clip, path.join(dir, 'clip.mp4'));
  http = await startHttpServer(dir);
  silent = await silentTcpServer();
});

after(async () => {
  await http?.close();
  await silent?.close();
  assertNoChildrenLeft('after the bad-input tests');
});

for (const binary of binaries) {
  describe(`bad files with ffmpeg ${binary.version.text} (${binary.origin})`, () => {
    it('a text file named .mp4 is not a video', () => expectSourceFailure(textFile(dir), binary, 'NOT_A_VIDEO', /not .*video|invalid data/i));
    it('an audio-only file has no video stream', () => expectSourceFailure(audioOnly(dir), binary, 'NOT_A_VIDEO', /no video stream/));
    it('an MP4 cut before its index is reported as truncated', () => expectSourceFailure(truncatedNoIndex(clip.clip, dir), binary, 'CORRUPT_VIDEO', /moov atom.*truncated/));
    it('an unknown codec is named', () => expectSourceFailure(unknownCodec(dir), binary, 'UNSUPPORTED_CODEC', /codec/));

    it('an MP4 cut in the middle plays up to the cut, then ends with a warning', async () => {
      const source = await openSource(truncatedWithIndex(clip.clip, dir), { ffmpeg: binary, fps: 1 });
      const frames: Frame[] = [];
      for await (const f of source) frames.push(f);
      const stats = source.stats();
      assert.ok(frames.length >= 5 && frames.length < 55, `${frames.length} frames`);
      assert.equal(stats.state, 'ended');
      assert.equal(stats.endReason, 'eof (truncated)');
      assert.ok(stats.warnings.some((w) => /ended at .* of 60\.0 s.*truncated/.test(w)), JSON.stringify(stats.warnings));
      assertNoChildrenLeft();
    });

    it('a file with garbage in the middle still delivers frames, with decode-error warnings', async () => {
      const source = await openSource(corrupted(clip.clip, dir), { ffmpeg: binary, fps: 1, decode: 'all' });
      const frames: Frame[] = [];
      for await (const f of source) frames.push(f);
      const stats = source.stats();
      assert.ok(frames.length >= 40, `${frames.length} frames`);
      assert.ok(frames.every((f, i) => i === 0 || f.t > frames[i - 1]!.t), 'timestamps increase');
      assert.equal(stats.state, 'ended');
      assert.ok(stats.warnings.some((w) => /decode errors|truncated/.test(w)), JSON.stringify(stats.warnings));
      assertNoChildrenLeft();
    });
  });

  describe(`unreachable, refused and silent network sources with ffmpeg ${binary.version.text} (${binary.origin})`, () => {
    const check = (url: string, options: Parameters<typeof checkSource>[1] = {}) => checkSource(url, { ffmpeg: binary, frames: 2, socketTimeoutS: 1, timeoutS: 10, ...options });

    it('HTTP 404', async () => {
      await assert.rejects(check(`${http.base}/nope.mp4`), matches('SOURCE_NOT_FOUND', /404/));
    });
    it('HTTP 401 without and with wrong credentials; right credentials work', async () => {
      const url = new URL(`${http.base}/secret/clip.mp4`);
      await assert.rejects(check(url.href), matches('SOURCE_AUTH', /credentials.*401/));
      url.username = 'vigil';
      url.password = 'wrong';
      await assert.rejects(check(url.href), (e: unknown) => matches('SOURCE_AUTH', /401/)(e) && !String((e as Error).message).includes('wrong'));
      url.password = 'secret';
      const report = await check(url.href);
      assert.deepEqual(report.frames.map((f) => f.t), [0, 1]);
      assert.equal(report.source, `http://***@127.0.0.1:${http.port}/secret/clip.mp4`);
    });
    it('connection refused (RTSP and HTTP)', async () => {
      const port = await closedPort();
      await assert.rejects(check(`rtsp://127.0.0.1:${port}/cam`), matches('SOURCE_UNREACHABLE', /refused/));
      await assert.rejects(check(`http://127.0.0.1:${port}/v.mp4`), matches('SOURCE_UNREACHABLE', /refused/));
    });
    it('a host name that does not resolve', async () => {
      await assert.rejects(check('rtsp://no-such-camera.invalid/stream'), matches('SOURCE_UNREACHABLE', /resolve/));
    });
    it('a server that never answers (RTSP and HTTP) times out', async () => {
      await assert.rejects(check(`rtsp://127.0.0.1:${silent.port}/cam`), matches('SOURCE_TIMEOUT', /silent|socket timeout|within/));
      await assert.rejects(check(`${http.base}/silent/clip.mp4`), matches('SOURCE_TIMEOUT', /within|timeout|answer/i));
      assertNoChildrenLeft();
    });
  });
}

describe('live reliability on failures', () => {
  it('a camera that is down from the start is retried with capped backoff, as one open gap', async () => {
    const port = await closedPort();
    const source = await openSource(`rtsp://127.0.0.1:${port}/cam`, { backoff: { initialMs: 100, maxMs: 300, jitter: 0 } });
    const states: string[] = [];
    source.on('state', (s) => states.push(s));
    await new Promise((r) => setTimeout(r, 2500));
    const stats = source.stats();
    assert.ok(stats.consecutiveFailures >= 4, `${stats.consecutiveFailures} failures`);
    assert.ok(['connecting', 'backing-off'].includes(stats.state));
    assert.ok(states.includes('backing-off') && !states.includes('failed'));
    assert.equal(stats.lastError?.code, 'SOURCE_UNREACHABLE');
    assert.equal(stats.gaps.length, 1);
    assert.equal(stats.gaps[0]!.endT, null);
    assert.ok(stats.gaps[0]!.attempts >= 4);
    assert.equal(stats.framesSampled, 0);
    await source.dispose();
    assert.equal(source.currentState, 'ended');
    assert.equal(await source.next(), null);
    assertNoChildrenLeft();
  });

  it('gives up after maxAttempts, with the reason', async () => {
    const port = await closedPort();
    const source = await openSource(`http://127.0.0.1:${port}/v.mp4`, { live: true, backoff: { initialMs: 50, maxAttempts: 2 } });
    await assert.rejects(source.next(), matches('SOURCE_UNREACHABLE', /gave up after 2 attempts/));
    assert.equal(source.currentState, 'failed');
    assertNoChildrenLeft();
  });

  it('the stall watchdog kills a stream that stops sending, records the gap and restarts it', async () => {
    const source = await openSource(`${http.base}/stall/clip.mp4`, { live: true, fps: 2, stallTimeoutS: 1, socketTimeoutS: 60, decode: 'all', backoff: { initialMs: 100, jitter: 0 } });
    const frames: Frame[] = [];
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const f = await source.next();
      if (!f) break;
      frames.push(f);
      if (f.run >= 1 && frames.filter((x) => x.run >= 1).length >= 3) break;
    }
    const stats = source.stats();
    await source.dispose();
    assert.ok(frames.some((f) => f.run === 0) && frames.some((f) => f.run >= 1), 'frames before and after the restart');
    assert.ok(frames.every((f, i) => i === 0 || f.t > frames[i - 1]!.t), 'stream time stays monotonic across the restart');
    assert.ok(stats.restarts >= 1);
    const gap = stats.gaps[0]!;
    assert.equal(gap.code, 'SOURCE_STALLED');
    assert.match(gap.reason, /stall: no frame for/);
    assert.ok(gap.endT !== null && gap.endT > gap.startT);
    assert.ok(gap.endWall! - gap.startWall >= 0);
    assertNoChildrenLeft();
  });
});

describe('refused before ffmpeg runs', () => {
  it('disallowed schemes and missing files throw at open', async () => {
    await assert.rejects(openSource('ftp://example.com/v.mp4'), matches('SOURCE_SCHEME', /not allowed/));
    await assert.rejects(openSource('concat:a.mp4|b.mp4'), matches('SOURCE_SCHEME', /not allowed/));
    await assert.rejects(openSource(path.join(dir, 'missing.mp4')), matches('FILE_NOT_FOUND', /not found/));
    await assert.rejects(openSource('http://example.com/v.mp4', { allowedSchemes: ['rtsp'] }), matches('SOURCE_SCHEME', /http/));
  });
});
