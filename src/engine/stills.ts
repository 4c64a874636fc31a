// A frame's still: the frame as the vision encoder saw it (tile-size RGB, what ingest hands the
// encoder), kept as WebP so the archive tier can drop the KV and re-encode the frame when a
// question needs it. WebP q75: 2.1-2.2x smaller than JPEG q75 at equal answer fidelity, and the
// codec's share of the archive's difference is ~1-2% of it (docs/PERFORMANCE.md, "Memory tiers").
import sharp from 'sharp';
import type { RgbImage } from './frameGate.js';

export const STILL_QUALITY = 75;

/** The still of an RGB frame (WebP bytes), encoded on libvips' threads. */
export async function encodeStill(frame: RgbImage): Promise<Uint8Array> {
  const out = await sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } }).webp({ quality: STILL_QUALITY }).toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** A still back to RGB (any alpha dropped). */
export async function decodeStill(still: Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(still).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}
