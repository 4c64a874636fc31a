/**
 * `vigil source check`: connect once (no reconnects), report what the source is, sample a few frames
 * and their stream timestamps, and stop. Every failure is a VigilError with the reason.
 */
import { VigilError } from '../common/errors.js';
import { describeVersion } from './ffmpegBinary.js';
import { openSource, type SourceInput } from './openSource.js';
import type { OpenSourceOptions } from './options.js';
import type { RunDecodeMode, SourceStats } from './types.js';

export interface CheckOptions extends Pick<OpenSourceOptions, 'fps' | 'decode' | 'size' | 'rtspTransport' | 'socketTimeoutS' | 'ffmpeg' | 'allowedSchemes'> {
  /** Frames to sample. Default 5. */
  frames?: number;
  /** Give up when the frames have not arrived within this many seconds. Default 30. */
  timeoutS?: number;
}

export interface CheckReport {
  source: string;
  kind: string;
  live: boolean;
  container: string;
  containerLongName: string | null;
  codec: string;
  codecLongName: string | null;
  profile: string | null;
  width: number;
  height: number;
  pixFmt: string | null;
  nativeFps: number | null;
  durationS: number | null;
  bitRate: number | null;
  keyframeIntervalS: number | null;
  decodeMode: RunDecodeMode | null;
  ffmpeg: { path: string; version: string; origin: string };
  sampleFps: number;
  frames: Array<{ t: number; width: number; height: number; keyframe: boolean; wallTime: number }>;
  /** ms from the start of the check to the first sampled frame. */
  firstFrameMs: number | null;
  elapsedMs: number;
  warnings: string[];
  stats: SourceStats;
}

export async function checkSource(input: SourceInput, options: CheckOptions = {}): Promise<CheckReport> {
  const wanted = options.frames ?? 5;
  if (!Number.isInteger(wanted) || wanted < 1) throw new VigilError('BAD_INPUT', `frames must be a positive integer (got ${wanted}).`);
  const timeoutS = options.timeoutS ?? 30;
  const started = Date.now();
  const source = await openSource(input, {
    ...options,
    maxFrames: wanted,
    reconnect: false,
    stallTimeoutS: Math.min(timeoutS, 20),
    queue: { capacity: Math.min(wanted, 64), policy: 'block' },
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    source.dispose().catch(() => undefined); // the same promise is awaited in `finally`, which reports its error
  }, timeoutS * 1000);
  const frames: CheckReport['frames'] = [];
  let firstFrameMs: number | null = null;
  try {
    for (;;) {
      const frame = await source.next();
      if (!frame) break;
      firstFrameMs ??= Date.now() - started;
      frames.push({ t: frame.t, width: frame.width, height: frame.height, keyframe: frame.keyframe, wallTime: frame.wallTime });
    }
  } finally {
    clearTimeout(timer);
    await source.dispose();
  }
  const stats = source.stats();
  const warnings = [...stats.warnings];
  if (timedOut && frames.length === 0) {
    const why = stats.lastError ? ` (last error: ${stats.lastError.message})` : source.probe ? ' (connected, but no frame was decoded)' : ' (no answer from the source)';
    throw new VigilError('SOURCE_TIMEOUT', `No frame from "${stats.source}" within ${timeoutS} s${why}.`);
  }
  if (timedOut) warnings.push(`only ${frames.length} of ${wanted} frames within ${timeoutS} s`);
  else if (frames.length < wanted) warnings.push(`the source ended after ${frames.length} of ${wanted} frames`);
  const probe = source.probe;
  if (!probe) throw new VigilError('SOURCE_FAILED', `"${stats.source}" could not be probed.`);
  return {
    source: stats.source,
    kind: stats.kind,
    live: stats.live,
    container: probe.container,
    containerLongName: probe.containerLongName,
    codec: probe.video.codec,
    codecLongName: probe.video.codecLongName,
    profile: probe.video.profile,
    width: probe.video.width,
    height: probe.video.height,
    pixFmt: probe.video.pixFmt,
    nativeFps: probe.video.fps,
    durationS: probe.durationS,
    bitRate: probe.bitRate,
    keyframeIntervalS: probe.keyframes?.maxIntervalS ?? null,
    decodeMode: stats.decodeMode,
    ffmpeg: { path: source.binary.ffmpegPath, version: describeVersion(source.binary.version), origin: source.binary.origin },
    sampleFps: stats.fps,
    frames,
    firstFrameMs,
    elapsedMs: Date.now() - started,
    warnings,
    stats,
  };
}
