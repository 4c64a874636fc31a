/**
 * ffprobe: container, codec, size, native fps, duration, and the keyframe spacing of the first
 * seconds (which decides whether keyframe-only decoding can serve the requested sample rate).
 * Every failure becomes a VigilError with the reason (see `ffmpegErrors.ts`).
 */
import { VigilError } from '../common/errors.js';
import { runChild } from './childRunner.js';
import { type InputEndpoint, type NetworkOptions, probeArgs } from './ffmpegArgs.js';
import type { FfmpegBinary } from './ffmpegBinary.js';
import { keyframeSpacing } from './keyframeSpacing.js';
import { ffmpegFailure, redactInText } from './ffmpegErrors.js';
import { probeWithFfmpeg } from './ffmpegProbe.js';
import type { SourceSpec } from './sourceSpec.js';
import type { KeyframeInfo, ProbeInfo, VideoInfo } from './types.js';

export interface ProbeOptions {
  net: NetworkOptions;
  /** What ffprobe opens (MediaGateway): a checked file or a loopback relay, never the source URL. */
  endpoint: InputEndpoint & { input: string };
  /** Seconds of stream whose packet flags are read to measure the keyframe interval (0 = skip). */
  keyframeScanS: number;
  /** Hard limit for the whole probe (ms). */
  timeoutMs: number;
  signal?: AbortSignal;
}

type Json = Record<string, unknown>;

const CRASH_SIGNALS = new Set<string>(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGABRT', 'SIGFPE']);

let probesStarted = 0;

/** Probes started in this process (a statistic: tests prove a saved probe spared one). */
export function probeCount(): number {
  return probesStarted;
}

/**
 * Network streams are first analysed for 1 s (ffprobe's default 5 s costs ~2 s per RTSP connect,
 * spent measuring the frame rate, which the keyframe scan's packets give anyway); if that was too
 * short to learn the picture size, once more with the default.
 */
export async function probeSource(spec: SourceSpec, binary: FfmpegBinary, options: ProbeOptions): Promise<ProbeInfo> {
  probesStarted++;
  const network = spec.kind !== 'file' && spec.kind !== 'upload';
  if (!network) return probeOnce(spec, binary, options, 0);
  try {
    return await probeOnce(spec, binary, options, 1_000_000);
  } catch (error) {
    if (!(error instanceof VigilError && error.code === 'CORRUPT_VIDEO' && /no picture size/.test(error.message))) throw error;
    return probeOnce(spec, binary, options, 0);
  }
}

async function probeOnce(spec: SourceSpec, binary: FfmpegBinary, options: ProbeOptions, analyzeUs: number): Promise<ProbeInfo> {
  const args = probeArgs(spec.kind, options.endpoint, binary.probeCaps, options.net, options.keyframeScanS, analyzeUs);
  const started = Date.now();
  const result = await runChild(binary.ffprobePath, args, {
    timeoutMs: options.timeoutMs,
    label: `ffprobe ${spec.display}`,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (result.aborted) throw new VigilError('SOURCE_FAILED', `Probing "${spec.display}" was cancelled.`);
  if (result.spawnError || (result.signal !== null && CRASH_SIGNALS.has(result.signal))) {
    // A missing or crashing ffprobe (the npm one dies on every MPEG-TS input): ask ffmpeg instead.
    return probeWithFfmpeg(spec, binary, { net: options.net, endpoint: options.endpoint, keyframeScanS: options.keyframeScanS, timeoutMs: options.timeoutMs, analyzeUs, ...(options.signal ? { signal: options.signal } : {}) });
  }
  const lines = result.stderrLines.map(redactInText);
  if (result.timedOut) {
    throw new VigilError('SOURCE_TIMEOUT', `Cannot read video source "${spec.display}": no usable answer within ${Math.round(options.timeoutMs / 1000)} s (probe timeout).`);
  }
  if (result.code !== 0) {
    throw ffmpegFailure(spec.display, 'probing', lines, { code: result.code, signal: result.signal }, { kind: spec.kind, elapsedMs: Date.now() - started, socketTimeoutS: options.net.socketTimeoutS });
  }
  let json: Json;
  try {
    json = JSON.parse(result.stdout) as Json;
  } catch (error) {
    throw new VigilError('SOURCE_FAILED', `ffprobe gave unreadable output for "${spec.display}".`, { cause: error });
  }
  return parseProbe(json, spec.display);
}

export function parseProbe(json: Json, display: string): ProbeInfo {
  const format = (json['format'] ?? {}) as Json;
  const streams = (Array.isArray(json['streams']) ? json['streams'] : []) as Json[];
  const stream = streams.find((s) => s['codec_type'] === 'video');
  const container = str(format['format_name']) ?? 'unknown';
  if (!stream) {
    const n = num(format['nb_streams']);
    throw new VigilError(
      'NOT_A_VIDEO',
      `"${display}" has no video stream (container ${container}${n ? `, ${n} other stream${n === 1 ? '' : 's'}` : ''}): not a video.`,
    );
  }
  // The 4.1 build reads any text file as an ANSI-art "video" (tty demuxer).
  if (container === 'tty') throw new VigilError('NOT_A_VIDEO', `"${display}" is a text file, not a video.`);
  const codec = str(stream['codec_name']);
  if (!codec || codec === 'none' || codec === 'unknown') {
    const tag = str(stream['codec_tag_string']);
    throw new VigilError('UNSUPPORTED_CODEC', `"${display}" uses a video codec ffmpeg does not know${tag ? ` (fourcc ${tag})` : ''}: cannot decode it.`);
  }
  const width = num(stream['width']);
  const height = num(stream['height']);
  if (!width || !height) {
    throw new VigilError('CORRUPT_VIDEO', `"${display}": the ${codec} video stream has no picture size (damaged or incomplete stream).`);
  }
  const video: VideoInfo = {
    codec,
    codecLongName: str(stream['codec_long_name']),
    profile: str(stream['profile']),
    width,
    height,
    fps: frameRate(stream['avg_frame_rate']) ?? frameRate(stream['r_frame_rate']),
    pixFmt: str(stream['pix_fmt']),
    rotation: rotationOf(stream),
    sar: ratio(stream['sample_aspect_ratio']) ?? 1,
  };
  const packets = (Array.isArray(json['packets']) ? json['packets'] : []) as Json[];
  video.fps ??= fpsFromPackets(packets);
  const duration = num(format['duration']);
  return {
    container,
    containerLongName: str(format['format_long_name']),
    durationS: duration && duration > 0 ? duration : null,
    startTimeS: num(format['start_time']) ?? 0,
    bitRate: num(format['bit_rate']),
    video,
    audio: null,
    keyframes: packets.length > 0 ? keyframeStats(packets) : null,
  };
}

export function keyframeStats(packets: Json[]): KeyframeInfo {
  const times: number[] = [];
  const keys: number[] = [];
  for (const p of packets) {
    const t = num(p['pts_time']) ?? num(p['dts_time']);
    if (t === null) continue;
    times.push(t);
    if (String(p['flags'] ?? '').startsWith('K')) keys.push(t);
  }
  return keyframeSpacing(times, keys);
}

/**
 * Keyframe-only decoding gives one frame per bin only if keyframes are at most one sample period
 * apart, and the scan must have seen enough of the stream to say so (at least 3 keyframes; the
 * stretch after the last one counts as an interval, see `keyframeStats`).
 */
export function keyframesSuffice(info: KeyframeInfo | null, fps: number): boolean {
  if (!info || info.maxIntervalS === null || info.count < 3) return false;
  const period = 1 / fps;
  return info.maxIntervalS <= period * 1.001 + 1e-6;
}

/** Frame rate from packet timestamps (median spacing), for streams whose header does not say. */
function fpsFromPackets(packets: Json[]): number | null {
  const times = packets.map((p) => num(p['pts_time'])).filter((t): t is number => t !== null).sort((a, b) => a - b);
  const deltas = times.slice(1).map((t, i) => t - times[i]!).filter((d) => d > 1e-4).sort((a, b) => a - b);
  if (deltas.length < 3) return null;
  const median = deltas[deltas.length >> 1]!;
  return frameRate(`${Math.round(1e6 / median)}/1000000`);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 && v !== 'N/A' ? v : null;
}

function num(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

function ratio(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const m = /^(\d+)[:/](\d+)$/.exec(v);
  if (!m) return null;
  const a = Number(m[1]);
  const b = Number(m[2]);
  return a > 0 && b > 0 ? a / b : null;
}

function frameRate(v: unknown): number | null {
  const r = ratio(v);
  // RTSP often reports the 90 kHz clock as the rate: not a frame rate.
  return r !== null && r > 0 && r <= 480 ? Number(r.toFixed(3)) : null;
}

function rotationOf(stream: Json): number {
  const tags = (stream['tags'] ?? {}) as Json;
  const fromTag = num(tags['rotate']);
  if (fromTag !== null) return ((fromTag % 360) + 360) % 360;
  const side = Array.isArray(stream['side_data_list']) ? (stream['side_data_list'] as Json[]) : [];
  for (const s of side) {
    const r = num(s['rotation']);
    if (r !== null) return ((-r % 360) + 360) % 360;
  }
  return 0;
}
