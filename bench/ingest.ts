/**
 * Ingest benchmark: sampled frames per second and CPU seconds per sampled frame for a 1080p H.264
 * clip at F = 0.5, 1 and 2 fps, full decoding vs the optimized path (decode auto: keyframes only
 * when the keyframe interval allows it, else reference frames only), plus sharp preprocessing time
 * per frame (native 1080p frame vs a frame ffmpeg already scaled to the model size). All ratios come
 * from one run on one machine.
 *
 *   node --import tsx bench/ingest.ts [--duration 30] [--ffmpeg system|bundled|PATH] [--size 512] [--repeat 1] [--json]
 *
 * CPU time is the ffmpeg/ffprobe children's (from /proc/self/stat cutime+cstime, Linux) plus Node's
 * own (parsing, pipe reads). The clip (testsrc2 with light luma noise, 30 fps, a keyframe every
 * second, x264 veryfast with its default B-frames) is generated once into the Vigil cache.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runChild } from '../ingest/childRunner.js';
import { describeVersion, resolveFfmpeg, type FfmpegBinary } from '../ingest/ffmpegBinary.js';
import { openSource } from '../ingest/openSource.js';
import type { DecodeMode, Frame, OutputSize } from '../ingest/types.js';
import { vigilCacheDir } from '../src/cacheDir.js';
import { preprocessVideoFrame } from '../src/model/preprocess/imagePreprocessor.js';
import { parsePreprocessorConfig } from '../src/model/preprocess/preprocessorConfig.js';
import { childCpuS } from './childCpu.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '30' },
    ffmpeg: { type: 'string' },
    size: { type: 'string', default: '512' },
    repeat: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const durationS = Number(values.duration);
const modelSize = Number(values.size);
const repeat = Math.max(1, Number(values.repeat));
const binary: FfmpegBinary = resolveFfmpeg(values.ffmpeg);
const log = (line: string) => process.stderr.write(`${line}\n`);

async function benchClip(): Promise<string> {
  const dir = path.join(vigilCacheDir(), 'bench');
  const file = path.join(dir, `ingest-1080p30-gop1s-${durationS}s.mp4`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp.mp4`;
  log(`generating the ${durationS}-s 1080p30 bench clip (once) ...`);
  const r = await runChild(
    binary.ffmpegPath,
    [
      '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
      '-f', 'lavfi', '-i', `testsrc2=size=1920x1080:rate=30:duration=${durationS},noise=c0s=6:c0f=t`,
      '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
      '-pix_fmt', 'yuv420p', '-movflags', '+faststart', tmp,
    ],
    { timeoutMs: 30 * 60_000, label: 'bench clip' },
  );
  if (r.code !== 0) throw new Error(`clip generation failed: ${r.stderrLines.join('\n')}`);
  fs.renameSync(tmp, file);
  return file;
}

interface RunResult {
  fps: number;
  decode: DecodeMode;
  mode: string;
  output: string;
  sampled: number;
  decoded: number;
  wallS: number;
  ffmpegCpuS: number | null;
  nodeCpuS: number;
  sampledPerS: number;
  cpuSPerFrame: number | null;
}

async function run(clip: string, fps: number, decode: DecodeMode, size: OutputSize | null): Promise<RunResult> {
  const cpu0 = childCpuS();
  const node0 = process.cpuUsage();
  const t0 = performance.now();
  const source = await openSource(clip, { fps, decode, size, ffmpeg: binary });
  let sampled = 0;
  let output = '';
  for await (const f of source as AsyncIterable<Frame>) {
    sampled++;
    output ||= `${f.width}x${f.height}`;
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu1 = childCpuS();
  const node = process.cpuUsage(node0);
  const stats = source.stats();
  const ffmpegCpuS = cpu0 === null || cpu1 === null ? null : cpu1 - cpu0;
  const nodeCpuS = (node.user + node.system) / 1e6;
  return {
    fps,
    decode,
    mode: stats.decodeMode ?? '?',
    output,
    sampled,
    decoded: stats.framesDecoded,
    wallS,
    ffmpegCpuS,
    nodeCpuS,
    sampledPerS: sampled / wallS,
    cpuSPerFrame: ffmpegCpuS === null ? null : (ffmpegCpuS + nodeCpuS) / sampled,
  };
}

async function best(clip: string, fps: number, decode: DecodeMode, size: OutputSize | null): Promise<RunResult> {
  const runs: RunResult[] = [];
  for (let i = 0; i < repeat; i++) runs.push(await run(clip, fps, decode, size));
  runs.sort((a, b) => a.wallS - b.wallS);
  return runs[Math.floor(runs.length / 2)]!;
}

async function sharpPerFrame(clip: string): Promise<{ nativeMs: number; prescaledMs: number; frames: number }> {
  const config = parsePreprocessorConfig({}, 'idefics3', 'bench (SmolVLM defaults)');
  const grab = async (size: OutputSize | null): Promise<Frame[]> => {
    const frames: Frame[] = [];
    const source = await openSource(clip, { fps: 1, size, maxFrames: 10, ffmpeg: binary });
    for await (const f of source as AsyncIterable<Frame>) frames.push(f);
    return frames;
  };
  const time = async (frames: Frame[]): Promise<number> => {
    for (const f of frames.slice(0, 2)) await preprocessVideoFrame({ data: f.data, width: f.width, height: f.height, channels: 3 }, config, modelSize);
    const t0 = performance.now();
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (const f of frames) {
        await preprocessVideoFrame({ data: f.data, width: f.width, height: f.height, channels: 3 }, config, modelSize);
        n++;
      }
    }
    return (performance.now() - t0) / n;
  };
  const native = await grab(null);
  const prescaled = await grab({ width: modelSize, height: modelSize });
  return { nativeMs: await time(native), prescaledMs: await time(prescaled), frames: native.length * 3 };
}

const clip = await benchClip();
const size: OutputSize = { width: modelSize, height: modelSize };
log(`clip ${clip} (${(fs.statSync(clip).size / 1e6).toFixed(1)} MB); ffmpeg ${describeVersion(binary.version)} [${binary.origin}]; ${os.availableParallelism()} cores`);
await run(clip, 1, 'auto', size); // warm the page cache and the binaries

const rows: Array<{ fps: number; full: RunResult; optimized: RunResult }> = [];
for (const fps of [0.5, 1, 2]) {
  const full = await best(clip, fps, 'all', size);
  const optimized = await best(clip, fps, 'auto', size);
  rows.push({ fps, full, optimized });
  log(`F=${fps}: full ${full.wallS.toFixed(2)} s, optimized (${optimized.mode}) ${optimized.wallS.toFixed(2)} s`);
}
const nativeOut = await best(clip, 1, 'auto', null);
const sharp = await sharpPerFrame(clip);

const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);
const summary = {
  command: `node --import tsx bench/ingest.ts --duration ${durationS} --size ${modelSize} --repeat ${repeat}${values.ffmpeg ? ` --ffmpeg ${values.ffmpeg}` : ''}`,
  machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', platform: `${os.platform()} ${os.release()}` },
  ffmpeg: { path: binary.ffmpegPath, version: describeVersion(binary.version), origin: binary.origin },
  clip: { file: clip, durationS, size: '1920x1080', fps: 30, gopS: 1, codec: 'h264 (x264 veryfast, B-frames)' },
  output: `${modelSize}x${modelSize} RGB (scaled by ffmpeg)`,
  rows: rows.map(({ fps, full, optimized }) => ({
    fps,
    full,
    optimized,
    speedup: ratio(optimized.sampledPerS, full.sampledPerS),
    cpuSaving: ratio(full.cpuSPerFrame, optimized.cpuSPerFrame),
  })),
  nativeOutputAtF1: nativeOut,
  sharp: { ...sharp, ratio: ratio(sharp.nativeMs, sharp.prescaledMs), modelSize },
};

if (values.json) {
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
} else {
  const f = (x: number | null, d = 2) => (x === null ? 'n/a' : x.toFixed(d));
  const out: string[] = [];
  out.push(`Ingest benchmark: ${summary.clip.durationS} s of 1080p30 H.264 (keyframe every 1 s), frames scaled by ffmpeg to ${modelSize}x${modelSize}`);
  out.push(`ffmpeg ${summary.ffmpeg.version} [${summary.ffmpeg.origin}], ${summary.machine.cores} cores (${summary.machine.cpu})`);
  out.push(`command: ${summary.command}`);
  out.push('');
  out.push('| F (fps) | path | decode mode | frames decoded | frames sampled | wall s | sampled frames/s | CPU s per sampled frame |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const r of summary.rows) {
    for (const [name, x] of [['full', r.full], ['optimized', r.optimized]] as const) {
      out.push(`| ${r.fps} | ${name} | ${x.mode} | ${x.decoded} | ${x.sampled} | ${f(x.wallS)} | ${f(x.sampledPerS, 1)} | ${f(x.cpuSPerFrame, 4)} |`);
    }
  }
  out.push('');
  for (const r of summary.rows) {
    out.push(`F=${r.fps}: optimized/full throughput ${f(r.speedup)}x, CPU per frame full/optimized ${f(r.cpuSaving)}x (optimized = ${r.optimized.mode})`);
  }
  out.push(`F=1 optimized with native ${nativeOut.output} output over the pipe: ${f(nativeOut.sampledPerS, 1)} frames/s, ${f(nativeOut.cpuSPerFrame, 4)} CPU s/frame`);
  out.push(`sharp preprocessing to ${modelSize}x${modelSize} CHW float32 (SmolVLM video frame), mean of ${sharp.frames}: native 1920x1080 frame ${f(sharp.nativeMs)} ms, frame pre-scaled by ffmpeg ${f(sharp.prescaledMs)} ms (${f(summary.sharp.ratio)}x)`);
  process.stdout.write(`${out.join('\n')}\n`);
}
