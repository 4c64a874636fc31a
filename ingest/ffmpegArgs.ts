/**
 * Builds ffmpeg and ffprobe argument lists from the detected capabilities of the binary, so the
 * same call works on the npm 4.1 build and on a system 5.x/6.x/7.x. Pure functions: the tests check
 * the lists for both versions without running anything.
 */
import type { FfmpegCapabilities } from './ffmpegBinary.js';
import type { RunDecodeMode, SourceKind } from './types.js';

export interface NetworkOptions {
  /** RTSP lower transport. Default tcp (interleaved; survives NAT and loss better than UDP). */
  rtspTransport: 'tcp' | 'udp';
  /** Socket / read timeout in seconds for RTSP and HTTP. Default 10. */
  socketTimeoutS: number;
}

export const DEFAULT_NETWORK: NetworkOptions = { rtspTransport: 'tcp', socketTimeoutS: 10 };

/**
 * How ffmpeg reaches one input, as the MediaGateway prepared it: a local file or one of Vigil's
 * loopback relays, the demuxer Vigil chose, and the only protocols ffmpeg may open for it.
 */
export interface InputEndpoint {
  transport: 'file' | 'http' | 'rtsp';
  /** Forced demuxer (-f); null: ffmpeg's rtsp demuxer (the relay URL says rtsp://). */
  demuxer: string | null;
  /** -protocol_whitelist: a URL or a playlist cannot smuggle in file:, concat:, data: ... */
  protocols: string;
}

/** Input options for reaching the source: protocol whitelist, demuxer, transport and timeouts. */
export function networkInputArgs(endpoint: InputEndpoint, caps: FfmpegCapabilities, net: NetworkOptions): string[] {
  const micros = String(Math.round(net.socketTimeoutS * 1_000_000));
  const args = ['-protocol_whitelist', endpoint.protocols];
  if (endpoint.demuxer) args.push('-f', endpoint.demuxer);
  if (endpoint.transport === 'rtsp') {
    // 4.x: -timeout would make ffmpeg *listen* (it means listen_timeout there); -stimeout is the socket timeout.
    args.push('-rtsp_transport', net.rtspTransport, `-${caps.rtspSocketTimeoutOption}`, micros);
  } else if (endpoint.transport === 'http') {
    args.push('-rw_timeout', micros);
  }
  return args;
}

/**
 * The select expression: pass the first frame of every 1/F-second bin of stream time, so sampled
 * frames carry their real timestamps (no drift, no duplication). `offsetS` shifts the bins for a
 * run that was started with `-ss` (ffmpeg then restarts timestamps at 0). A timestamp that jumps
 * backwards (a camera restart) re-arms the sampler instead of stalling it.
 */
export function selectExpression(fps: number, offsetS = 0): string {
  const f = formatNumber(fps);
  const t = offsetS === 0 ? 't' : `(t+${formatNumber(offsetS)})`;
  const prev = offsetS === 0 ? 'prev_selected_t' : `(prev_selected_t+${formatNumber(offsetS)})`;
  return `isnan(prev_selected_t)+gt(floor(${t}*${f}),floor(${prev}*${f}))+lt(t,prev_selected_t)`;
}

export interface DecodePlan {
  fps: number;
  mode: RunDecodeMode;
  /** Output size; null = native (square pixels enforced). */
  size: { width: number; height: number } | null;
  /** Non-square pixels in the source (SAR != 1): fixed when size is null. */
  sar: number;
  /** Seek (s) for a resumed finite source; 0 = from the start. */
  startAtS: number;
  /** Decoder threads; 0 = ffmpeg's choice. */
  threads: number;
  /** Network sources: how long ffmpeg analyses the stream before decoding (µs). */
  analyzeUs: number;
  scaleFlags: string;
}

export interface DecodeArgs {
  inputOptions: string[];
  outputOptions: string[];
  /** The -vf graph (select, scale, rgb24, showinfo). */
  filter: string;
}

export function videoFilter(plan: DecodePlan): string {
  const parts = [`select='${selectExpression(plan.fps, plan.startAtS)}'`];
  if (plan.size) parts.push(`scale=${plan.size.width}:${plan.size.height}:flags=${plan.scaleFlags}`, 'setsar=1');
  else if (Math.abs(plan.sar - 1) > 1e-3) parts.push(`scale='trunc(iw*sar/2)*2':ih:flags=${plan.scaleFlags}`, 'setsar=1');
  parts.push('format=rgb24', 'showinfo');
  return parts.join(',');
}

/**
 * Everything but `-i <input>` for one decode run. Logging is at debug level because the select
 * filter reports every decoded frame there (frames-decoded counter and the watchdog's heartbeat),
 * and showinfo reports every sampled frame's pts and size at info level.
 */
export function decodeArgs(kind: SourceKind, endpoint: InputEndpoint, caps: FfmpegCapabilities, net: NetworkOptions, plan: DecodePlan): DecodeArgs {
  const inputOptions = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'repeat+level+debug'];
  inputOptions.push(...networkInputArgs(endpoint, caps, net));
  // Network: the probe already knows the stream, so ffmpeg need not spend its default 5 s (in
  // practice ~2 s per RTSP connect, measuring the frame rate) analysing it again.
  if (kind !== 'file' && kind !== 'upload') inputOptions.push('-fflags', '+genpts+discardcorrupt', '-analyzeduration', String(plan.analyzeUs));
  if (plan.mode === 'keyframes') inputOptions.push('-skip_frame', 'nokey');
  else if (plan.mode === 'refs') inputOptions.push('-skip_frame', 'noref');
  if (plan.threads > 0) inputOptions.push('-threads', String(plan.threads));
  if (plan.startAtS > 0) inputOptions.push('-ss', formatNumber(plan.startAtS));
  const outputOptions = [
    '-map', '0:v:0', '-an', '-sn', '-dn',
    ...(caps.fpsMode ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough']),
    '-pix_fmt', 'rgb24', '-f', 'rawvideo',
  ];
  return { inputOptions, outputOptions, filter: videoFilter(plan) };
}

/** ffprobe: format, the first video stream and (optionally) its packets' keyframe flags for `scanS` seconds. */
export function probeArgs(kind: SourceKind, endpoint: InputEndpoint & { input: string }, caps: FfmpegCapabilities, net: NetworkOptions, scanS: number, analyzeUs = 0): string[] {
  const args = ['-hide_banner', '-v', 'error', ...networkInputArgs(endpoint, caps, net)];
  if (kind !== 'file' && kind !== 'upload') args.push('-fflags', '+genpts');
  if (analyzeUs > 0) args.push('-analyzeduration', String(analyzeUs));
  args.push('-of', 'json', '-show_format', '-show_streams', '-select_streams', 'v:0');
  if (scanS > 0) args.push('-show_entries', 'packet=pts_time,dts_time,flags', '-read_intervals', `%+${formatNumber(scanS)}`);
  args.push(endpoint.input);
  return args;
}

function formatNumber(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toFixed(6)));
}
