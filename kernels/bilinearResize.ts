// Bilinear resizing of a grid of feature vectors, with the sampling rule of torch's
// interpolate(mode='bilinear', align_corners=False, antialias=False), which is also ONNX Resize's
// linear mode with coordinate_transformation_mode 'half_pixel'. LLaVA-OneVision pools each video
// frame's 27x27 grid of projected patch features to 14x14 this way (HF transformers'
// LlavaOnevisionModel.apply_pooling; ReKV calls the same function).

/** Side of a frame's pooled grid: ceil(side / 2) (LLaVA-OneVision: 27 -> 14, so 196 tokens a frame). */
export function pooledGridSide(side: number): number {
  if (!Number.isInteger(side) || side < 1) throw new RangeError(`pooledGridSide: side must be a positive integer, got ${side}`);
  return Math.ceil(side / 2);
}

/**
 * For each output index on one axis: the two source indices it blends and the weight of the
 * second. The source coordinate is (o + 0.5) * inSize / outSize - 0.5, raised to 0 when negative
 * (only when upsampling); the second neighbour is clamped to the last index.
 */
function axisTaps(inSize: number, outSize: number): { lo: Int32Array; hi: Int32Array; frac: Float64Array } {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const x = Math.max((o + 0.5) * scale - 0.5, 0);
    const i = Math.min(Math.floor(x), inSize - 1);
    lo[o] = i;
    hi[o] = Math.min(i + 1, inSize - 1);
    frac[o] = x - i;
  }
  return { lo, hi, frac };
}

/**
 * Resizes a grid of `dim`-wide vectors, channels last: `src` is [inH * inW, dim] with row r,
 * column c at vector index r * inW + c; the result is [outH * outW, dim] in the same layout.
 * Each output vector is the bilinear blend of its four source neighbours (weights and sums in
 * float64, rounded once to float32). Throws on sizes < 1 or buffers too short.
 */
export function resizeBilinear(
  src: Float32Array,
  inH: number,
  inW: number,
  dim: number,
  outH: number,
  outW: number,
  out?: Float32Array,
): Float32Array {
  for (const [name, value] of [['inH', inH], ['inW', inW], ['dim', dim], ['outH', outH], ['outW', outW]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`resizeBilinear: ${name} must be a positive integer, got ${value}`);
  }
  if (src.length < inH * inW * dim) throw new RangeError(`resizeBilinear: src length ${src.length} < ${inH}*${inW}*${dim}`);
  const dst = out ?? new Float32Array(outH * outW * dim);
  if (dst.length < outH * outW * dim) throw new RangeError(`resizeBilinear: out length ${dst.length} < ${outH}*${outW}*${dim}`);
  const rows = axisTaps(inH, outH);
  const cols = axisTaps(inW, outW);
  for (let r = 0; r < outH; r++) {
    const fy = rows.frac[r]!;
    const top = rows.lo[r]! * inW;
    const bottom = rows.hi[r]! * inW;
    for (let c = 0; c < outW; c++) {
      const fx = cols.frac[c]!;
      // The four neighbours' weights: (1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx.
      const w00 = (1 - fy) * (1 - fx);
      const w01 = (1 - fy) * fx;
      const w10 = fy * (1 - fx);
      const w11 = fy * fx;
      const a = (top + cols.lo[c]!) * dim;
      const b = (top + cols.hi[c]!) * dim;
      const d = (bottom + cols.lo[c]!) * dim;
      const e = (bottom + cols.hi[c]!) * dim;
      const o = (r * outW + c) * dim;
      for (let k = 0; k < dim; k++) {
        dst[o + k] = w00 * src[a + k]! + w01 * src[b + k]! + w10 * src[d + k]! + w11 * src[e + k]!;
      }
    }
  }
  return dst;
}

/**
 * LLaVA-OneVision's video pooling of one or more frames: each frame's `side` x `side` grid of
 * `dim`-wide features ([frames * side * side, dim], frames one after another) becomes a
 * pooledGridSide(side)^2 grid ([frames * pooled^2, dim]).
 */
export function poolFrameGrids(src: Float32Array, frames: number, side: number, dim: number): Float32Array {
  if (!Number.isInteger(frames) || frames < 1) throw new RangeError(`poolFrameGrids: frames must be a positive integer, got ${frames}`);
  const pooled = pooledGridSide(side);
  const inRows = side * side * dim;
  const outRows = pooled * pooled * dim;
  if (src.length < frames * inRows) throw new RangeError(`poolFrameGrids: src length ${src.length} < ${frames}*${side}*${side}*${dim}`);
  const dst = new Float32Array(frames * outRows);
  for (let f = 0; f < frames; f++) {
    resizeBilinear(src.subarray(f * inRows, (f + 1) * inRows), side, side, dim, pooled, pooled, dst.subarray(f * outRows, (f + 1) * outRows));
  }
  return dst;
}
