/**
 * Interleaved 8-bit RGB -> planar float32 through a per-channel lookup table (rescale and
 * normalize folded in): out[c * plane + p] = lut[c * 256 + rgb[3 * p + c]], for `count` pixels
 * read from `rgb` at pixel `from` and written at `outOffset` within each plane. A small
 * monomorphic loop of its own, so V8 optimizes it once for every caller (inlined in a closure it
 * ran at interpreter speed: 23 ms instead of 1.3 ms per 512x512 frame).
 */
export function rgbToPlanar(rgb: Uint8Array, from: number, count: number, lut: Float32Array, out: Float32Array, plane: number, outOffset: number): void {
  if (lut.length < 768) throw new RangeError(`rgbToPlanar: lut has ${lut.length} entries, needs 768`);
  if ((from + count) * 3 > rgb.length) throw new RangeError(`rgbToPlanar: pixels [${from}, ${from + count}) outside the ${rgb.length / 3}-pixel image`);
  if (outOffset + count > plane || out.length < 3 * plane) throw new RangeError(`rgbToPlanar: [${outOffset}, ${outOffset + count}) outside a plane of ${plane}`);
  const g = plane + outOffset;
  const b = 2 * plane + outOffset;
  for (let p = 0, s = from * 3; p < count; p++, s += 3) {
    out[outOffset + p] = lut[rgb[s]!]!;
    out[g + p] = lut[256 + rgb[s + 1]!]!;
    out[b + p] = lut[512 + rgb[s + 2]!]!;
  }
}
