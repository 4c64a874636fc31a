/**
 * Probing with ffmpeg instead of ffprobe, for when ffprobe is unusable: the npm-shipped ffprobe
 * (@ffprobe-installer 2.1.2, a 2023 static build) crashes with SIGSEGV on every MPEG-TS input, HLS
 * included. ffmpeg copies the first seconds of the video stream to `framecrc` (one line per packet,
 * with the keyframe flag; nothing is decoded) and prints the stream description on stderr, which
 * is parsed here into the same ProbeInfo.
 */
import { VigilError } from '../common/errors.js';
import { runChild } from './childRunner.js';
import { type InputEndpoint, networkInputArgs, type NetworkOptions } from './ffmpegArgs.js';
import type { FfmpegBinary } from './ffmpegBinary.js';
import { keyframeSpacing } from './keyframeSpacing.js';
import { ffmpegFailure, redactInText } from './ffmpegErrors.js';
import type { SourceSpec } from './sourceSpec.js';
import type { KeyframeInfo, ProbeInfo } from './types.js';

export interface FfmpegProbeOptions {
  net: NetworkOptions;
  endpoint: InputEndpoint & { input: string };
  keyframeScanS: number;
  timeoutMs: number;
  analyzeUs: number;
  signal?: AbortSignal;
}

export async function probeWithFfmpeg(spec: SourceSpec, binary: FfmpegBinary, options: FfmpegProbeOptions): Promise<ProbeInfo> {
  const args = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'level+info', ...networkInputArgs(options.endpoint, binary.caps, options.net)];
  if (options.analyzeUs > 0) args.push('-analyzeduration', String(options.analyzeUs));
  args.push('-i', options.endpoint.input, '-map', '0:v:0', '-c', 'copy');
  args.push(...(options.keyframeScanS > 0 ? ['-t', String(options.keyframeScanS)] : ['-frames:v', '1']));
  args.push('-f', 'framecrc', 'pipe:1');
  const started = Date.now();
  const result = await runChild(binary.ffmpegPath, args, {
    timeoutMs: options.timeoutMs,
    label: `ffmpeg probe ${spec.display}`,
    maxStderrLines: 400,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (result.aborted) throw new VigilError('SOURCE_FAILED', `Probing "${spec.display}" was cancelled.`);
  if (result.spawnError) throw new VigilError('FFMPEG_MISSING', `Cannot run ffmpeg "${binary.ffmpegPath}": ${result.spawnError.message}`);
  if (result.timedOut) {
    throw new VigilError('SOURCE_TIMEOUT', `Cannot read video source "${spec.display}": no usable answer within ${Math.round(options.timeoutMs / 1000)} s (probe timeout).`);
  }
  const lines = result.stderrLines.map(redactInText);
  const input = parseInputDescription(lines);
  if (result.code !== 0) {
    if (input.container && !input.video && lines.some((l) => /matches no streams/.test(l))) {
      throw new VigilError('NOT_A_VIDEO', `"${spec.display}" has no video stream (container ${input.container}): not a video.`);
    }
    throw ffmpegFailure(spec.display, 'probing', lines, { code: result.code, signal: result.signal }, { kind: spec.kind, elapsedMs: Date.now() - started, socketTimeoutS: options.net.socketTimeoutS });
  }
  if (!input.video) throw new VigilError('NOT_A_VIDEO', `"${spec.display}" has no video stream: not a video.`);
  if (input.container === 'tty') throw new VigilError('NOT_A_VIDEO', `"${spec.display}" is a text file, not a video.`);
  const { codec, profile, width, height, pixFmt, fps, sar } = input.video;
  if (codec === 'none') throw new VigilError('UNSUPPORTED_CODEC', `"${spec.display}" uses a video codec ffmpeg does not know: cannot decode it.`);
  if (!width || !height) throw new VigilError('CORRUPT_VIDEO', `"${spec.display}": the ${codec} video stream has no picture size (damaged or incomplete stream).`);
  return {
    container: input.container ?? 'unknown',
    containerLongName: null,
    durationS: input.durationS,
    startTimeS: input.startS,
    bitRate: input.bitRate,
    video: { codec, codecLongName: null, profile, width, height, fps, pixFmt, rotation: input.rotation, sar },
    audio: null,
    keyframes: options.keyframeScanS > 0 ? framecrcKeyframes(result.stdout) : null,
  };
}

interface InputDescription {
  container: string | null;
  durationS: number | null;
  startS: number;
  bitRate: number | null;
  rotation: number;
  video: { codec: string; profile: string | null; width: number; height: number; pixFmt: string | null; fps: number | null; sar: number } | null;
}

/** Parses ffmpeg's "Input #0 ..." block (stops at "Output #0"). */
export function parseInputDescription(lines: readonly string[]): InputDescription {
  const clean = lines.map((l) => l.replace(/^\[(info|warning|error)\]\s?/, ''));
  const end = clean.findIndex((l) => /^Output #0/.test(l));
  const block = end >= 0 ? clean.slice(0, end) : clean;
  const out: InputDescription = { container: null, durationS: null, startS: 0, bitRate: null, rotation: 0, video: null };
  for (const line of block) {
    const input = /Input #0, (.+), from '/.exec(line);
    if (input) out.container = input[1]!;
    const dur = /Duration: (?:N\/A|(\d+):(\d+):([\d.]+))(?:, start: (-?[\d.]+))?(?:, bitrate: (\d+) kb\/s)?/.exec(line);
    if (dur) {
      if (dur[1] !== undefined) out.durationS = Number(dur[1]) * 3600 + Number(dur[2]) * 60 + Number(dur[3]);
      if (dur[4] !== undefined) out.startS = Number(dur[4]);
      if (dur[5] !== undefined && Number(dur[5]) > 0) out.bitRate = Number(dur[5]) * 1000;
    }
    const rot = /displaymatrix: rotation of (-?[\d.]+) degrees/.exec(line);
    if (rot) out.rotation = (((-Number(rot[1])) % 360) + 360) % 360;
    const video = !out.video && /Stream #0:\d+.*?: Video: (.*)$/.exec(line);
    if (video) {
      const desc = video[1]!;
      const codec = /^([\w-]+)/.exec(desc)?.[1] ?? 'none';
      const profile = /^[\w-]+ \(([^)/]+)\) \(/.exec(desc)?.[1] ?? null;
      const size = /, (\d{2,5})x(\d{2,5})/.exec(desc);
      const sar = /\[SAR (\d+):(\d+)/.exec(desc);
      const fps = /, ([\d.]+) fps/.exec(desc) ?? /, ([\d.]+) tbr/.exec(desc);
      const pix = /\), ([a-z0-9_]+)(?:\(|,)/.exec(desc);
      const fpsValue = fps ? Number(fps[1]) : NaN;
      out.video = {
        codec,
        profile,
        width: size ? Number(size[1]) : 0,
        height: size ? Number(size[2]) : 0,
        pixFmt: pix?.[1] ?? null,
        fps: Number.isFinite(fpsValue) && fpsValue > 0 && fpsValue <= 480 ? fpsValue : null,
        sar: sar && Number(sar[2]) > 0 ? Number(sar[1]) / Number(sar[2]) || 1 : 1,
      };
    }
  }
  return out;
}

/** Keyframe spacing from framecrc output (`#tb 0: num/den`, then `0, dts, pts, duration, size, crc[, F=0x..]`). */
export function framecrcKeyframes(text: string): KeyframeInfo {
  const tb = /#tb 0: (\d+)\/(\d+)/.exec(text);
  const unit = tb ? Number(tb[1]) / Number(tb[2]) : 1;
  const times: number[] = [];
  const keys: number[] = [];
  for (const line of text.split('\n')) {
    if (!/^0,/.test(line)) continue;
    const fields = line.split(',').map((f) => f.trim());
    const pts = Number(fields[2]);
    if (!Number.isFinite(pts)) continue;
    const t = pts * unit;
    times.push(t);
    const flags = fields.find((f) => f.startsWith('F='));
    // framecrc prints F= only when the flags are not exactly "keyframe".
    if (flags === undefined || (parseInt(flags.slice(2), 16) & 1) === 1) keys.push(t);
  }
  return keyframeSpacing(times, keys);
}
