/**
 * Real decoding of generated clips with both ffmpeg builds (the npm 4.1 one and the system one):
 * pts-exact sampling against the clip's ground truth, keyframe-only decoding and its fallback,
 * ffmpeg-side scaling, queue policies, max-frames, seeking, uploads, stop, and the model adapter.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { bundledFfmpeg, type FfmpegBinary, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { frameToModelInput, modelFrameSize } from '../../ingest/modelAdapter.js';
import { openSource } from '../../ingest/openSource.js';
import { PALETTE, type ProbeClip } from '../../ingest/probeClip.js';
import type { Frame } from '../../ingest/types.js';
import { uploadsDir } from '../../ingest/upload.js';
import { parsePreprocessorConfig } from '../../src/model/preprocess/preprocessorConfig.js';
import { colourOf, irregularGopClip, meanRgb, needleClip } from '../fixtures/ingestClips.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';

const binaries: FfmpegBinary[] = [];
const bundled = bundledFfmpeg();
if (bundled) binaries.push(bundled);
const system = systemFfmpeg();
if (system) binaries.push(system);
else if (process.env.CI === 'true') throw new Error('CI=true but no system ffmpeg: install the Debian ffmpeg package (apt-get install ffmpeg)');
else process.stderr.write('\n*** No system ffmpeg: the file tests run with the bundled 4.1 build only (apt-get install ffmpeg to test both) ***\n\n');

async function collect(source: AsyncIterable<Frame>, onFrame?: (f: Frame) => Promise<void> | void): Promise<Frame[]> {
  const frames: Frame[] = [];
  for await (const f of source) {
    frames.push(f);
    await onFrame?.(f);
  }
  return frames;
}

/** For each needle: the sampled frames that show it (background at a corner, square at the centre). */
function needleHits(frames: Frame[], clip: ProbeClip): Array<{ start: number; end: number; hits: number[] }> {
  return clip.truth.needles.map((n) => {
    const hits = frames
      .filter((f) => {
        const corner = colourOf(meanRgb(f, 4, 4, 2), PALETTE);
        const centre = colourOf(meanRgb(f, f.width >> 1, f.height >> 1, 2), PALETTE);
        return corner === n.background && centre === n.square;
      })
      .map((f) => f.t);
    return { start: n.start, end: n.end, hits };
  });
}

function assertNeedlesFound(frames: Frame[], clip: ProbeClip, fps: number): void {
  for (const { start, end, hits } of needleHits(frames, clip)) {
    assert.ok(hits.length > 0, `needle at ${start} s not seen`);
    assert.ok(hits[0]! >= start - 1e-6 && hits[0]! < start + 1 / fps, `needle at ${start} s first seen at ${hits[0]} (F=${fps})`);
    assert.ok(hits.every((t) => t >= start - 1e-6 && t < end), `needle ${start}-${end} seen at ${hits.join(',')}`);
  }
  // Every sample instant k/F inside a needle shows it, and the haystack is never mistaken for one.
  for (const { start, end, hits } of needleHits(frames, clip)) {
    const expected = Math.ceil(end * fps - 1e-9) - Math.ceil(start * fps - 1e-9);
    assert.equal(hits.length, expected, `needle ${start}-${end}: ${hits.join(',')}`);
  }
}

let clip: ProbeClip;
before(async () => {
  clip = await needleClip();
});
after(() => assertNoChildrenLeft('after the file tests'));

for (const binary of binaries) {
  describe(`file ingest with ffmpeg ${binary.version.text} (${binary.origin})`, () => {
    it('samples at 1 fps with pts-exact timestamps; keyframe-only decoding gives the same frames for a tenth of the work', async () => {
      const auto = await openSource(clip.clip, { fps: 1, ffmpeg: binary });
      const a = await collect(auto);
      const full = await openSource(clip.clip, { fps: 1, ffmpeg: binary, decode: 'all' });
      const b = await collect(full);
      assert.deepEqual(a.map((f) => f.t), Array.from({ length: 60 }, (_, i) => i));
      assert.deepEqual(b.map((f) => f.t), a.map((f) => f.t));
      const sa = auto.stats();
      const sb = full.stats();
      assert.equal(sa.decodeMode, 'keyframes');
      assert.equal(sb.decodeMode, 'all');
      assert.equal(sa.state, 'ended');
      assert.equal(sa.endReason, 'eof');
      assert.ok(sa.framesDecoded <= 61, `keyframe mode decoded ${sa.framesDecoded}`);
      assert.ok(sb.framesDecoded >= 599, `full decode decoded ${sb.framesDecoded}`);
      assert.equal(sa.framesSampled, 60);
      assert.equal(sa.framesDropped, 0);
      assertNeedlesFound(a, clip, 1);
      assertNeedlesFound(b, clip, 1);
      assert.ok(a.every((f) => f.keyframe && f.width === 320 && f.height === 180 && f.data.length === 320 * 180 * 3));
      assertNoChildrenLeft();
    });

    it('samples at 2 fps: keyframes too sparse, so reference frames only; exact with full decoding', async () => {
      const refs = await openSource(clip.clip, { fps: 2, ffmpeg: binary });
      const frames = await collect(refs);
      const stats = refs.stats();
      assert.equal(stats.decodeMode, 'refs');
      assert.ok(stats.framesDecoded < 450, `refs mode decoded ${stats.framesDecoded} of 600`);
      // One frame per half-second bin, a few frame intervals after the bin start at most.
      assert.equal(frames.length, 120);
      assert.ok(frames.every((f, i) => f.t >= i / 2 - 1e-6 && f.t < i / 2 + 0.5), frames.map((f) => f.t).join(','));
      assertNeedlesFound(frames, clip, 2);
      const full = await openSource(clip.clip, { fps: 2, ffmpeg: binary, decode: 'all' });
      const exact = await collect(full);
      assert.deepEqual(exact.map((f) => f.t), Array.from({ length: 120 }, (_, i) => i / 2));
      assertNeedlesFound(exact, clip, 2);
    });

    it('samples at 0.25 fps from keyframes', async () => {
      const slow = await openSource(clip.clip, { fps: 0.25, ffmpeg: binary });
      const sparse = await collect(slow);
      assert.deepEqual(sparse.map((f) => f.t), Array.from({ length: 15 }, (_, i) => i * 4));
      assert.equal(slow.stats().decodeMode, 'keyframes');
    });

    it('lets ffmpeg scale: exact size and longest edge', async () => {
      const exact = await collect(await openSource(clip.clip, { fps: 1, ffmpeg: binary, size: { width: 64, height: 64 }, maxFrames: 13 }));
      assert.equal(exact.length, 13);
      assert.ok(exact.every((f) => f.width === 64 && f.height === 64 && f.data.length === 64 * 64 * 3));
      assert.equal(colourOf(meanRgb(exact[12]!, 4, 4, 2), PALETTE), 'red');
      assert.equal(colourOf(meanRgb(exact[12]!, 32, 32, 2), PALETTE), 'green');
      const edge = await collect(await openSource(clip.clip, { fps: 1, ffmpeg: binary, size: { longestEdge: 100 }, maxFrames: 2 }));
      assert.deepEqual([edge[0]!.width, edge[0]!.height], [100, 56]);
    });

    it('falls back from keyframe-only to full decoding when keyframes get sparse, without a hole in the timeline', async () => {
      const irregular = await irregularGopClip();
      const source = await openSource(irregular.clip, { fps: 1, ffmpeg: binary });
      const frames = await collect(source);
      const stats = source.stats();
      assert.deepEqual(frames.map((f) => f.t), Array.from({ length: 30 }, (_, i) => i));
      assert.equal(stats.decodeMode, 'all', 'ended in full-decode mode');
      assert.equal(stats.restarts, 1);
      assert.ok(stats.warnings.some((w) => /switching to full decoding/.test(w)), JSON.stringify(stats.warnings));
      assert.deepEqual(stats.gaps, [], 'a file restart is not an outage');
      assertNeedlesFound(frames, irregular, 1);
    });
  });
}

describe('queue, seeking, stop and uploads', () => {
  it('block policy (files): a slow consumer loses nothing and ffmpeg waits', async () => {
    const source = await openSource(clip.clip, { fps: 2, maxFrames: 12, queue: { capacity: 2 } });
    let maxQueued = 0;
    const frames = await collect(source, async () => {
      maxQueued = Math.max(maxQueued, source.stats().queued);
      await new Promise((r) => setTimeout(r, 30));
    });
    assert.equal(source.stats().queuePolicy, 'block');
    assert.equal(frames.length, 12);
    assert.equal(source.stats().framesDropped, 0);
    assert.ok(maxQueued <= 3, `queue held ${maxQueued}`);
  });

  it('drop-oldest policy: a slow consumer sees the freshest frames, drops are counted, lag is reported', async () => {
    const source = await openSource(clip.clip, { fps: 2, decode: 'all', queue: { capacity: 2, policy: 'drop-oldest' } });
    let lag = 0;
    const frames = await collect(source, async () => {
      lag = Math.max(lag, source.stats().lagMs);
      await new Promise((r) => setTimeout(r, 25));
    });
    const stats = source.stats();
    assert.ok(stats.framesDropped > 0, 'nothing dropped');
    assert.equal(stats.framesDropped + frames.length, stats.framesSampled);
    assert.equal(frames.at(-1)!.t, 59.5, 'the newest frame survives');
    assert.ok(lag > 0);
    assert.ok(frames.every((f, i) => i === 0 || f.t > frames[i - 1]!.t));
  });

  it('drop-newest policy keeps the oldest frames', async () => {
    const source = await openSource(clip.clip, { fps: 2, queue: { capacity: 3, policy: 'drop-newest' } });
    await new Promise((r) => setTimeout(r, 1500)); // let ffmpeg run ahead
    const first = await source.next();
    assert.equal(first!.t, 0);
    await source.dispose();
    assert.ok(source.stats().framesDropped > 0);
  });

  it('starts at a given time and stops mid-stream without leaving ffmpeg behind', async () => {
    const source = await openSource(clip.clip, { fps: 1, startAtS: 30, decode: 'all' });
    const first = await source.next();
    assert.equal(first!.t, 30);
    assert.ok(source.ffmpegPid !== null);
    await source.dispose();
    assert.equal(source.currentState, 'ended');
    assert.equal(source.stats().endReason, 'stopped');
    assert.equal(await source.next(), null);
    assertNoChildrenLeft('after dispose()');
  });

  it('leaving a for-await loop early stops the source', async () => {
    const source = await openSource(clip.clip, { fps: 2, decode: 'all' });
    for await (const f of source) if (f.t >= 1) break;
    assert.equal(source.currentState, 'ended');
    assertNoChildrenLeft('after break');
  });

  it('reads an upload (spooled to the cache, deleted on stop)', async () => {
    const before = fs.existsSync(uploadsDir()) ? fs.readdirSync(uploadsDir()).length : 0;
    const source = await openSource({ upload: fs.createReadStream(clip.clip), name: 'cam.mp4' }, { fps: 1, maxFrames: 5 });
    const frames = await collect(source);
    assert.deepEqual(frames.map((f) => f.t), [0, 1, 2, 3, 4]);
    assert.equal(source.stats().kind, 'upload');
    assert.equal(source.stats().source, 'upload:cam.mp4');
    assert.equal(fs.readdirSync(uploadsDir()).length, before);
  });

  it('turns a frame into the model input (CHW float32, normalised)', async () => {
    const config = parsePreprocessorConfig({}, 'idefics3', 'test config');
    const source = await openSource(clip.clip, { fps: 1, startAtS: 13, maxFrames: 1, size: modelFrameSize(64) });
    const [frame] = await collect(source);
    const input = await frameToModelInput(frame!, config, 64);
    assert.deepEqual([input.count, input.height, input.width, input.pixelValues.length], [1, 64, 64, 3 * 64 * 64]);
    const at = (c: number, y: number, x: number) => input.pixelValues[c * 64 * 64 + y * 64 + x]!;
    assert.ok(at(0, 2, 2) > 0.9 && at(1, 2, 2) < -0.9, 'red corner');
    assert.ok(at(1, 32, 32) > 0.9 && at(0, 32, 32) < -0.9, 'green centre');
  });
});
