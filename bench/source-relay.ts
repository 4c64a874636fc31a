/**
 * What Vigil's source relays cost (docs/ingest.md, "What ffmpeg may open"): ffmpeg reading a
 * network source itself (the old path, the baseline) vs ffmpeg reading the loopback relay that
 * MediaGateway puts in front of it (ours), on clips this bench generates and serves on loopback.
 *
 *   node --import tsx bench/source-relay.ts [--seconds 60] [--repeats 3] [--rtsp-seconds 15]
 *                                           [--size 1280x720] [--bitrate 4M] [--ffmpeg system|bundled|PATH] [--no-rtsp]
 *
 * Cases (each repeated --repeats times, interleaved, median reported):
 * - http: a progressive MP4 (+faststart) on a loopback HTTP server (Range support, in a child
 *   process of its own so that the Node CPU measured here is the relay's, not the server's):
 *   decode = the decode arguments Vigil uses (ffmpegArgs.decodeArgs: every frame decoded, 1 frame/s
 *   sampled to rgb24, output to /dev/null), the two runs differing only in input, -f and
 *   -protocol_whitelist; copy = demux only (-c copy -f null), which exposes the relay's throughput;
 *   copy, moov at end = the same file without +faststart (ffmpeg seeks: Range requests).
 *   e2e = openSource(url, { fps: 1, decode: 'all' }) vs openSource(local path), frames counted.
 * - hls: the same clip as 2-s MPEG-TS segments (VOD): ffmpeg's own hls demuxer on the playlist
 *   URL vs MediaGateway (Vigil follows the playlist, ffmpeg reads mpegts from the relay).
 * - rtsp: when the GStreamer RTSP server fixture is available, a --rtsp-seconds clip streamed in
 *   real time, direct vs through the RTSP relay; wall time is real time, Node CPU per MiB is the
 *   figure.
 *
 * Metrics: wall time (ours includes gateway.open() and dispose), frames sampled/decoded (from
 * showinfo/select in ffmpeg's log), MiB ffmpeg read (its avio "Statistics" lines; for RTSP the
 * clip's H.264 payload up to the stop time), MiB the upstream server sent, ffmpeg CPU (reaped children, Linux), and
 * this process's CPU (process.cpuUsage) per MiB: the relay's cost, since the baseline leaves Node idle.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runChild } from '../ingest/childRunner.js';
import { decodeArgs, DEFAULT_NETWORK, type DecodePlan, type InputEndpoint } from '../ingest/ffmpegArgs.js';
import { describeVersion, resolveFfmpeg, type FfmpegBinary } from '../ingest/ffmpegBinary.js';
import { MediaGateway } from '../ingest/mediaGateway.js';
import { OutboundPolicy } from '../ingest/net/outboundPolicy.js';
import { openSource } from '../ingest/openSource.js';
import { parseSource } from '../ingest/sourceSpec.js';
import type { Frame, SourceKind } from '../ingest/types.js';
import { vigilCacheDir } from '../src/cacheDir.js';
import { rtspAvailability, startRtspServer } from '../test/fixtures/rtspServer.js';
import { childCpuS } from './childCpu.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    repeats: { type: 'string', default: '3' },
    'rtsp-seconds': { type: 'string', default: '15' },
    size: { type: 'string', default: '1280x720' },
    bitrate: { type: 'string', default: '4M' },
    ffmpeg: { type: 'string' },
    'no-rtsp': { type: 'boolean', default: false },
    /** Internal: run as the loopback file server (a child process of the bench). */
    serve: { type: 'string' },
  },
});

const log = (line: string) => process.stderr.write(`${line}\n`);
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The upstream server (child process): a folder over HTTP with Range support, counting bytes sent.

function serve(dir: string): void {
  const root = path.resolve(dir);
  const sockets = new Set<net.Socket>();
  let closedBytes = 0;
  let requests = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/__stats') {
      let bytes = closedBytes;
      for (const s of sockets) if (s !== req.socket) bytes += s.bytesWritten;
      const cpu = process.cpuUsage();
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ bytes, requests, cpuMs: (cpu.user + cpu.system) / 1000 }));
      return;
    }
    requests++;
    const file = path.join(root, path.basename(decodeURIComponent(url.pathname)));
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-length': '0' }).end();
      return;
    }
    const size = fs.statSync(file).size;
    const type = file.endsWith('.m3u8') ? 'application/vnd.apple.mpegurl' : file.endsWith('.ts') ? 'video/mp2t' : 'video/mp4';
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = size - 1;
    if (range && (range[1] || range[2])) {
      start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
      end = range[1] && range[2] ? Math.min(size - 1, Number(range[2])) : size - 1;
      if (start >= size) {
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': '0' }).end();
        return;
      }
      res.writeHead(206, { 'content-type': type, 'accept-ranges': 'bytes', 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': String(end - start + 1) });
    } else {
      res.writeHead(200, { 'content-type': type, 'accept-ranges': 'bytes', 'content-length': String(size) });
    }
    const stream = fs.createReadStream(file, { start, end });
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      closedBytes += s.bytesWritten;
    });
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${(server.address() as net.AddressInfo).port}\n`));
  process.on('SIGTERM', () => process.exit(0));
  // The bench holds our stdin: when it ends (the bench exited, even by a crash), so do we.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

interface Upstream {
  base: string;
  stats(): Promise<{ bytes: number; requests: number; cpuMs: number }>;
  close(): Promise<void>;
}

async function startUpstream(root: string): Promise<Upstream> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', root], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the upstream server did not start within 20 s')), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`the upstream server exited (${code})`)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    stats: async () => (await (await fetch(`${base}/__stats`)).json()) as { bytes: number; requests: number; cpuMs: number },
    close: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers.

interface Sample {
  wallS: number;
  sampled: number;
  decoded: number;
  /** Bytes ffmpeg read (avio Statistics; RTSP: the H.264 payload streamed, from the clip's packets). */
  readBytes: number;
  /** Bytes the upstream server sent (HTTP cases). */
  upstreamBytes: number | null;
  ffmpegCpuS: number | null;
  nodeCpuMs: number;
}

interface FfmpegRun {
  sampled: number;
  decoded: number;
  readBytes: number;
}

let logSeq = 0;

/** Runs ffmpeg with stderr into a file (so this process does no work for it) and reads the log after. */
async function runFfmpeg(binary: FfmpegBinary, args: string[], workDir: string): Promise<FfmpegRun> {
  const logFile = path.join(workDir, `ffmpeg-${process.pid}-${logSeq++}.log`);
  const fd = fs.openSync(logFile, 'w');
  const child = spawn(binary.ffmpegPath, args, { stdio: ['ignore', 'ignore', fd] });
  fs.closeSync(fd);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  const text = fs.readFileSync(logFile, 'utf8');
  fs.rmSync(logFile, { force: true });
  if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${args.join(' ')}\n${text.split('\n').filter((l) => /error|fatal/i.test(l)).slice(-8).join('\n')}`);
  let readBytes = 0;
  for (const m of text.matchAll(/Statistics: (\d+) bytes read/g)) readBytes += Number(m[1]);
  return {
    sampled: (text.match(/Parsed_showinfo_\d+.*\] n:\s*\d+/g) ?? []).length,
    decoded: (text.match(/Parsed_select_\d+.*select:/g) ?? []).length,
    readBytes,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function medianSample(samples: Sample[]): Sample {
  const pick = (f: (s: Sample) => number | null) => {
    const xs = samples.map(f).filter((x): x is number => x !== null);
    return xs.length === samples.length ? median(xs) : null;
  };
  return {
    wallS: pick((s) => s.wallS)!,
    sampled: pick((s) => s.sampled)!,
    decoded: pick((s) => s.decoded)!,
    readBytes: pick((s) => s.readBytes)!,
    upstreamBytes: pick((s) => s.upstreamBytes),
    ffmpegCpuS: pick((s) => s.ffmpegCpuS),
    nodeCpuMs: pick((s) => s.nodeCpuMs)!,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const seconds = Number(values.seconds);
  const repeats = Math.max(1, Number(values.repeats));
  const rtspSeconds = Math.min(seconds, Number(values['rtsp-seconds']));
  const sizeMatch = /^(\d+)x(\d+)$/.exec(values.size);
  if (!sizeMatch || !(seconds > 0) || !(rtspSeconds > 2)) throw new Error('usage: --seconds N (> 0) --rtsp-seconds N (> 2) --size WxH');
  const [width, height] = [Number(sizeMatch[1]), Number(sizeMatch[2])];
  const binary = resolveFfmpeg(values.ffmpeg);
  const caps = binary.caps;
  const gopS = 2;
  const fps = 30;

  // Clips, generated once into the cache: the MP4 (+faststart), the same without faststart, HLS
  // segments (stream copy, 2-s segments on the 2-s keyframes), and a short cut for RTSP.
  const dir = path.join(vigilCacheDir(), 'bench', `source-relay-${width}x${height}-${values.bitrate}-${seconds}s`);
  const clip = path.join(dir, 'clip.mp4');
  const clipMoovEnd = path.join(dir, 'clip-moovend.mp4');
  const rtspClip = path.join(dir, `rtsp-${rtspSeconds}s.mp4`);
  const ff = async (args: string[], label: string) => {
    const r = await runChild(binary.ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], { timeoutMs: 30 * 60_000, label });
    if (r.code !== 0) throw new Error(`${label} failed: ${r.stderrLines.join('\n')}`);
  };
  if (!fs.existsSync(path.join(dir, 'index.m3u8'))) {
    fs.mkdirSync(dir, { recursive: true });
    log(`generating the ${seconds}-s ${width}x${height}p${fps} clip and its HLS segments (once) in ${dir} ...`);
    const tmp = path.join(dir, `clip.${process.pid}.tmp.mp4`);
    await ff(
      [
        '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${fps}:duration=${seconds},noise=c0s=6:c0f=t`,
        '-c:v', 'libx264', '-preset', 'veryfast', '-b:v', values.bitrate, '-maxrate', values.bitrate, '-bufsize', values.bitrate.replace(/^(\d+)/, (n) => String(2 * Number(n))),
        '-g', String(gopS * fps), '-keyint_min', String(gopS * fps), '-sc_threshold', '0', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', tmp,
      ],
      'bench clip',
    );
    await ff(['-i', tmp, '-c', 'copy', clipMoovEnd], 'moov-at-end copy');
    await ff(['-i', tmp, '-c', 'copy', '-f', 'hls', '-hls_time', String(gopS), '-hls_playlist_type', 'vod', '-hls_segment_filename', path.join(dir, 'seg%04d.ts'), path.join(dir, 'index.tmp.m3u8')], 'hls segments');
    fs.renameSync(tmp, clip);
    fs.renameSync(path.join(dir, 'index.tmp.m3u8'), path.join(dir, 'index.m3u8'));
  }
  if (!fs.existsSync(rtspClip)) await ff(['-i', clip, '-t', String(rtspSeconds), '-c', 'copy', rtspClip], 'rtsp clip');
  const clipBytes = fs.statSync(clip).size;
  const segments = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'));
  const hlsBytes = segments.reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-source-relay-'));

  const upstream = await startUpstream(dir);
  const net = DEFAULT_NETWORK;
  const plan = (analyzeUs: number): DecodePlan => ({ fps: 1, mode: 'all', size: null, sar: 1, startAtS: 0, threads: 0, analyzeUs, scaleFlags: 'bicubic' });
  // What videoSource.ts passes for a network source with 2-s keyframes: 1.5 x the spacing.
  const analyzeUs = Math.round(Math.min(5, Math.max(1, 1.5 * gopS)) * 1e6);

  /** ffmpeg argv for one run: Vigil's decode arguments (or demux-only copy), one input. */
  const argv = (kind: SourceKind, endpoint: InputEndpoint, input: string, mode: 'decode' | 'copy', extraOut: string[] = []): string[] => {
    const d = decodeArgs(kind, endpoint, caps, net, plan(analyzeUs));
    if (mode === 'copy') {
      return [...d.inputOptions, '-i', input, '-map', '0:v:0', '-c', 'copy', ...extraOut, '-f', 'null', '-'];
    }
    return [...d.inputOptions, '-i', input, '-vf', d.filter, ...d.outputOptions, ...extraOut, '-y', '/dev/null'];
  };

  /** Wraps one run: wall time, Node CPU, ffmpeg CPU, upstream bytes. */
  const measure = async (body: () => Promise<{ sampled: number; decoded: number; readBytes: number }>): Promise<Sample> => {
    const up0 = (await upstream.stats()).bytes;
    const cpu0 = childCpuS();
    const node0 = process.cpuUsage();
    const t0 = performance.now();
    const r = await body();
    const wallS = (performance.now() - t0) / 1000;
    const node = process.cpuUsage(node0);
    const cpu1 = childCpuS();
    // Let the server see the last connections close before reading its counter.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const up1 = (await upstream.stats()).bytes;
    return { ...r, wallS, upstreamBytes: up1 - up0, ffmpegCpuS: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0, nodeCpuMs: (node.user + node.system) / 1000 };
  };

  const viaGateway = async (url: string, mode: 'decode' | 'copy', extraOut: string[] = []) => {
    const spec = parseSource(url);
    const gateway = new MediaGateway(spec, { policy: OutboundPolicy.trusted, socketTimeoutS: net.socketTimeoutS });
    try {
      const endpoint = await gateway.open();
      const r = await runFfmpeg(binary, argv(spec.kind, endpoint, endpoint.input, mode, extraOut), workDir);
      const error = gateway.takeError();
      if (error) throw error;
      return r;
    } finally {
      await gateway.dispose();
    }
  };

  const direct = async (url: string, endpoint: InputEndpoint, kind: SourceKind, mode: 'decode' | 'copy', extraOut: string[] = []) => runFfmpeg(binary, argv(kind, endpoint, url, mode, extraOut), workDir);

  const e2e = async (input: string) => {
    const source = await openSource(input, { fps: 1, decode: 'all', ffmpeg: binary });
    let sampled = 0;
    let stats: ReturnType<typeof source.stats>;
    try {
      for await (const f of source as AsyncIterable<Frame>) if (f.width > 0) sampled++;
      stats = source.stats();
    } finally {
      await source.dispose();
    }
    if (stats.state !== 'ended' || stats.endReason !== 'eof') throw new Error(`${input}: ${stats.state} (${stats.endReason ?? ''}${stats.lastError ? `, ${stats.lastError.message}` : ''})`);
    return { sampled, decoded: stats.framesDecoded, readBytes: 0 };
  };

  const mp4Url = `${upstream.base}/clip.mp4`;
  const moovEndUrl = `${upstream.base}/clip-moovend.mp4`;
  const hlsUrl = `${upstream.base}/index.m3u8`;
  const httpDirect: InputEndpoint = { transport: 'http', demuxer: 'mov', protocols: 'http,tcp' };
  const hlsDirect: InputEndpoint = { transport: 'http', demuxer: 'hls', protocols: 'http,tcp' };

  interface Case {
    group: string;
    name: string;
    baselineLabel: string;
    oursLabel: string;
    baseline: () => Promise<{ sampled: number; decoded: number; readBytes: number }>;
    ours: () => Promise<{ sampled: number; decoded: number; readBytes: number }>;
    /** Bytes for the per-MiB figures when ffmpeg's own count does not apply. */
    mibFrom?: 'upstream';
  }
  const cases: Case[] = [
    { group: 'http', name: 'decode', baselineLabel: 'ffmpeg reads the URL', oursLabel: 'MediaGateway relay', baseline: () => direct(mp4Url, httpDirect, 'http', 'decode'), ours: () => viaGateway(mp4Url, 'decode') },
    { group: 'http', name: 'copy (demux only)', baselineLabel: 'ffmpeg reads the URL', oursLabel: 'MediaGateway relay', baseline: () => direct(mp4Url, httpDirect, 'http', 'copy'), ours: () => viaGateway(mp4Url, 'copy') },
    { group: 'http', name: 'copy, moov at end', baselineLabel: 'ffmpeg reads the URL', oursLabel: 'MediaGateway relay', baseline: () => direct(moovEndUrl, httpDirect, 'http', 'copy'), ours: () => viaGateway(moovEndUrl, 'copy') },
    { group: 'http', name: 'e2e openSource', baselineLabel: 'openSource(local path)', oursLabel: 'openSource(url)', baseline: () => e2e(clip), ours: () => e2e(mp4Url), mibFrom: 'upstream' },
    { group: 'hls', name: 'decode', baselineLabel: 'ffmpeg hls demuxer', oursLabel: 'MediaGateway HLS feed', baseline: () => direct(hlsUrl, hlsDirect, 'hls', 'decode'), ours: () => viaGateway(hlsUrl, 'decode') },
    { group: 'hls', name: 'copy (demux only)', baselineLabel: 'ffmpeg hls demuxer', oursLabel: 'MediaGateway HLS feed', baseline: () => direct(hlsUrl, hlsDirect, 'hls', 'copy'), ours: () => viaGateway(hlsUrl, 'copy') },
  ];

  log(`clip ${clip}: ${width}x${height} H.264 ${fps} fps, keyframe every ${gopS} s, ${seconds} s, ${(clipBytes / MiB).toFixed(1)} MiB (${((clipBytes * 8) / seconds / 1e6).toFixed(2)} Mbit/s); HLS ${segments.length} segments, ${(hlsBytes / MiB).toFixed(1)} MiB`);
  log(`ffmpeg ${describeVersion(binary.version)} [${binary.origin}]; ${os.availableParallelism()} cores; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  // Warm-up: page cache, binaries, tsx's module cache, undici.
  await measure(() => viaGateway(mp4Url, 'copy'));
  await measure(() => direct(hlsUrl, hlsDirect, 'hls', 'copy'));

  const raw = new Map<Case, { baseline: Sample[]; ours: Sample[] }>(cases.map((c) => [c, { baseline: [], ours: [] }]));
  const started = performance.now();
  for (let rep = 0; rep < repeats; rep++) {
    for (const c of cases) {
      const slot = raw.get(c)!;
      // Alternate which side runs first, so neither always gets the warmer machine.
      const order = rep % 2 === 0 ? (['baseline', 'ours'] as const) : (['ours', 'baseline'] as const);
      for (const side of order) slot[side].push(await measure(side === 'baseline' ? c.baseline : c.ours));
      log(`repeat ${rep + 1}/${repeats} ${c.group} ${c.name}: baseline ${slot.baseline.at(-1)!.wallS.toFixed(2)} s, ours ${slot.ours.at(-1)!.wallS.toFixed(2)} s`);
    }
  }

  // RTSP: real time; Node CPU per MiB relayed is the figure.
  let rtsp: { baseline: Sample; ours: Sample } | { skipped: string } = { skipped: '--no-rtsp' };
  if (!values['no-rtsp']) {
    const { python, reason } = rtspAvailability();
    if (!python) {
      rtsp = { skipped: reason };
    } else {
      const server = await startRtspServer(python, { file: rtspClip });
      try {
        const rtspEndpoint: InputEndpoint = { transport: 'rtsp', demuxer: null, protocols: 'rtsp,rtp,udp,tcp' };
        // Stop at the clip's end (the server keeps the session open after its last packet).
        const stop = ['-t', String(rtspSeconds - 1)];
        // Bytes streamed: the clip's H.264 packets up to the stop time (RTP/interleave headers add
        // ~1%); rchar in /proc cannot see them (ffmpeg reads sockets with recv, not read).
        const probe = await runChild(binary.ffprobePath, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,size', '-of', 'csv=p=0', rtspClip], { timeoutMs: 60_000, label: 'ffprobe packets' });
        const payload = probe.stdout
          .split('\n')
          .filter((l) => l.includes(','))
          .map((l) => l.split(','))
          .filter(([t]) => Number(t) < rtspSeconds - 1)
          .reduce((sum, [, size]) => sum + Number(size), 0);
        const rtspRun = async (ours: boolean) => {
          const r = ours ? await viaGateway(server.url, 'decode', stop) : await direct(server.url, rtspEndpoint, 'rtsp', 'decode', stop);
          return { ...r, readBytes: payload };
        };
        const samples = { baseline: [] as Sample[], ours: [] as Sample[] };
        for (let rep = 0; rep < repeats; rep++) {
          for (const side of rep % 2 === 0 ? (['baseline', 'ours'] as const) : (['ours', 'baseline'] as const)) samples[side].push(await measure(() => rtspRun(side === 'ours')));
          log(`repeat ${rep + 1}/${repeats} rtsp: baseline ${samples.baseline.at(-1)!.wallS.toFixed(2)} s, ours ${samples.ours.at(-1)!.wallS.toFixed(2)} s`);
        }
        rtsp = { baseline: medianSample(samples.baseline), ours: medianSample(samples.ours) };
      } finally {
        await server.kill();
      }
    }
  }
  const measuredS = (performance.now() - started) / 1000;
  await upstream.close();
  fs.rmSync(workDir, { recursive: true, force: true });

  // ---------------------------------------------------------------------------------------------
  // Report.
  const f = (x: number | null, d = 2) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));
  const mib = (b: number | null) => (b === null ? null : b / MiB);
  const bytesOf = (c: { mibFrom?: 'upstream' }, s: Sample) => (c.mibFrom === 'upstream' ? (s.upstreamBytes ?? 0) : s.readBytes);
  const rows: Array<Record<string, unknown>> = [];
  const out: string[] = [];
  const command = `node --import tsx bench/source-relay.ts --seconds ${seconds} --repeats ${repeats} --rtsp-seconds ${rtspSeconds} --size ${width}x${height} --bitrate ${values.bitrate}${values.ffmpeg ? ` --ffmpeg ${values.ffmpeg}` : ''}${values['no-rtsp'] ? ' --no-rtsp' : ''}`;
  out.push(`Source relays vs ffmpeg reading the source itself: ${seconds} s of ${width}x${height} H.264 ${fps} fps (keyframe every ${gopS} s, ${((clipBytes * 8) / seconds / 1e6).toFixed(2)} Mbit/s), median of ${repeats}`);
  out.push(`ffmpeg ${describeVersion(binary.version)} [${binary.origin}], ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'unknown'}), load average after ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; measured in ${measuredS.toFixed(0)} s`);
  out.push(`command: ${command}`);
  out.push('');
  out.push('| source | run | path | wall s | frames sampled / decoded | MiB ffmpeg read | MiB upstream sent | ffmpeg CPU s | Node CPU ms | Node CPU ms per MiB |');
  out.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  const ratioLines: string[] = [];
  const addRows = (group: string, name: string, c: { mibFrom?: 'upstream' }, labels: [string, string], baseline: Sample, ours: Sample) => {
    for (const [label, s] of [[labels[0], baseline], [labels[1], ours]] as const) {
      const bytes = bytesOf(c, s);
      const perMiB = bytes >= 64 * 1024 ? s.nodeCpuMs / (bytes / MiB) : null;
      out.push(`| ${group} | ${name} | ${label} | ${f(s.wallS)} | ${s.sampled} / ${s.decoded} | ${c.mibFrom === 'upstream' ? '-' : f(mib(s.readBytes), 1)} | ${f(mib(s.upstreamBytes), 1)} | ${f(s.ffmpegCpuS)} | ${f(s.nodeCpuMs, 0)} | ${f(perMiB)} |`);
    }
    const relayMiB = bytesOf(c, ours) / MiB;
    const extraNodeMsPerMiB = (ours.nodeCpuMs - baseline.nodeCpuMs) / relayMiB;
    const row = {
      source: group,
      run: name,
      baseline,
      ours,
      wallRatio: ours.wallS / baseline.wallS,
      ffmpegCpuRatio: ours.ffmpegCpuS !== null && baseline.ffmpegCpuS ? ours.ffmpegCpuS / baseline.ffmpegCpuS : null,
      relayMiB,
      relayNodeCpuMsPerMiB: extraNodeMsPerMiB,
    };
    rows.push(row);
    ratioLines.push(
      `${group} ${name}: wall ours/baseline ${f(row.wallRatio)}x, ffmpeg CPU ours/baseline ${f(row.ffmpegCpuRatio)}x, relay Node CPU ${f(extraNodeMsPerMiB)} ms per MiB relayed (${f(ours.nodeCpuMs, 0)} - ${f(baseline.nodeCpuMs, 0)} ms over ${f(relayMiB, 1)} MiB)`,
    );
  };
  for (const c of cases) {
    const slot = raw.get(c)!;
    addRows(c.group, c.name, c, [c.baselineLabel, c.oursLabel], medianSample(slot.baseline), medianSample(slot.ours));
  }
  if ('skipped' in rtsp) {
    out.push('');
    out.push(`rtsp: skipped (${rtsp.skipped})`);
  } else {
    addRows('rtsp', `decode ${rtspSeconds} s, real time`, {}, ['ffmpeg reads the camera', 'MediaGateway RTSP relay'], rtsp.baseline, rtsp.ours);
  }
  out.push('');
  out.push(...ratioLines);
  out.push('(MiB ffmpeg read: its avio statistics, for RTSP the H.264 payload of the clip up to the stop time (RTP adds ~1%); e2e rows count the upstream bytes)');
  process.stdout.write(`${out.join('\n')}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'source-relay',
      command,
      machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadavg: os.loadavg() },
      ffmpeg: { path: binary.ffmpegPath, version: describeVersion(binary.version), origin: binary.origin },
      clip: { width, height, fps, gopS, seconds, bytes: clipBytes, hlsSegments: segments.length, hlsBytes, rtspSeconds },
      repeats,
      rows,
      rtsp: 'skipped' in rtsp ? rtsp : undefined,
    })}\n`,
  );
}

if (values.serve !== undefined) serve(values.serve);
else await main();
