// A frame's still: the frame as the vision encoder saw it (tile-size RGB, what ingest hands the
// encoder), kept as WebP so the archive tier can drop the KV and re-encode the frame when a
// question needs it. Quality 90, not 75: demotion to the archive recodes runs of stills as H.264
// groups (stillGroups.ts), and from q90 they reach q75's fidelity in ~35% fewer bytes; the cost is
// ~50 KB more on a still riding with KV (~10% of a 4-bit record at smolvlm2-256m geometry;
// docs/PERFORMANCE.md, "Archive still groups").
import type { RgbImage } from './frameGate.js';

/** sharp loads libvips (~0.13 s); it is imported on first use so that commands which never touch pixels start sooner. */
let sharpModule: Promise<typeof import('sharp')> | undefined;
async function loadSharp(): Promise<typeof import('sharp').default> {
  return (await (sharpModule ??= import('sharp'))).default;
}

export const STILL_QUALITY = 90;

/** The still of an RGB frame (WebP bytes), encoded on libvips' threads. */
export async function encodeStill(frame: RgbImage, quality = STILL_QUALITY): Promise<Uint8Array> {
  const sharp = await loadSharp();
  const out = await sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } }).webp({ quality }).toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** A still back to RGB (any alpha dropped). */
export async function decodeStill(still: Uint8Array): Promise<RgbImage> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(still).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}
