/**
 * Against a real RTSP server on 127.0.0.1 (GStreamer's, test/fixtures/rtspServer.py) publishing a
 * generated needle clip: sampled timestamps match the clip's needle times, TCP and UDP, both ffmpeg
 * builds; the server killed mid-stream and restarted (reconnect, a recorded gap, monotonic time, no
 * ffmpeg left behind); a camera that is down at first start; wrong credentials and a wrong path.
 * Skips loudly when the server is not installed, except with CI=true.
 *
 * The tests wait on the stream's real time, not on the CPU, so all but the one that compares the
 * stream clock with the wall clock run side by side, each on its own server (its own port, which
 * names its ffmpeg/ffprobe children in the process registry, so each checks that its own are gone).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { checkSource } from '../../ingest/check.js';
import { bundledFfmpeg, type FfmpegBinary, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { openSource } from '../../ingest/openSource.js';
import { cachedProbeClip, PALETTE, parseNeedle, type ProbeClip } from '../../ingest/probeClip.js';
import type { Frame } from '../../ingest/types.js';
import type { VideoSource } from '../../ingest/videoSource.js';
import { isVigilError } from '../../common/errors.js';
import { closedPort } from '../fixtures/httpServer.js';
import { colourOf, meanRgb } from '../fixtures/ingestClips.js';
import { runningChildren, startedChildren } from '../../ingest/processRegistry.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';

const binaries = [systemFfmpeg(), bundledFfmpeg()].filter((b): b is FfmpegBinary => b !== null);

let clip: ProbeClip;
const servers: RtspServer[] = [];

before(async () => {
  // 20 s (no test reads more than 6 s of it), needles early so the real-time stream reaches them quickly.
  clip = await cachedProbeClip({ durationS: 20, width: 320, height: 180, fps: 10, gopS: 1, needles: ['1:red:green:1.5', '3.5:blue:yellow:1.5'].map(parseNeedle) });
});

after(async () => {
  for (const s of servers) await s.kill();
  assertNoChildrenLeft('after the RTSP tests');
});

async function server(python: string, options: Parameters<typeof startRtspServer>[1] = {}): Promise<RtspServer> {
  const s = await startRtspServer(python, { file: clip.clip, ...options });
  servers.push(s);
  return s;
}

/**
 * assertNoChildrenLeft for the clients of one server, while other tests' clients may be running:
 * every ffmpeg/ffprobe whose label names the server's port has exited (the registry saw its exit,
 * and its pid, if still taken, is no ffmpeg/ffprobe).
 */
function assertNoChildrenLeftOn(port: number): void {
  const ours = (c: { label: string }) => c.label.includes(`:${port}/`);
  assert.deepEqual(runningChildren().filter(ours).map((c) => `${c.pid} ${c.label}`), [], `ingest children of port ${port} still registered as running`);
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return /ff(mpeg|probe)/.test(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')) && !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  assert.deepEqual(startedChildren().filter(ours).filter((c) => alive(c.pid)).map((c) => `${c.pid} ${c.label}`), [], `ffmpeg/ffprobe processes of port ${port} left behind`);
}

/** Reads frames until `until` says stop (or a deadline passes). */
async function readUntil(source: VideoSource, until: (frames: Frame[]) => boolean, timeoutMs: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!until(frames)) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`timed out after ${frames.length} frames; stats ${JSON.stringify(source.stats())}`);
    let timer: NodeJS.Timeout | undefined;
    const frame = await Promise.race([source.next(), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), remaining)))]);
    // Cleared, or the file's process would wait out a timer of up to 40 s after the last test.
    clearTimeout(timer);
    if (frame === 'timeout') continue;
    if (!frame) throw new Error(`source ended: ${JSON.stringify(source.stats())}`);
    frames.push(frame);
  }
  return frames;
}

function isNeedle(f: Frame, background: string, square: string): boolean {
  return colourOf(meanRgb(f, 4, 4, 2), PALETTE) === background && colourOf(meanRgb(f, f.width >> 1, f.height >> 1, 2), PALETTE) === square;
}

describe('RTSP ingest from a real server', () => {
  describe('side by side', { concurrency: true }, () => {
    it('over TCP: sampled timestamps match the needle times within one sample period', async (t) => {
      const python = requireRtsp(t);
      if (!python) return;
      const s = await server(python);
      const source = await openSource(s.url, { fps: 2, decode: 'all' });
      // Half a second past the last needle's end.
      const frames = await readUntil(source, (f) => (f.at(-1)?.t ?? 0) >= Math.max(...clip.truth.needles.map((n) => n.end)) + 0.5, 40_000);
      const stats = source.stats();
      await source.dispose();
      assert.equal(stats.kind, 'rtsp');
      assert.equal(stats.live, true);
      assert.ok(frames.every((f, i) => i === 0 || f.t > frames[i - 1]!.t), 'monotonic');
      for (const n of clip.truth.needles) {
        const hits = frames.filter((f) => isNeedle(f, n.background, n.square)).map((f) => f.t);
        assert.ok(hits.length >= 2, `needle at ${n.start} s seen at ${hits.join(',')}`);
        assert.ok(Math.abs(hits[0]! - n.start) <= 0.5 + 1e-6, `needle at ${n.start} s first seen at ${hits[0]}`);
        assert.ok(hits.every((x) => x >= n.start - 0.5 && x < n.end + 0.5), `needle ${n.start}-${n.end} seen at ${hits.join(',')}`);
      }
      // Sampled at 2 fps of stream time: steps of 0.5 s.
      const steps = frames.slice(1).map((f, i) => f.t - frames[i]!.t);
      assert.ok(steps.filter((d) => Math.abs(d - 0.5) < 0.02).length >= steps.length - 2, steps.join(','));
      assertNoChildrenLeftOn(s.port);
    });

    for (const binary of binaries) {
      it(`over UDP and TCP with ffmpeg ${binary.version.text} (${binary.origin})`, async (t) => {
        const python = requireRtsp(t);
        if (!python) return;
        const s = await server(python);
        for (const transport of ['udp', 'tcp'] as const) {
          const report = await checkSource(s.url, { ffmpeg: binary, rtspTransport: transport, frames: 3, fps: 2, decode: 'all', timeoutS: 30 });
          // The first frame of an RTSP session can carry an estimated pts (its packet has none), so
          // only the following ones sit exactly one sample period apart.
          const [a, b, c] = report.frames.map((f) => f.t) as [number, number, number];
          assert.ok(a === 0 && b > 0 && b <= 0.5 + 1e-6 && Math.abs(c - b - 0.5) < 1e-3, `${transport}: ${a}, ${b}, ${c}`);
          assert.deepEqual([report.codec, report.width, report.height, report.nativeFps, report.container], ['h264', 320, 180, 10, 'rtsp']);
        }
        assertNoChildrenLeftOn(s.port);
      });
    }

    it('keyframe-only decoding on a live stream when the keyframe interval allows it', async (t) => {
      const python = requireRtsp(t);
      if (!python) return;
      const s = await server(python);
      const report = await checkSource(s.url, { frames: 3, fps: 1, timeoutS: 30 });
      assert.equal(report.decodeMode, 'keyframes');
      assert.ok(report.keyframeIntervalS !== null && report.keyframeIntervalS <= 1.01);
      const [a, b, c] = report.frames.map((f) => f.t) as [number, number, number];
      assert.ok(a === 0 && b > 0 && b <= 1 + 1e-6 && Math.abs(c - b - 1) < 1e-3, `${a}, ${b}, ${c}`);
      assert.ok(report.stats.framesDecoded <= 5, `decoded ${report.stats.framesDecoded}`);
      assertNoChildrenLeftOn(s.port);
    });

    it('a camera that is down at first start is retried until it comes up', async (t) => {
      const python = requireRtsp(t);
      if (!python) return;
      const port = await closedPort();
      const source = await openSource(`rtsp://127.0.0.1:${port}/stream`, { fps: 1, decode: 'all', socketTimeoutS: 2, backoff: { initialMs: 200, maxMs: 800, jitter: 0 } });
      let frames: Frame[];
      let stats: ReturnType<VideoSource['stats']>;
      try {
        await source.waitFor(['backing-off'], 10_000);
        // Polled rather than slept on (a retry on a loaded machine can take longer than a fixed wait).
        const deadline = Date.now() + 10_000;
        while (source.stats().consecutiveFailures < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.ok(source.stats().consecutiveFailures >= 2, `retried while down: ${JSON.stringify(source.stats())}`);
        await server(python, { port });
        frames = await readUntil(source, (f) => f.length >= 2, 30_000);
        stats = source.stats();
      } finally {
        // Also on a failure: a source left retrying would keep this test file from ever ending.
        await source.dispose();
      }
      assert.equal(frames[0]!.t, 0);
      assert.ok(frames[1]!.t > 0 && frames[1]!.t <= 1 + 1e-6);
      assert.equal(stats.consecutiveFailures, 0, 'backoff reset by the first frame');
      assert.equal(stats.gaps.length, 1);
      assert.equal(stats.gaps[0]!.startT, 0);
      assertNoChildrenLeftOn(port);
    });

    for (const binary of binaries) {
      it(`wrong credentials and a wrong path give clear errors (ffmpeg ${binary.version.text})`, async (t) => {
        const python = requireRtsp(t);
        if (!python) return;
        const s = await server(python, { user: 'admin', password: 'right' });
        const url = new URL(s.url);
        const check = (u: string) => checkSource(u, { ffmpeg: binary, frames: 1, socketTimeoutS: 3, timeoutS: 15, decode: 'all' });
        await assert.rejects(check(url.href), (e: unknown) => isVigilError(e) && e.code === 'SOURCE_AUTH' && /401/.test(e.message));
        url.username = 'admin';
        url.password = 'wrong';
        await assert.rejects(check(url.href), (e: unknown) => isVigilError(e) && e.code === 'SOURCE_AUTH' && !e.message.includes('wrong'));
        url.password = 'right';
        const ok = await check(url.href);
        assert.equal(ok.frames.length, 1);
        url.pathname = '/no-such-stream';
        await assert.rejects(check(url.href), (e: unknown) => isVigilError(e) && e.code === 'SOURCE_NOT_FOUND' && /404/.test(e.message));
        assertNoChildrenLeftOn(s.port);
      });
    }
  });

  // Alone, after the others: it compares the stream clock with the wall clock across the outage.
  it('survives the server being killed mid-stream: reconnects, records the gap, keeps time monotonic', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    let s = await server(python);
    const port = s.port;
    const source = await openSource(s.url, { fps: 2, decode: 'all', socketTimeoutS: 2, stallTimeoutS: 5, backoff: { initialMs: 250, maxMs: 1000, jitter: 0 } });
    const gaps: unknown[] = [];
    source.on('gap', (g) => gaps.push(g));
    const before = await readUntil(source, (f) => (f.at(-1)?.t ?? 0) >= 2, 30_000);
    const pidBefore = source.ffmpegPid;
    const killedAt = Date.now();
    await s.kill();
    await source.waitFor(['backing-off'], 10_000);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(['backing-off', 'connecting'].includes(source.currentState));
    assert.equal(source.stats().gaps.at(-1)?.endT, null, 'gap open while the server is down');
    s = await server(python, { port });
    const afterFrames = await readUntil(source, (f) => f.length >= 4, 30_000);
    const stats = source.stats();
    await source.dispose();

    const all = [...before, ...afterFrames];
    assert.ok(all.every((f, i) => i === 0 || f.t > all[i - 1]!.t), `monotonic: ${all.map((f) => f.t.toFixed(2)).join(',')}`);
    assert.ok(afterFrames.some((f) => f.run >= 1), 'frames from a new ffmpeg run');
    assert.ok(stats.restarts >= 1);
    assert.equal(stats.state, 'live');
    const gap = stats.gaps[0]!;
    assert.equal(gap.startT, all.filter((f) => f.run === 0).at(-1)!.t, 'the gap starts at the last frame before the outage');
    assert.equal(gap.endT, all.find((f) => f.run >= 1)!.t, 'and ends at the first frame after it');
    assert.ok(before.length > 0);
    assert.ok(gap.endT !== null && gap.endT > gap.startT);
    // The stream clock continues by the wall-clock length of the outage.
    const outage = (gap.endWall! - killedAt) / 1000;
    assert.ok(Math.abs(gap.endT! - gap.startT - outage) < 1.5, `gap ${gap.endT! - gap.startT} s vs outage ${outage} s`);
    assert.ok(gap.attempts >= 1);
    assert.ok(gaps.length >= 2, 'gap events at start and end');
    assert.notEqual(pidBefore, null);
    assertNoChildrenLeft('after the reconnect test');
  });
});
