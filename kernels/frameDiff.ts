// Frame gating's pixel test (docs/ingest.md, "Frame gating"): a decoded RGB frame shrunk to a small
// luminance image, and how much two such images differ. NVRs detect motion the same way: averaging
// over a block hides sensor and codec noise, a changed block is a real change.

/** BT.601 luma weights scaled by 256 (77 + 150 + 29 = 256): integer sums stay exact. */
const LUMA_R = 77;
const LUMA_G = 150;
const LUMA_B = 29;

/**
 * Interleaved 8-bit RGB (width x height, row-major) -> side x side luminance (0..255), each output
 * pixel the mean luma of the source pixels in its block: row y falls in block floor(y * side / height),
 * column x in floor(x * side / width). Needs width >= side and height >= side (every block non-empty).
 * `sums` is scratch of at least side * side entries (reused per frame: no allocation).
 */
export function lumaThumbnail(rgb: Uint8Array, width: number, height: number, side: number, out: Float32Array, sums: Uint32Array): Float32Array {
  if (!(Number.isInteger(side) && side >= 1)) throw new RangeError(`lumaThumbnail: side must be an integer >= 1, got ${side}`);
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= side && height >= side)) {
    throw new RangeError(`lumaThumbnail: a ${width}x${height} image cannot be shrunk to ${side}x${side}`);
  }
  if (rgb.length < width * height * 3) throw new RangeError(`lumaThumbnail: ${rgb.length} bytes, a ${width}x${height} RGB image needs ${width * height * 3}`);
  const cells = side * side;
  if (out.length < cells || sums.length < cells) throw new RangeError(`lumaThumbnail: out and sums need ${cells} entries`);
  sums.fill(0, 0, cells);
  // A block of 1920x1080 into 64x64 holds ~510 pixels of at most 65280: far below 2^32.
  // Columns of block bx are [ceil(bx * width / side), ceil((bx + 1) * width / side)): a run per block
  // and row, summed locally (no division per pixel: 4x faster than looking each pixel's block up).
  for (let y = 0, s = 0; y < height; y++) {
    const rowBase = Math.floor((y * side) / height) * side;
    let x = 0;
    for (let bx = 0; bx < side; bx++) {
      const end = Math.ceil(((bx + 1) * width) / side);
      let acc = 0;
      for (; x < end; x++, s += 3) acc += LUMA_R * rgb[s]! + LUMA_G * rgb[s + 1]! + LUMA_B * rgb[s + 2]!;
      sums[rowBase + bx]! += acc;
    }
  }
  for (let by = 0; by < side; by++) {
    const rows = Math.ceil(((by + 1) * height) / side) - Math.ceil((by * height) / side);
    for (let bx = 0; bx < side; bx++) {
      const cols = Math.ceil(((bx + 1) * width) / side) - Math.ceil((bx * width) / side);
      out[by * side + bx] = sums[by * side + bx]! / (256 * rows * cols);
    }
  }
  return out;
}

export interface LumaChange {
  /** Mean |a - b| over the pixels (luma levels, 0..255). */
  meanAbsDiff: number;
  /** Fraction of the pixels whose |a - b| exceeds pixelDelta (0..1). */
  changedFraction: number;
}

/** How much two luminance images of the same size differ (lumaThumbnail's output). */
export function lumaChange(a: Float32Array, b: Float32Array, pixelDelta: number): LumaChange {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`lumaChange: images of ${a.length} and ${b.length} pixels`);
  let total = 0;
  let changed = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    total += d;
    if (d > pixelDelta) changed++;
  }
  return { meanAbsDiff: total / a.length, changedFraction: changed / a.length };
}
