/**
 * V-NIAH probe clips (design.md §5): a long noisy gray "haystack" with "needle" scenes (a solid
 * background colour with a centred square of another colour) at chosen times, made entirely by
 * ffmpeg's lavfi sources and filters, plus a JSON sidecar with the ground truth.
 *
 * The haystack is luma-only noise around mid-gray in blocks that change a few times a second, so it
 * is none of the palette colours, compresses well (about 2 MB per minute at 640x360) and encodes
 * fast. Needle frames are clean: the boxes are drawn after the noise.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { vigilCacheDir } from '../src/cacheDir.js';
import { VigilError } from '../common/errors.js';
import { boundCommand } from './ffmpegCommand.js';
import { type FfmpegBinary, describeVersion, resolveFfmpeg } from './ffmpegBinary.js';
import { errorLines, redactInText } from './ffmpegErrors.js';
import { killChild } from './processRegistry.js';

/** Colour names and their RGB. The haystack (gray noise) matches none of them. */
export const PALETTE = {
  red: [255, 0, 0],
  green: [0, 255, 0],
  blue: [0, 0, 255],
  yellow: [255, 255, 0],
  cyan: [0, 255, 255],
  magenta: [255, 0, 255],
  white: [255, 255, 255],
  orange: [255, 128, 0],
  purple: [128, 0, 255],
  black: [0, 0, 0],
} as const satisfies Record<string, readonly [number, number, number]>;

export type ColorName = keyof typeof PALETTE;

export function isColorName(name: string): name is ColorName {
  return Object.hasOwn(PALETTE, name);
}

export interface Needle {
  /** Start (s). */
  start: number;
  /** Length of the scene (s). Default 4. */
  duration: number;
  background: ColorName;
  square: ColorName;
}

export interface ProbeClipOptions {
  out: string;
  durationS: number;
  width?: number;
  height?: number;
  /** Clip frame rate. Default 10. */
  fps?: number;
  needles: Needle[];
  /** Keyframe interval (s). Default 1. */
  gopS?: number;
  /** Explicit keyframe times (s) instead of a fixed interval (irregular GOPs, as some cameras do). */
  keyframeTimes?: number[];
  /** How often the haystack noise changes (per second). Default 2. */
  noiseFps?: number;
  /** Noise strength (0-100, luma). Default 30. */
  noise?: number;
  /** x264 CRF. Default 28. */
  crf?: number;
  /** Sidecar path. Default: the clip path with `.json` instead of its extension. */
  truthPath?: string;
  ffmpeg?: FfmpegBinary | string;
  onProgress?: (doneS: number, totalS: number) => void;
  signal?: AbortSignal;
}

export interface ProbeClipTruth {
  version: 1;
  clip: string;
  durationS: number;
  width: number;
  height: number;
  fps: number;
  /** Keyframe interval; null when explicit keyframe times were given (then in keyframeTimes). */
  gopS: number | null;
  keyframeTimes?: number[];
  squareSize: number;
  haystack: { description: string; color: [number, number, number]; noise: number; noiseFps: number };
  needles: Array<{
    start: number;
    end: number;
    duration: number;
    background: ColorName;
    square: ColorName;
    backgroundRgb: [number, number, number];
    squareRgb: [number, number, number];
  }>;
  palette: ColorName[];
  generator: { ffmpeg: string; version: string };
}

export interface ProbeClip {
  clip: string;
  truthPath: string;
  truth: ProbeClipTruth;
}

const HAYSTACK_GRAY: [number, number, number] = [128, 128, 128];

/** Parses "120:red:green" or "120:red:green:4" (time : background : square [: duration]). */
export function parseNeedle(text: string): Needle {
  const parts = text.split(':');
  if (parts.length < 3 || parts.length > 4) {
    throw new VigilError('BAD_INPUT', `Needle "${text}" must be TIME:BACKGROUND:SQUARE[:DURATION], e.g. 120:red:green or 430:blue:yellow:6.`);
  }
  const [time, bg, sq, dur] = parts as [string, string, string, string | undefined];
  const start = Number(time);
  const duration = dur === undefined ? 4 : Number(dur);
  if (!Number.isFinite(start) || start < 0) throw new VigilError('BAD_INPUT', `Needle "${text}": time must be a number of seconds >= 0.`);
  if (!Number.isFinite(duration) || duration <= 0) throw new VigilError('BAD_INPUT', `Needle "${text}": duration must be a positive number of seconds.`);
  for (const c of [bg, sq]) {
    if (!isColorName(c)) throw new VigilError('BAD_INPUT', `Needle "${text}": unknown colour "${c}" (palette: ${Object.keys(PALETTE).join(', ')}).`);
  }
  return { start, duration, background: bg as ColorName, square: sq as ColorName };
}

export function validateClipOptions(o: ProbeClipOptions): Required<Pick<ProbeClipOptions, 'width' | 'height' | 'fps' | 'gopS' | 'noiseFps' | 'noise' | 'crf'>> {
  const width = o.width ?? 640;
  const height = o.height ?? 360;
  const fps = o.fps ?? 10;
  const gopS = o.gopS ?? 1;
  const noiseFps = o.noiseFps ?? 2;
  const noise = o.noise ?? 30;
  const crf = o.crf ?? 28;
  if (!(Number.isFinite(o.durationS) && o.durationS > 0 && o.durationS <= 24 * 3600)) throw new VigilError('BAD_INPUT', `Clip duration must be in (0, 86400] seconds (got ${o.durationS}).`);
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 16 || v > 7680 || v % 2 !== 0) throw new VigilError('BAD_INPUT', `Clip ${name} must be an even number of pixels in 16..7680 (got ${v}).`);
  }
  if (!(fps > 0 && fps <= 120)) throw new VigilError('BAD_INPUT', `Clip fps must be in (0, 120] (got ${fps}).`);
  if (!(gopS > 0 && gopS * fps >= 1)) throw new VigilError('BAD_INPUT', `Keyframe interval must be at least one frame (got ${gopS} s at ${fps} fps).`);
  if (!(noiseFps > 0 && noiseFps <= fps)) throw new VigilError('BAD_INPUT', `Noise rate must be in (0, fps] (got ${noiseFps}).`);
  if (!(noise >= 0 && noise <= 100)) throw new VigilError('BAD_INPUT', `Noise strength must be in 0..100 (got ${noise}).`);
  const sorted = [...o.needles].sort((a, b) => a.start - b.start);
  for (const [i, n] of sorted.entries()) {
    if (!isColorName(n.background) || !isColorName(n.square)) throw new VigilError('BAD_INPUT', `Needle at ${n.start} s: unknown colour.`);
    if (n.background === n.square) throw new VigilError('BAD_INPUT', `Needle at ${n.start} s: the square must differ from the background (both ${n.square}).`);
    if (n.start + n.duration > o.durationS + 1e-9) throw new VigilError('BAD_INPUT', `Needle at ${n.start} s lasts past the end of the ${o.durationS}-s clip.`);
    const next = sorted[i + 1];
    if (next && next.start < n.start + n.duration) throw new VigilError('BAD_INPUT', `Needles at ${n.start} s and ${next.start} s overlap.`);
  }
  return { width, height, fps, gopS, noiseFps, noise, crf };
}

function hex([r, g, b]: readonly [number, number, number]): string {
  return `0x${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

function num(x: number): string {
  return String(Number(x.toFixed(6)));
}

/** The lavfi graph (one video source, no inputs). Exported for tests. */
export function probeClipGraph(o: ProbeClipOptions): { graph: string; squareSize: number } {
  const { width, height, fps, noiseFps, noise } = validateClipOptions(o);
  const block = Math.max(2, Math.round(height / 90));
  const nw = Math.max(2, Math.ceil(width / block));
  const nh = Math.max(2, Math.ceil(height / block));
  const squareSize = Math.max(2, Math.round(height / 3 / 2) * 2);
  const sx = Math.floor((width - squareSize) / 2);
  const sy = Math.floor((height - squareSize) / 2);
  const parts = [
    `color=c=${hex(HAYSTACK_GRAY)}:s=${nw}x${nh}:r=${num(noiseFps)}:d=${num(o.durationS)}`,
    'format=yuv420p',
    `noise=c0s=${noise}:c0f=t:c0_seed=42`,
    `scale=${width}:${height}:flags=neighbor`,
    `fps=${num(fps)}`,
  ];
  for (const n of o.needles) {
    const on = `enable='gte(t,${num(n.start)})*lt(t,${num(n.start + n.duration)})'`;
    parts.push(`drawbox=x=0:y=0:w=${width}:h=${height}:color=${hex(PALETTE[n.background])}:t=fill:${on}`);
    parts.push(`drawbox=x=${sx}:y=${sy}:w=${squareSize}:h=${squareSize}:color=${hex(PALETTE[n.square])}:t=fill:${on}`);
  }
  parts.push('format=yuv420p');
  return { graph: parts.join(','), squareSize };
}

export function defaultTruthPath(clip: string): string {
  const ext = path.extname(clip);
  return ext ? clip.slice(0, -ext.length) + '.json' : `${clip}.json`;
}

/** Generates the clip (atomically: temp file, then rename) and writes the sidecar. */
export async function makeProbeClip(options: ProbeClipOptions): Promise<ProbeClip> {
  const v = validateClipOptions(options);
  const binary = resolveFfmpeg(options.ffmpeg);
  const { graph, squareSize } = probeClipGraph(options);
  const clip = path.resolve(options.out);
  const truthPath = path.resolve(options.truthPath ?? defaultTruthPath(clip));
  fs.mkdirSync(path.dirname(clip), { recursive: true });
  const ext = path.extname(clip) || '.mp4';
  const tmp = path.join(path.dirname(clip), `.${path.basename(clip, ext)}.${process.pid}.${Date.now()}.tmp${ext}`);
  const gopFrames = Math.max(1, Math.round(v.gopS * v.fps));
  const keyframeArgs = options.keyframeTimes?.length
    ? ['-force_key_frames', options.keyframeTimes.map(num).join(','), '-g', String(Math.ceil(options.durationS * v.fps) + 1), '-sc_threshold', '0']
    : ['-g', String(gopFrames), '-keyint_min', String(gopFrames), '-sc_threshold', '0'];

  const { command, started } = boundCommand(binary, graph, `ffmpeg clip ${path.basename(clip)}`, 60);
  command
    .inputOptions('-hide_banner', '-nostdin', '-loglevel', 'level+info', '-f', 'lavfi')
    .outputOptions(
      '-c:v', 'libx264', '-preset', 'veryfast', '-crf', String(v.crf), '-pix_fmt', 'yuv420p',
      ...keyframeArgs,
      '-movflags', '+faststart', '-an', '-y',
    )
    .output(tmp);
  const lines: string[] = [];
  command.on('stderr', (line: string) => {
    lines.push(line);
    if (lines.length > 60) lines.shift();
    const m = /time=(\d+):(\d+):(\d+(?:\.\d+)?)/.exec(line);
    if (m && options.onProgress) options.onProgress(Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]), options.durationS);
  });
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- started and killChild() only resolve
  const onAbort = () => void started.then((c) => c && killChild(c.pid));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      command.on('end', () => resolve());
      command.on('error', (error: Error) => reject(error));
      command.run();
    });
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    if (options.signal?.aborted) throw new VigilError('BAD_INPUT', 'Clip generation was cancelled.');
    const detail = errorLines(lines.map(redactInText)).join('; ') || (error as Error).message;
    throw new VigilError('SOURCE_FAILED', `ffmpeg could not make the probe clip: ${detail}`, { cause: error });
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  const truth: ProbeClipTruth = {
    version: 1,
    clip: path.basename(clip),
    durationS: options.durationS,
    width: v.width,
    height: v.height,
    fps: v.fps,
    gopS: options.keyframeTimes?.length ? null : gopFrames / v.fps,
    ...(options.keyframeTimes?.length ? { keyframeTimes: options.keyframeTimes } : {}),
    squareSize,
    haystack: { description: 'luma noise around mid-gray, no palette colour', color: HAYSTACK_GRAY, noise: v.noise, noiseFps: v.noiseFps },
    needles: [...options.needles]
      .sort((a, b) => a.start - b.start)
      .map((n) => ({
        start: n.start,
        end: n.start + n.duration,
        duration: n.duration,
        background: n.background,
        square: n.square,
        backgroundRgb: [...PALETTE[n.background]] as [number, number, number],
        squareRgb: [...PALETTE[n.square]] as [number, number, number],
      })),
    palette: Object.keys(PALETTE) as ColorName[],
    generator: { ffmpeg: binary.ffmpegPath, version: describeVersion(binary.version) },
  };
  // Sidecar first, clip last, both by rename: a reader that sees the clip also sees a complete sidecar.
  const truthTmp = `${tmp}.json`;
  fs.writeFileSync(truthTmp, `${JSON.stringify(truth, null, 2)}\n`);
  fs.renameSync(truthTmp, truthPath);
  fs.renameSync(tmp, clip);
  return { clip, truthPath, truth };
}

/**
 * A probe clip in the cache (`<cache>/clips/<hash>.mp4`), generated on first use. The hash covers
 * every option that changes the pixels, so different requests never share a file.
 */
export async function cachedProbeClip(options: Omit<ProbeClipOptions, 'out' | 'truthPath'>): Promise<ProbeClip> {
  const v = validateClipOptions({ ...options, out: 'x.mp4' });
  const key = createHash('sha256')
    .update(JSON.stringify({ d: options.durationS, ...v, needles: options.needles, k: options.keyframeTimes ?? null, graph: 1 }))
    .digest('hex')
    .slice(0, 16);
  const dir = path.join(vigilCacheDir(), 'clips');
  const clip = path.join(dir, `probe-${key}.mp4`);
  const truthPath = defaultTruthPath(clip);
  if (fs.existsSync(clip) && fs.existsSync(truthPath)) {
    return { clip, truthPath, truth: JSON.parse(fs.readFileSync(truthPath, 'utf8')) as ProbeClipTruth };
  }
  return makeProbeClip({ ...options, out: clip });
}
