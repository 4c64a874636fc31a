/**
 * Options of `openSource`, their defaults and validation (one place, so the CLI, the API and the
 * engine share the same rules and messages).
 */
import { VigilError } from '../common/errors.js';
import { DEFAULT_BACKOFF } from './backoff.js';
import type { FfmpegBinary } from './ffmpegBinary.js';
import { OutboundPolicy } from './net/outboundPolicy.js';
import type { BackoffOptions, DecodeMode, OutputSize, ProbeInfo, QueueOptions, VideoInfo } from './types.js';

export interface OpenSourceOptions {
  /** Sample rate F in frames per second of stream time. Default 1. */
  fps?: number;
  /** Let ffmpeg scale to this size (less work for sharp later). Default: native size. */
  size?: OutputSize | null;
  /** Default auto (keyframe-only decoding when the keyframe interval allows it). */
  decode?: DecodeMode;
  /** RTSP transport. Default tcp. */
  rtspTransport?: 'tcp' | 'udp';
  /** Socket/read timeout for RTSP and HTTP (s). Default 10. */
  socketTimeoutS?: number;
  /** Watchdog: no decoded frame for this long (s) -> kill and restart ffmpeg. Default 20. */
  stallTimeoutS?: number;
  /** Reconnect after failures. Default: yes for rtsp/http(s)/hls, no for files and uploads. */
  reconnect?: boolean;
  backoff?: Partial<BackoffOptions>;
  queue?: Partial<QueueOptions>;
  /** Treat the source as live (or not) regardless of what probing says. */
  live?: boolean;
  /** A binary, a path to ffmpeg, 'bundled', 'system', or nothing for the default (ffmpegBinary.ts). */
  ffmpeg?: FfmpegBinary | string;
  /** End (state ended, reason max-frames) after this many sampled frames. */
  maxFrames?: number;
  /** Files: start at this stream time (s). */
  startAtS?: number;
  /** URL schemes accepted (default file, rtsp, rtsps, http, https). */
  allowedSchemes?: readonly string[];
  /** Seconds of stream scanned for keyframe spacing when decode is auto (default depends on F and the source). */
  keyframeScanS?: number;
  /** Hard limit for probing (s). Default socketTimeoutS + scan + 10 for network sources, 30 for files. */
  probeTimeoutS?: number;
  /** Decoder threads (0 = ffmpeg decides). Default 0. */
  threads?: number;
  /** swscale algorithm for the optional resize. Default bicubic. */
  scaleFlags?: 'bicubic' | 'bilinear' | 'area' | 'lanczos' | 'neighbor' | 'fast_bilinear';
  /** Delete this file when the source stops (used for spooled uploads). */
  deleteOnStop?: string;
  /**
   * Which addresses the source, its redirects, playlists, segments and RTSP redirects may reach.
   * Default OutboundPolicy.trusted (everything: the operator's own sources); the service passes the
   * URL policy for sources from API callers.
   */
  policy?: OutboundPolicy;
  /**
   * Live network sources: the probe of an earlier connection to the same source (a restart, a
   * cluster node taking the stream over). The first connection skips probing and decodes at once;
   * if the stream does not match it (codec or picture size) or that first run fails before a
   * frame, it is dropped and the source is probed as usual. Ignored for files, uploads and finite URLs.
   */
  knownProbe?: ProbeInfo;
}

export interface ResolvedOptions {
  fps: number;
  size: OutputSize | null;
  decode: DecodeMode;
  rtspTransport: 'tcp' | 'udp';
  socketTimeoutS: number;
  stallTimeoutS: number;
  reconnect: boolean | null;
  backoff: Partial<BackoffOptions>;
  queue: Partial<QueueOptions>;
  live: boolean | null;
  maxFrames: number;
  startAtS: number;
  keyframeScanS: number | null;
  probeTimeoutS: number | null;
  threads: number;
  scaleFlags: string;
  policy: OutboundPolicy;
  knownProbe: ProbeInfo | null;
}

function positive(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new VigilError('BAD_INPUT', `${name} must be a number in (0, ${max}] (got ${String(value)}).`);
  }
  return value;
}

export function resolveOptions(options: OpenSourceOptions): ResolvedOptions {
  const size = options.size ?? null;
  if (size) {
    const dims = 'longestEdge' in size ? [size.longestEdge] : [size.width, size.height];
    if (!dims.every((d) => Number.isInteger(d) && d >= 2 && d <= 8192)) {
      throw new VigilError('BAD_INPUT', `Output size must be whole pixels in 2..8192 (got ${JSON.stringify(size)}).`);
    }
  }
  const decode = options.decode ?? 'auto';
  if (!['auto', 'all', 'keyframes', 'refs'].includes(decode)) throw new VigilError('BAD_INPUT', `decode must be auto, all, keyframes or refs (got ${decode}).`);
  const transport = options.rtspTransport ?? 'tcp';
  if (transport !== 'tcp' && transport !== 'udp') throw new VigilError('BAD_INPUT', `RTSP transport must be tcp or udp (got ${String(transport)}).`);
  const queue = options.queue ?? {};
  if (queue.policy !== undefined && !['drop-oldest', 'drop-newest', 'block'].includes(queue.policy)) {
    throw new VigilError('BAD_INPUT', `queue policy must be drop-oldest, drop-newest or block (got ${queue.policy}).`);
  }
  if (queue.capacity !== undefined && (!Number.isInteger(queue.capacity) || queue.capacity < 1)) {
    throw new VigilError('BAD_INPUT', `queue capacity must be a positive integer (got ${queue.capacity}).`);
  }
  const backoff = options.backoff ?? {};
  const b = { ...DEFAULT_BACKOFF, ...backoff };
  if (!(b.initialMs >= 0 && b.maxMs >= b.initialMs && b.factor >= 1 && b.jitter >= 0 && b.jitter < 1 && b.maxAttempts >= 1)) {
    throw new VigilError('BAD_INPUT', `Backoff needs 0 <= initialMs <= maxMs, factor >= 1, 0 <= jitter < 1, maxAttempts >= 1 (got ${JSON.stringify(backoff)}).`);
  }
  return {
    fps: positive('fps', options.fps, 1, 240),
    size,
    decode,
    rtspTransport: transport,
    socketTimeoutS: positive('socketTimeoutS', options.socketTimeoutS, 10, 3600),
    stallTimeoutS: positive('stallTimeoutS', options.stallTimeoutS, 20, 86_400),
    reconnect: options.reconnect ?? null,
    backoff,
    queue,
    live: options.live ?? null,
    maxFrames: options.maxFrames === undefined ? Infinity : positive('maxFrames', options.maxFrames, Infinity),
    startAtS: options.startAtS === undefined ? 0 : Math.max(0, options.startAtS),
    keyframeScanS: options.keyframeScanS ?? null,
    probeTimeoutS: options.probeTimeoutS === undefined ? null : positive('probeTimeoutS', options.probeTimeoutS, 30),
    threads: options.threads ?? 0,
    scaleFlags: options.scaleFlags ?? 'bicubic',
    policy: options.policy ?? OutboundPolicy.trusted,
    knownProbe: options.knownProbe === undefined ? null : checkKnownProbe(options.knownProbe),
  };
}

/** A loose shape check (a saved probe comes from a file): what decoding relies on must be there. */
function checkKnownProbe(probe: ProbeInfo): ProbeInfo {
  const video = (probe as Partial<ProbeInfo> | null)?.video;
  const keyframes = (probe as Partial<ProbeInfo> | null)?.keyframes;
  const ok =
    typeof probe === 'object' &&
    probe !== null &&
    typeof video === 'object' &&
    video !== null &&
    typeof video.codec === 'string' &&
    Number.isInteger(video.width) &&
    video.width > 0 &&
    Number.isInteger(video.height) &&
    video.height > 0 &&
    (video.fps === null || (typeof video.fps === 'number' && video.fps > 0)) &&
    typeof video.sar === 'number' &&
    video.sar > 0 &&
    (keyframes === null || (typeof keyframes === 'object' && keyframes !== undefined && (keyframes.maxIntervalS === null || typeof keyframes.maxIntervalS === 'number')));
  if (!ok) throw new VigilError('BAD_INPUT', 'knownProbe is not a probe result (video codec, size, fps, sar and keyframes are needed).');
  return probe;
}

/** The ffmpeg output size for a requested size and the probed stream (display aspect, rotation). */
export function targetSize(size: OutputSize | null, video: VideoInfo | null): { width: number; height: number } | null {
  if (!size) return null;
  if ('width' in size) return { width: size.width, height: size.height };
  if (!video) return { width: size.longestEdge, height: size.longestEdge };
  let w = video.width * (video.sar || 1);
  let h = video.height;
  if (video.rotation === 90 || video.rotation === 270) [w, h] = [h, w];
  const scale = size.longestEdge / Math.max(w, h);
  return { width: Math.max(2, Math.round(w * scale)), height: Math.max(2, Math.round(h * scale)) };
}
