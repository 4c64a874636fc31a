/**
 * HTTP sources from a loopback server: a progressive MP4 (range requests) and an HLS VOD playlist
 * made by ffmpeg from the same needle clip. Sampled timestamps match the needle times within one
 * sample period, with both ffmpeg builds.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundledFfmpeg, type FfmpegBinary, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { openSource } from '../../ingest/openSource.js';
import { PALETTE, type ProbeClip } from '../../ingest/probeClip.js';
import type { Frame } from '../../ingest/types.js';
import { startHttpServer, type TestServer } from '../fixtures/httpServer.js';
import { colourOf, hlsOf, meanRgb, needleClip, tempDir } from '../fixtures/ingestClips.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';

const binaries = [systemFfmpeg(), bundledFfmpeg()].filter((b): b is FfmpegBinary => b !== null);

let clip: ProbeClip;
let server: TestServer;

before(async () => {
  clip = await needleClip();
  const dir = tempDir();
  fs.copyFileSync(clip.clip, path.join(dir, 'clip.mp4'));
  hlsOf(clip.clip, dir);
  server = await startHttpServer(dir);
});

after(async () => {
  await server?.close();
  assertNoChildrenLeft('after the HTTP tests');
});

function checkNeedles(frames: Frame[], fps: number): void {
  for (const n of clip.truth.needles) {
    const hits = frames
      .filter((f) => colourOf(meanRgb(f, 4, 4, 2), PALETTE) === n.background && colourOf(meanRgb(f, f.width >> 1, f.height >> 1, 2), PALETTE) === n.square)
      .map((f) => f.t);
    assert.ok(hits.length > 0, `needle at ${n.start} s not seen`);
    assert.ok(hits[0]! >= n.start - 1e-6 && hits[0]! < n.start + 1 / fps, `needle at ${n.start} s first seen at ${hits[0]}`);
    assert.ok(hits.every((t) => t < n.end), `needle ${n.start}-${n.end} seen at ${hits.join(',')}`);
  }
}

for (const binary of binaries) {
  describe(`HTTP with ffmpeg ${binary.version.text} (${binary.origin})`, () => {
    it('a progressive MP4', async () => {
      const source = await openSource(`${server.base}/clip.mp4`, { ffmpeg: binary, fps: 1 });
      const frames: Frame[] = [];
      for await (const f of source) frames.push(f);
      const stats = source.stats();
      assert.deepEqual(frames.map((f) => f.t), Array.from({ length: 60 }, (_, i) => i));
      assert.deepEqual([stats.kind, stats.live, stats.queuePolicy, stats.state, stats.endReason], ['http', false, 'block', 'ended', 'eof']);
      assert.equal(stats.decodeMode, 'keyframes');
      checkNeedles(frames, 1);
      assertNoChildrenLeft();
    });

    it('an HLS playlist made by ffmpeg', async () => {
      const source = await openSource(`${server.base}/hls/index.m3u8`, { ffmpeg: binary, fps: 2, decode: 'all' });
      const frames: Frame[] = [];
      for await (const f of source) frames.push(f);
      const stats = source.stats();
      assert.deepEqual([stats.kind, stats.live, stats.state], ['hls', false, 'ended']);
      assert.match(source.probe?.container ?? '', /^hls/);
      assert.equal(frames[0]!.t, 0);
      assert.ok(frames.length >= 118 && frames.length <= 120, `${frames.length} frames`);
      assert.ok(frames.every((f, i) => i === 0 || Math.abs(f.t - frames[i - 1]!.t - 0.5) < 1e-3), 'one frame per half second');
      checkNeedles(frames, 2);
      assertNoChildrenLeft();
    });
  });
}
