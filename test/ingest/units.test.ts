/**
 * Unit tests of ingest's pure parts: version detection and argument building for both ffmpeg
 * generations, source parsing, log parsing, frame assembly, queue policies, backoff, watchdog,
 * error classification, needle specs. No ffmpeg runs here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { Backoff } from '../../ingest/backoff.js';
import { decodeArgs, networkInputArgs, probeArgs, selectExpression, videoFilter } from '../../ingest/ffmpegArgs.js';
import { bundledFfmpeg, capabilitiesOf, ffmpegBinaryAt, parseVersionOutput, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { classifyStderr, ffmpegFailure } from '../../ingest/ffmpegErrors.js';
import { parseSelect, parseShowinfo } from '../../ingest/ffmpegLog.js';
import { FrameAssembler, type RawFrame } from '../../ingest/frameAssembler.js';
import { FrameQueue } from '../../ingest/frameQueue.js';
import { resolveOptions, targetSize } from '../../ingest/options.js';
import { keyframeStats, keyframesSuffice, parseProbe } from '../../ingest/probe.js';
import { framecrcKeyframes, parseInputDescription } from '../../ingest/ffmpegProbe.js';
import { parseNeedle, probeClipGraph, validateClipOptions } from '../../ingest/probeClip.js';
import { parseSource, redactUrl } from '../../ingest/sourceSpec.js';
import { GapLog, RateMeter } from '../../ingest/stats.js';
import { StallWatchdog } from '../../ingest/watchdog.js';
import { isVigilError } from '../../common/errors.js';
import { tempDir } from '../fixtures/ingestClips.js';

const V41 = `ffmpeg version N-47683-g0e8eb07980-static https://johnvansickle.com/ffmpeg/  Copyright (c) 2000-2018 the FFmpeg developers
built with gcc 6.3.0 (Debian 6.3.0-18+deb9u1) 20170516
libavutil      56. 24.101 / 56. 24.101
libavcodec     58. 42.100 / 58. 42.100
libavformat    58. 24.100 / 58. 24.100`;
const V51 = `ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers
libavutil      57. 28.100 / 57. 28.100
libavcodec     59. 37.100 / 59. 37.100
libavformat    59. 27.100 / 59. 27.100`;
const V50 = `ffmpeg version 5.0.3 Copyright (c) 2000-2022 the FFmpeg developers
libavutil      57. 17.100 / 57. 17.100
libavformat    59. 16.100 / 59. 16.100`;
const V70 = `ffmpeg version n7.0.2 Copyright (c) 2000-2024 the FFmpeg developers
libavutil      59.  8.100 / 59.  8.100
libavformat    61.  1.100 / 61.  1.100`;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NET = { rtspTransport: 'tcp' as const, socketTimeoutS: 10 };
const PLAN = { fps: 1, mode: 'all' as const, size: null, sar: 1, startAtS: 0, threads: 0, scaleFlags: 'bicubic', analyzeUs: 1_000_000 };

function expectVigil(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isVigilError(error), `expected a VigilError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

describe('ffmpeg version detection and arguments', () => {
  it('reads release and library versions, including git builds', () => {
    const v41 = parseVersionOutput(V41);
    assert.equal(v41.major, 4);
    assert.deepEqual(v41.libavformat, [58, 24]);
    const v51 = parseVersionOutput(V51);
    assert.deepEqual([v51.major, v51.minor], [5, 1]);
    assert.equal(parseVersionOutput(V70).major, 7);
  });

  it('picks $VIGIL_FFMPEG, else the newer of system and bundled', () => {
    const bundled = bundledFfmpeg();
    const system = systemFfmpeg();
    if (!bundled) return;
    const locate = (env: Record<string, string | undefined>) => {
      const code = `const m = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'ingest/ffmpegBinary.ts')).href)}); const b = m.locateFfmpeg(); console.log(JSON.stringify({ path: b.ffmpegPath, origin: b.origin, major: b.version.major }));`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { path: string; origin: string; major: number };
    };
    const forced = locate({ VIGIL_FFMPEG: bundled.ffmpegPath });
    assert.deepEqual([forced.path, forced.origin, forced.major], [bundled.ffmpegPath, 'env', 4]);
    const picked = locate({ VIGIL_FFMPEG: undefined });
    if (system && system.version.major > bundled.version.major) assert.equal(picked.origin, 'system');
    else assert.ok(['system', 'bundled'].includes(picked.origin));
    expectVigil(() => ffmpegBinaryAt('/nonexistent/ffmpeg'), 'FFMPEG_MISSING');
  });

  it('derives capabilities: fps_mode from 5.1, RTSP -timeout from libavformat 59', () => {
    assert.deepEqual(capabilitiesOf(parseVersionOutput(V41)), { fpsMode: false, rtspSocketTimeoutOption: 'stimeout' });
    assert.deepEqual(capabilitiesOf(parseVersionOutput(V50)), { fpsMode: false, rtspSocketTimeoutOption: 'timeout' });
    assert.deepEqual(capabilitiesOf(parseVersionOutput(V51)), { fpsMode: true, rtspSocketTimeoutOption: 'timeout' });
    assert.deepEqual(capabilitiesOf(parseVersionOutput(V70)), { fpsMode: true, rtspSocketTimeoutOption: 'timeout' });
  });

  it('builds RTSP options per version (never -timeout on 4.x, where it means listen)', () => {
    const RTSP = { transport: 'rtsp', demuxer: null, protocols: 'rtsp,rtp,udp,tcp' } as const;
    const HTTP = { transport: 'http', demuxer: 'mov', protocols: 'http,tcp' } as const;
    const old = networkInputArgs(RTSP, capabilitiesOf(parseVersionOutput(V41)), NET);
    assert.ok(old.includes('-stimeout'));
    assert.ok(!old.includes('-timeout'));
    assert.equal(old[old.indexOf('-stimeout') + 1], '10000000');
    const recent = networkInputArgs(RTSP, capabilitiesOf(parseVersionOutput(V51)), { rtspTransport: 'udp', socketTimeoutS: 2.5 });
    assert.equal(recent[recent.indexOf('-timeout') + 1], '2500000');
    assert.equal(recent[recent.indexOf('-rtsp_transport') + 1], 'udp');
    const http = networkInputArgs(HTTP, capabilitiesOf(parseVersionOutput(V41)), NET);
    assert.equal(http[http.indexOf('-rw_timeout') + 1], '10000000');
    assert.ok(http.every((a) => !a.includes(' ')), 'fluent-ffmpeg splits arguments that contain one space');
    // ffmpeg reaches only Vigil's loopback relay, with the demuxer Vigil chose: no tls, no playlists.
    assert.equal(http[http.indexOf('-protocol_whitelist') + 1], 'http,tcp');
    assert.equal(http[http.indexOf('-f') + 1], 'mov');
    assert.ok(!old.includes('-f'), 'rtsp: the relay URL picks the rtsp demuxer');
  });

  it('uses -vsync before 5.1 and -fps_mode after, and keyframe skipping only when asked', () => {
    const FILE = { transport: 'file', demuxer: 'matroska', protocols: 'file' } as const;
    const a41 = decodeArgs('file', FILE, capabilitiesOf(parseVersionOutput(V41)), NET, PLAN);
    assert.ok(a41.outputOptions.includes('-vsync') && !a41.outputOptions.includes('-fps_mode'));
    assert.ok(!a41.inputOptions.includes('-skip_frame'));
    const a51 = decodeArgs('file', FILE, capabilitiesOf(parseVersionOutput(V51)), NET, { ...PLAN, mode: 'keyframes', startAtS: 12 });
    assert.ok(a51.outputOptions.includes('-fps_mode') && !a51.outputOptions.includes('-vsync'));
    assert.equal(a51.inputOptions[a51.inputOptions.indexOf('-skip_frame') + 1], 'nokey');
    assert.equal(a51.inputOptions[a51.inputOptions.indexOf('-ss') + 1], '12');
    assert.ok([...a41.inputOptions, ...a41.outputOptions, a41.filter].every((a) => !a.includes(' ')));
    assert.deepEqual(a41.inputOptions.slice(a41.inputOptions.indexOf('-protocol_whitelist'), a41.inputOptions.indexOf('-protocol_whitelist') + 4), ['-protocol_whitelist', 'file', '-f', 'matroska']);
  });

  it('samples by pts bins and scales only when asked', () => {
    assert.equal(selectExpression(2), 'isnan(prev_selected_t)+gt(floor(t*2),floor(prev_selected_t*2))+lt(t,prev_selected_t)');
    assert.match(selectExpression(0.5, 12), /floor\(\(t\+12\)\*0\.5\)/);
    assert.match(videoFilter({ ...PLAN, size: { width: 64, height: 36 } }), /scale=64:36:flags=bicubic,setsar=1,format=rgb24,showinfo$/);
    assert.doesNotMatch(videoFilter(PLAN), /scale/);
    assert.match(videoFilter({ ...PLAN, sar: 16 / 11 }), /scale='trunc\(iw\*sar\/2\)\*2':ih/);
    const probe = probeArgs('rtsp', { transport: 'rtsp', demuxer: null, protocols: 'rtsp,rtp,udp,tcp', input: 'rtsp://127.0.0.1:9/x' }, capabilitiesOf(parseVersionOutput(V51)), NET, 2.5);
    assert.equal(probe[probe.indexOf('-read_intervals') + 1], '%+2.5');
    assert.equal(probe.at(-1), 'rtsp://127.0.0.1:9/x');
  });

  it('computes output sizes from display aspect and rotation', () => {
    const video = { codec: 'h264', codecLongName: null, profile: null, width: 1920, height: 1080, fps: 30, pixFmt: null, rotation: 0, sar: 1 };
    assert.deepEqual(targetSize({ longestEdge: 512 }, video), { width: 512, height: 288 });
    assert.deepEqual(targetSize({ longestEdge: 512 }, { ...video, rotation: 90 }), { width: 288, height: 512 });
    assert.deepEqual(targetSize({ width: 384, height: 384 }, video), { width: 384, height: 384 });
    assert.equal(targetSize(null, video), null);
  });
});

describe('source parsing', () => {
  it('accepts paths, file://, rtsp(s) and http(s); recognises HLS', () => {
    const dir = tempDir();
    const file = path.join(dir, 'a.mp4');
    fs.writeFileSync(file, 'x');
    assert.equal(parseSource(file).kind, 'file');
    assert.equal(parseSource(`file://${file}`).input, file);
    assert.equal(parseSource('rtsp://user:pw@cam.local:554/live').kind, 'rtsp');
    assert.equal(parseSource('rtsp://user:pw@cam.local:554/live').display, 'rtsp://***@cam.local:554/live');
    assert.equal(parseSource('https://example.com/v/index.m3u8?x=1').kind, 'hls');
    assert.equal(parseSource('http://example.com/v.mp4').kind, 'http');
    assert.equal(parseSource('http://example.com/v.mp4').live, null);
    assert.equal(redactUrl('http://a:b@h/x'), 'http://***@h/x');
  });

  it('refuses schemes ffmpeg could abuse, missing and empty files', () => {
    for (const bad of ['ftp://h/x.mp4', 'concat:/etc/passwd|/etc/hosts', 'data:video/mp4;base64,AAAA', 'pipe:0', 'subfile:,,start,0,end,0,,:/etc/passwd', 'gopher://h/x']) {
      expectVigil(() => parseSource(bad), 'SOURCE_SCHEME', /not allowed/);
    }
    expectVigil(() => parseSource('rtsp://h/x', { allowedSchemes: ['http', 'https'] }), 'SOURCE_SCHEME');
    const dir = tempDir();
    expectVigil(() => parseSource(path.join(dir, 'missing.mp4')), 'FILE_NOT_FOUND');
    expectVigil(() => parseSource(dir), 'BAD_INPUT', /directory/);
    const empty = path.join(dir, 'empty.mp4');
    fs.writeFileSync(empty, '');
    expectVigil(() => parseSource(empty), 'NOT_A_VIDEO', /empty/);
    expectVigil(() => parseSource('   '), 'BAD_INPUT');
  });

  it('validates options with clear messages', () => {
    expectVigil(() => resolveOptions({ fps: 0 }), 'BAD_INPUT', /fps/);
    expectVigil(() => resolveOptions({ queue: { policy: 'lifo' as never } }), 'BAD_INPUT', /policy/);
    expectVigil(() => resolveOptions({ size: { width: 0, height: 3 } }), 'BAD_INPUT', /size/);
    expectVigil(() => resolveOptions({ backoff: { initialMs: 10, maxMs: 5 } }), 'BAD_INPUT', /Backoff/);
    assert.equal(resolveOptions({}).fps, 1);
  });
});

describe('ffmpeg log parsing and frame assembly', () => {
  it('parses showinfo and select lines of both builds, also when another thread cut in', () => {
    const si41 = '[Parsed_showinfo_2 @ 0x2f434080] [info] n:   3 pts:  46080 pts_time:3       pos:   115953 fmt:rgb24 sar:1/1 s:160x120 i:P iskey:1 type:I checksum:DC346698 plane_checksum:[DC346698] mean:[124 ] stdev:[117.1 ]';
    assert.deepEqual(parseShowinfo(si41), { n: 3, ptsTime: 3, width: 160, height: 120, keyframe: true });
    const si51 = '[Parsed_showinfo_3 @ 0x559bedcd8200] [info] n:   7 pts:  53760 pts_time:3.5     pos:   135551 fmt:rgb24 sar:1/1 s:64x48 i:P iskey:0 type:P nal_unit_type: 1(Coded slice of a non-IDR picture), nal_ref_idc: 0';
    assert.deepEqual(parseShowinfo(si51), { n: 7, ptsTime: 3.5, width: 64, height: 48, keyframe: false });
    assert.equal(parseShowinfo('[Parsed_showinfo_2 @ 0x1] [info] config in time_base: 1/15360, frame_rate: 30/1'), null);
    const sel = '[Parsed_select_0 @ 0x56086569d140] [debug] n:60.000000 pts:30720.000000 t:2.000000 key:1nal_unit_type: 1(Coded slice of a non-IDR picture), nal_ref_idc: 0';
    assert.deepEqual(parseSelect(sel), { t: 2, keyframe: true });
    assert.equal(parseSelect("[Parsed_select_0 @ 0x1] [debug] Setting 'expr' to value 'isnan(prev_selected_t)'"), null);
    assert.equal(parseSelect('[Parsed_select_0 @ 0x1] [debug]  interlace_type:P pict_type:B scene:nan -> select:0.000000 select_out:-1'), null);
  });

  it('pairs headers and bytes in any arrival order, across chunk boundaries and size changes', () => {
    const frames: RawFrame[] = [];
    const a = new FrameAssembler((f) => frames.push(f));
    const f0 = Buffer.alloc(2 * 2 * 3, 1);
    const f1 = Buffer.alloc(4 * 2 * 3, 2);
    a.bytes(f0.subarray(0, 5));
    assert.equal(frames.length, 0);
    a.header({ n: 0, ptsTime: 0, width: 2, height: 2, keyframe: true });
    assert.equal(frames.length, 0);
    a.bytes(Buffer.concat([f0.subarray(5), f1.subarray(0, 3)]));
    assert.equal(frames.length, 1);
    a.header({ n: 1, ptsTime: 0.5, width: 4, height: 2, keyframe: false });
    a.bytes(f1.subarray(3));
    assert.equal(frames.length, 2);
    assert.deepEqual([...frames[1]!.data], [...f1]);
    assert.equal(frames[1]!.info.ptsTime, 0.5);
  });

  it('skips the bytes of a frame whose header line was lost, staying aligned', () => {
    const frames: RawFrame[] = [];
    const a = new FrameAssembler((f) => frames.push(f));
    a.bytes(Buffer.alloc(12, 7)); // frame 0, header lost
    a.bytes(Buffer.alloc(12, 9)); // frame 1
    a.header({ n: 1, ptsTime: 1, width: 2, height: 2, keyframe: false });
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.data[0], 9);
    assert.equal(a.lostFrames, 1);
  });
});

describe('frame queue policies', () => {
  const item = (i: number) => ({ wallTime: Date.now() - 100, i });

  it('drop-oldest keeps the newest frames and counts drops', async () => {
    const q = new FrameQueue<ReturnType<typeof item>>(2, 'drop-oldest');
    for (let i = 0; i < 5; i++) q.push(item(i));
    assert.equal(q.dropped, 3);
    assert.ok(q.lagMs() >= 100);
    assert.deepEqual([(await q.shift())!.i, (await q.shift())!.i], [3, 4]);
    assert.equal(q.lagMs(), 0);
  });

  it('drop-newest keeps the oldest frames', async () => {
    const q = new FrameQueue<ReturnType<typeof item>>(2, 'drop-newest');
    assert.deepEqual([0, 1, 2, 3].map((i) => q.push(item(i))), ['queued', 'queued', 'dropped-newest', 'dropped-newest']);
    assert.deepEqual([(await q.shift())!.i, (await q.shift())!.i], [0, 1]);
  });

  it('block reports full and wakes the producer when there is room; never drops', async () => {
    const q = new FrameQueue<ReturnType<typeof item>>(2, 'block');
    assert.equal(q.push(item(0)), 'queued');
    assert.equal(q.push(item(1)), 'full');
    let woken = false;
    q.onSpace(() => (woken = true));
    assert.equal(q.push(item(2)), 'full');
    assert.equal((await q.shift())!.i, 0);
    assert.equal(woken, false, 'still full after one shift (3 in a queue of 2)');
    await q.shift();
    assert.equal(woken, true);
    assert.equal(q.dropped, 0);
  });

  it('hands frames to a waiting consumer, ends with null, or rejects after fail()', async () => {
    const q = new FrameQueue<ReturnType<typeof item>>(2, 'drop-oldest');
    const waiting = q.shift();
    q.push(item(7));
    assert.equal((await waiting)!.i, 7);
    q.push(item(8));
    q.close();
    assert.equal((await q.shift())!.i, 8);
    assert.equal(await q.shift(), null);
    const failing = new FrameQueue<ReturnType<typeof item>>(2, 'block');
    failing.push(item(1));
    failing.fail(new Error('boom'));
    assert.equal((await failing.shift())!.i, 1);
    await assert.rejects(failing.shift(), /boom/);
  });
});

describe('reliability pieces', () => {
  it('backoff doubles from 1 s to a 60 s cap, and resets', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 60_000, factor: 2, jitter: 0, maxAttempts: Infinity });
    assert.deepEqual(Array.from({ length: 9 }, () => b.fail()), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
    b.reset();
    assert.equal(b.fail(), 1000);
    const jittered = new Backoff({ initialMs: 1000, maxMs: 60_000, factor: 2, jitter: 0.1, maxAttempts: 3 }, () => 1);
    assert.equal(jittered.fail(), 1100);
    jittered.fail();
    jittered.fail();
    assert.equal(jittered.exhausted, true);
  });

  it('watchdog fires once after silence, not while fed or paused', async () => {
    let fired = 0;
    const w = new StallWatchdog(150, () => fired++);
    w.arm();
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 50));
      w.feed();
    }
    assert.equal(fired, 0);
    w.pause();
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(fired, 0);
    w.resume();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fired, 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(fired, 1);
    w.disarm();
  });

  it('gap log opens, counts attempts and closes; rate meter measures fps', () => {
    const g = new GapLog(2);
    g.begin(10, 'refused', 'SOURCE_UNREACHABLE', 1000);
    g.begin(10, 'refused again', 'SOURCE_UNREACHABLE', 2000);
    const closed = g.end(14.5, 5000)!;
    assert.deepEqual([closed.startT, closed.endT, closed.attempts, closed.startWall, closed.endWall], [10, 14.5, 2, 1000, 5000]);
    assert.equal(g.end(20), null);
    const r = new RateMeter(10_000);
    for (let i = 0; i < 10; i++) r.mark(1000 + i * 500);
    assert.ok(Math.abs(r.rate(6000) - 2) < 0.01, String(r.rate(6000)));
  });
});

describe('probe parsing and error classification', () => {
  it('measures keyframe spacing and decides whether keyframes suffice', () => {
    const packets = [0, 0.5, 1, 1.5, 2, 2.5].map((t) => ({ pts_time: String(t), flags: t % 1 === 0 ? 'K_' : '__' }));
    const k = keyframeStats(packets);
    assert.deepEqual([k.count, k.maxIntervalS, k.meanIntervalS], [3, 1, 1]);
    assert.equal(keyframesSuffice(k, 1), true);
    assert.equal(keyframesSuffice(k, 2), false);
    assert.equal(keyframesSuffice(keyframeStats(packets.slice(0, 3)), 1), false, 'two keyframes are not enough evidence');
    // The tail after the last keyframe counts: keyframes at 0, 1, 2 but nothing until 4.9 -> >= 2.9 s.
    const tail = keyframeStats([0, 1, 2, 4.9].map((t) => ({ pts_time: String(t), flags: t < 3 ? 'K_' : '__' })));
    assert.ok(tail.maxIntervalS! > 2.8);
  });

  it('rejects probe results without a usable video stream', () => {
    expectVigil(() => parseProbe({ format: { format_name: 'wav', nb_streams: 1 }, streams: [] }, 'a.wav'), 'NOT_A_VIDEO', /no video stream/);
    expectVigil(() => parseProbe({ format: { format_name: 'avi' }, streams: [{ codec_type: 'video', codec_tag_string: 'ZZZZ', width: 1, height: 1 }] }, 'x.avi'), 'UNSUPPORTED_CODEC', /ZZZZ/);
    expectVigil(() => parseProbe({ format: { format_name: 'tty' }, streams: [{ codec_type: 'video', codec_name: 'ansi', width: 640, height: 400 }] }, 't.txt'), 'NOT_A_VIDEO', /text file/);
    const ok = parseProbe({ format: { format_name: 'mov,mp4', duration: '60.0', start_time: '0' }, streams: [{ codec_type: 'video', codec_name: 'h264', width: 320, height: 180, avg_frame_rate: '10/1', sample_aspect_ratio: '1:1', tags: { rotate: '90' } }] }, 'c.mp4');
    assert.deepEqual([ok.video.fps, ok.durationS, ok.video.rotation], [10, 60, 90]);
  });

  it('classifies the messages of both builds', () => {
    const cases: Array<[string, string]> = [
      ['[http @ 0x1] [error] Server returned 401 Unauthorized (authorization failed)', 'SOURCE_AUTH'],
      ['[rtsp @ 0x1] [error] method DESCRIBE failed: 401 Unauthorized', 'SOURCE_AUTH'],
      ['[error] http://127.0.0.1:1/x.mp4: Server returned 404 Not Found', 'SOURCE_NOT_FOUND'],
      ['[rtsp @ 0x1] [error] method DESCRIBE failed: 404 Not Found', 'SOURCE_NOT_FOUND'],
      ['[tcp @ 0x1] [error] Connection to tcp://127.0.0.1:18554?timeout=0 failed: Connection refused', 'SOURCE_UNREACHABLE'],
      ['[tcp @ 0x1] [error] Failed to resolve hostname nonexistent.invalid: Name or service not known', 'SOURCE_UNREACHABLE'],
      ['[error] rtsp://127.0.0.1:1/x: Connection timed out', 'SOURCE_TIMEOUT'],
      ['[error] Decoder (codec none) not found for input stream #0:0', 'UNSUPPORTED_CODEC'],
      ['[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] [error] moov atom not found', 'CORRUPT_VIDEO'],
      ['[error] notes.mp4: Invalid data found when processing input', 'NOT_A_VIDEO'],
    ];
    for (const [line, code] of cases) assert.equal(classifyStderr([line])?.code, code, line);
    const unknown = ffmpegFailure('x', 'decoding', ['[error] something odd happened'], { code: 1, signal: null });
    assert.equal(unknown.code, 'SOURCE_FAILED');
    assert.match(unknown.message, /something odd happened/);
    assert.equal(ffmpegFailure('x', 'probing', [], { code: null, signal: 'SIGSEGV' }).code, 'SOURCE_FAILED');
    // A file that ends early is damaged, not a failed connection; over the network it is the connection.
    const eof = ['[error] x.mp4: End of file'];
    assert.equal(ffmpegFailure('x.mp4', 'probing', eof, { code: 1, signal: null }, { kind: 'upload' }).code, 'CORRUPT_VIDEO');
    assert.equal(ffmpegFailure('x.mp4', 'probing', eof, { code: 1, signal: null }, { kind: 'file' }).code, 'CORRUPT_VIDEO');
    assert.equal(ffmpegFailure('http://h/x.mp4', 'probing', eof, { code: 1, signal: null }, { kind: 'http' }).code, 'SOURCE_UNREACHABLE');
  });
});

describe('probing through ffmpeg (when ffprobe crashes)', () => {
  it('parses the input description of the 4.1 build', () => {
    const lines = [
      "[info] Input #0, hls,applehttp, from 'http://127.0.0.1:18081/index.m3u8':",
      '[info]   Duration: 00:01:00.00, start: 1.600000, bitrate: 0 kb/s',
      '[info]     Stream #0:0: Video: h264 (High) ([27][0][0][0] / 0x001B), yuv420p, 640x360 [SAR 1:1 DAR 16:9], 10 fps, 10 tbr, 90k tbn, 20 tbc',
      '[info]     Stream #0:1: Audio: aac (LC), 44100 Hz, stereo, fltp',
      "[info] Output #0, framecrc, to 'pipe:':",
      '[info]     Stream #0:0: Video: mpeg4 (Simple Profile), yuv420p, 32x32, q=2-31, 25 fps',
    ];
    const d = parseInputDescription(lines);
    assert.equal(d.container, 'hls,applehttp');
    assert.deepEqual([d.durationS, d.startS, d.bitRate], [60, 1.6, null]);
    assert.deepEqual(d.video, { codec: 'h264', profile: 'High', width: 640, height: 360, pixFmt: 'yuv420p', fps: 10, sar: 1 });
    const live = parseInputDescription(["Input #0, rtsp, from 'rtsp://h/x':", '  Duration: N/A, start: 0.400000, bitrate: N/A', '    Stream #0:0: Video: h264 (High), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], 10 fps, 10 tbr, 90k tbn']);
    assert.equal(live.durationS, null);
    assert.equal(live.video?.width, 320);
    assert.equal(parseInputDescription(["Input #0, avi, from 'x.avi':", '    Stream #0:0: Video: none (ZZZZ / 0x5A5A5A5A), 160x120, 10 fps']).video?.codec, 'none');
  });

  it('reads keyframe flags from framecrc', () => {
    const text = ['#tb 0: 1/10', '0, -2, 0, 1, 100, 0x1, S=1, 1, 0x2', '0, -1, 4, 1, 10, 0x1, F=0x0', '0, 0, 2, 1, 10, 0x1, F=0x0', '0, 1, 10, 1, 100, 0x1', '0, 2, 14, 1, 10, 0x1, F=0x0', '0, 3, 20, 1, 100, 0x1', '0, 4, 25, 1, 10, 0x1, F=0x0'].join('\n');
    const k = framecrcKeyframes(text);
    assert.deepEqual([k.count, k.maxIntervalS, k.meanIntervalS], [3, 1, 1]);
  });
});

describe('probe clip specs', () => {
  it('parses needles and rejects bad ones', () => {
    assert.deepEqual(parseNeedle('120:red:green'), { start: 120, duration: 4, background: 'red', square: 'green' });
    assert.deepEqual(parseNeedle('430.5:blue:yellow:6'), { start: 430.5, duration: 6, background: 'blue', square: 'yellow' });
    expectVigil(() => parseNeedle('120:red'), 'BAD_INPUT', /TIME:BACKGROUND:SQUARE/);
    expectVigil(() => parseNeedle('120:red:teal'), 'BAD_INPUT', /unknown colour "teal"/);
    expectVigil(() => parseNeedle('-1:red:green'), 'BAD_INPUT');
    const base = { out: 'x.mp4', durationS: 60 };
    expectVigil(() => validateClipOptions({ ...base, needles: [parseNeedle('58:red:green')] }), 'BAD_INPUT', /past the end/);
    expectVigil(() => validateClipOptions({ ...base, needles: [parseNeedle('10:red:green'), parseNeedle('12:blue:white')] }), 'BAD_INPUT', /overlap/);
    expectVigil(() => validateClipOptions({ ...base, needles: [parseNeedle('10:red:red')] }), 'BAD_INPUT', /differ/);
    expectVigil(() => validateClipOptions({ ...base, width: 641, needles: [] }), 'BAD_INPUT', /even/);
  });

  it('draws each needle as a full-frame box and a centred square, after the noise', () => {
    const { graph, squareSize } = probeClipGraph({ out: 'x.mp4', durationS: 600, width: 640, height: 360, needles: [parseNeedle('120:red:green')] });
    assert.equal(squareSize, 120);
    assert.match(graph, /noise=c0s=30:c0f=t.*drawbox=x=0:y=0:w=640:h=360:color=0xff0000:t=fill:enable='gte\(t,120\)\*lt\(t,124\)'.*drawbox=x=260:y=120:w=120:h=120:color=0x00ff00/);
  });
});
