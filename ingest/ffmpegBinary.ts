/**
 * Finds the ffmpeg and ffprobe binaries and detects what they can do.
 *
 * Order: $VIGIL_FFMPEG (and $VIGIL_FFPROBE) when set; otherwise the newer of the system binary on
 * PATH (Debian 12: 5.1) and the one shipped in npm (@ffmpeg-installer/ffmpeg: a 2018 4.1-dev static
 * build, so Vigil works right after `npm ci`). Options differ between the two (RTSP `-timeout` is a
 * listen timeout in seconds in 4.x but the socket timeout in microseconds in 5.x; `-fps_mode` does
 * not exist before 5.1), so arguments are built from the detected library versions
 * (`ffmpegArgs.ts`), never from a guess.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { VigilError } from '../common/errors.js';

export interface FfmpegVersion {
  /** The version as printed: "5.1.9-0+deb12u1", "N-47683-g0e8eb07980-static". */
  text: string;
  /** FFmpeg release (5.1, 4.1, ...), read from the text or, for git builds, from libavutil. */
  major: number;
  minor: number;
  libavutil: [number, number];
  libavformat: [number, number];
}

export interface FfmpegCapabilities {
  /** `-fps_mode passthrough` (5.1+) instead of `-vsync passthrough`. */
  fpsMode: boolean;
  /** Socket I/O timeout option of the RTSP demuxer, in microseconds: `-stimeout` before 5.0, `-timeout` after. */
  rtspSocketTimeoutOption: 'stimeout' | 'timeout';
}

export interface FfmpegBinary {
  ffmpegPath: string;
  ffprobePath: string;
  origin: 'env' | 'system' | 'bundled' | 'explicit';
  version: FfmpegVersion;
  /** ffprobe can be a different build than ffmpeg (the npm one is newer): its options follow its own version. */
  probeVersion: FfmpegVersion;
  caps: FfmpegCapabilities;
  probeCaps: FfmpegCapabilities;
}

const require = createRequire(import.meta.url);
const versionCache = new Map<string, FfmpegVersion>();
let located: FfmpegBinary | undefined;

/** libavutil major -> FFmpeg release major (for git builds whose version text has no number). */
const AVUTIL_TO_RELEASE: Record<number, number> = { 55: 3, 56: 4, 57: 5, 58: 6, 59: 7, 60: 8 };

export function parseVersionOutput(output: string): FfmpegVersion {
  const first = output.split('\n', 1)[0] ?? '';
  const text = /version\s+(\S+)/.exec(first)?.[1] ?? 'unknown';
  const lib = (name: string): [number, number] => {
    const m = new RegExp(`${name}\\s+(\\d+)\\.\\s*(\\d+)\\.`).exec(output);
    return m ? [Number(m[1]), Number(m[2])] : [0, 0];
  };
  const libavutil = lib('libavutil');
  const libavformat = lib('libavformat');
  const release = /^n?(\d+)\.(\d+)/.exec(text);
  let major: number;
  let minor: number;
  if (release) {
    major = Number(release[1]);
    minor = Number(release[2]);
  } else {
    major = AVUTIL_TO_RELEASE[libavutil[0]] ?? 0;
    minor = 0;
  }
  return { text, major, minor, libavutil, libavformat };
}

export function capabilitiesOf(version: FfmpegVersion): FfmpegCapabilities {
  const [avu, avuMinor] = version.libavutil;
  return {
    fpsMode: avu > 57 || (avu === 57 && avuMinor >= 28),
    rtspSocketTimeoutOption: version.libavformat[0] >= 59 ? 'timeout' : 'stimeout',
  };
}

export function describeVersion(version: FfmpegVersion): string {
  const release = /^n?\d+\.\d+/.test(version.text) ? version.text : `${version.major}.x git ${version.text}`;
  return `${release} (libavformat ${version.libavformat.join('.')})`;
}

/** Runs `<binary> -version` once per path; throws FFMPEG_MISSING when it cannot run. */
export function detectVersion(binaryPath: string): FfmpegVersion {
  const cached = versionCache.get(binaryPath);
  if (cached) return cached;
  let output: string;
  try {
    output = execFileSync(binaryPath, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    throw new VigilError('FFMPEG_MISSING', `Cannot run "${binaryPath}" (${(error as Error).message.split('\n')[0]}).`, { cause: error });
  }
  // `-hide_banner -version` still prints the version line and the library versions.
  const version = parseVersionOutput(output);
  versionCache.set(binaryPath, version);
  return version;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

export function bundledFfmpegPath(): string | null {
  try {
    const p = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
    return isExecutable(p) ? p : null;
  } catch {
    return null;
  }
}

export function bundledFfprobePath(): string | null {
  try {
    const p = (require('@ffprobe-installer/ffprobe') as { path: string }).path;
    return isExecutable(p) ? p : null;
  } catch {
    return null;
  }
}

export function systemFfmpegPath(): string | null {
  const found = onPath('ffmpeg');
  const bundled = bundledFfmpegPath();
  return found && (!bundled || fs.realpathSync(found) !== fs.realpathSync(bundled)) ? found : null;
}

function newer(a: FfmpegVersion, b: FfmpegVersion): boolean {
  if (a.major !== b.major) return a.major > b.major;
  if (a.minor !== b.minor) return a.minor > b.minor;
  return a.libavformat[0] * 1000 + a.libavformat[1] > b.libavformat[0] * 1000 + b.libavformat[1];
}

function pickFfprobe(ffmpegPath: string, origin: FfmpegBinary['origin']): string {
  const fromEnv = process.env.VIGIL_FFPROBE;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new VigilError('FFMPEG_MISSING', `VIGIL_FFPROBE="${fromEnv}" is not an executable file.`);
    return fromEnv;
  }
  const sibling = path.join(path.dirname(ffmpegPath), process.platform === 'win32' ? 'ffprobe.exe' : 'ffprobe');
  if (origin !== 'bundled' && isExecutable(sibling)) return sibling;
  const candidates = origin === 'bundled' ? [bundledFfprobePath(), onPath('ffprobe')] : [onPath('ffprobe'), bundledFfprobePath()];
  for (const c of candidates) if (c) return c;
  throw new VigilError('FFMPEG_MISSING', 'No ffprobe found (install ffmpeg, set VIGIL_FFPROBE, or run `npm ci` for the bundled one).');
}

/** Describes a given ffmpeg binary (and its ffprobe). */
export function ffmpegBinaryAt(ffmpegPath: string, options: { ffprobePath?: string; origin?: FfmpegBinary['origin'] } = {}): FfmpegBinary {
  if (!isExecutable(ffmpegPath)) throw new VigilError('FFMPEG_MISSING', `ffmpeg binary "${ffmpegPath}" does not exist or is not executable.`);
  const origin = options.origin ?? 'explicit';
  const ffprobePath = options.ffprobePath ?? pickFfprobe(ffmpegPath, origin);
  const version = detectVersion(ffmpegPath);
  const probeVersion = detectVersion(ffprobePath);
  return { ffmpegPath, ffprobePath, origin, version, probeVersion, caps: capabilitiesOf(version), probeCaps: capabilitiesOf(probeVersion) };
}

/** The npm-shipped 4.1 build (with the npm-shipped ffprobe), or null where the package is missing. */
export function bundledFfmpeg(): FfmpegBinary | null {
  const p = bundledFfmpegPath();
  const probe = bundledFfprobePath();
  return p && probe ? ffmpegBinaryAt(p, { ffprobePath: probe, origin: 'bundled' }) : null;
}

/** The ffmpeg on PATH (with the ffprobe next to it), or null. */
export function systemFfmpeg(): FfmpegBinary | null {
  const p = systemFfmpegPath();
  if (!p) return null;
  try {
    return ffmpegBinaryAt(p, { origin: 'system' });
  } catch {
    return null;
  }
}

/**
 * The binary Vigil uses by default (cached): $VIGIL_FFMPEG (a path, or 'bundled' / 'system'), else
 * the newer of system and bundled.
 * Throws FFMPEG_MISSING with what to do when there is none.
 */
export function locateFfmpeg(): FfmpegBinary {
  if (located) return located;
  const fromEnv = process.env.VIGIL_FFMPEG;
  if (fromEnv === 'bundled') {
    const bundled = bundledFfmpeg();
    if (!bundled) throw new VigilError('FFMPEG_MISSING', 'VIGIL_FFMPEG=bundled, but @ffmpeg-installer/ffmpeg is not installed: run `npm ci`.');
    located = bundled;
    return located;
  }
  if (fromEnv === 'system') {
    const system = systemFfmpeg();
    if (!system) throw new VigilError('FFMPEG_MISSING', 'VIGIL_FFMPEG=system, but there is no ffmpeg on the PATH.');
    located = system;
    return located;
  }
  if (fromEnv) {
    located = ffmpegBinaryAt(fromEnv, { origin: 'env' });
    return located;
  }
  const system = systemFfmpeg();
  let bundled: FfmpegBinary | null = null;
  try {
    bundled = bundledFfmpeg();
  } catch {
    bundled = null;
  }
  const pick = system && bundled ? (newer(bundled.version, system.version) ? bundled : system) : (system ?? bundled);
  if (!pick) {
    throw new VigilError(
      'FFMPEG_MISSING',
      'No ffmpeg found: run `npm ci` (installs @ffmpeg-installer/ffmpeg), install ffmpeg, or set VIGIL_FFMPEG to its path.',
    );
  }
  located = pick;
  return located;
}

/** Accepts a binary, a path to ffmpeg, or nothing (the default). */
export function resolveFfmpeg(choice?: FfmpegBinary | string): FfmpegBinary {
  if (choice === undefined) return locateFfmpeg();
  if (typeof choice === 'string') {
    if (choice === 'bundled' || choice === 'system') {
      const b = choice === 'bundled' ? bundledFfmpeg() : systemFfmpeg();
      if (!b) throw new VigilError('FFMPEG_MISSING', `No ${choice} ffmpeg is installed.`);
      return b;
    }
    return ffmpegBinaryAt(choice);
  }
  return choice;
}
