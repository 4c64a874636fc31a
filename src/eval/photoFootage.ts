/**
 * Busy footage made from real photographs (issue 15: the archive's bytes on photo-like frames): the
 * first photo is the background; the second, at two sizes, moves across it 50-140 px a frame at 512
 * px (scaled with the frame), so every frame is distinct; optional temporal sensor noise. Rendered by
 * ffmpeg from the two files named here only. The two JPEGs of the Rust embedded book are the default
 * where a Rust toolchain's docs are installed (the only photographs on the machines Vigil is built on).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { locateFfmpeg } from '../../ingest/ffmpegBinary.js';
import type { RawRgb } from './longScene.js';

export const DEFAULT_PHOTOS: readonly [string, string] | undefined = ['stable', 'nightly']
  .map((t) => `/root/.rustup/toolchains/${t}-x86_64-unknown-linux-gnu/share/doc/rust/html/embedded-book/assets`)
  .map((dir) => [path.join(dir, 'f3.jpg'), path.join(dir, 'verify.jpeg')] as const)
  .find((pair) => pair.every((p) => fs.existsSync(p)));

export interface PhotoFootageOptions {
  frames: number;
  width: number;
  height: number;
  /** Temporal sensor noise (ffmpeg noise=alls=4:allf=t). */
  noise: boolean;
  photos?: readonly [string, string];
}

export function photoFootage(options: PhotoFootageOptions): RawRgb[] {
  const photos = options.photos ?? DEFAULT_PHOTOS;
  if (photos === undefined) throw new Error('photo footage: no photographs found; name two JPEGs (background, object)');
  const { width: w, height: h, frames } = options;
  const k = w / 512; // object sizes and steps were chosen at 512 px
  const big = [Math.round(160 * k), Math.round(106 * k)];
  const small = [Math.round(96 * k), Math.round(64 * k)];
  const filter =
    `[0]scale=${w}:${h},setsar=1[bg];[1]scale=${big[0]}:${big[1]}[o1];[1]scale=${small[0]}:${small[1]},hflip[o2];` +
    `[bg][o1]overlay=x='mod(n*${Math.round(137 * k)},${w - big[0]!})':y='mod(n*${Math.round(71 * k)},${h - big[1]!})'[a];` +
    `[a][o2]overlay=x='${w - small[0]! - 64}-mod(n*${Math.round(53 * k)},${w - small[0]! - 64})':y='mod(n*${Math.round(113 * k)},${h - small[1]!})'` +
    (options.noise ? ',noise=alls=4:allf=t' : '');
  const bytes = w * h * 3;
  const raw = execFileSync(
    locateFfmpeg().ffmpegPath,
    ['-hide_banner', '-loglevel', 'error', '-loop', '1', '-framerate', '1', '-i', photos[0], '-loop', '1', '-framerate', '1', '-i', photos[1], '-filter_complex', filter, '-frames:v', String(frames), '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'],
    { maxBuffer: frames * bytes + 1024 },
  );
  return Array.from({ length: frames }, (_, i) => ({ data: new Uint8Array(raw.buffer, raw.byteOffset + i * bytes, bytes), width: w, height: h, channels: 3 as const }));
}
