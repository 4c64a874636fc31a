// Symmetric 8-bit rows for vector search: each row r of a packed [rows, dim] matrix is stored as
// codes c (Int8, -127..127) and one scale s_r, with x ~ s_r * c. A query scores a row as
// s_r * sum(q_i * c_i), so a sealed index block reads 1 byte per value instead of 4.
//
// Specification, per row x of float32 values:
//   m     = max |x_i|                      (exact)
//   s     = m / 127 in float64, stored as fround(s) (0 when m == 0: an all-zero row)
//   c_i   = round-half-away-from-zero(x_i / s_stored), clamped to [-127, 127] (0 when s == 0)
// so |x_i - s*c_i| <= s/2 (plus the clamp's float32 rounding of s). Non-finite rows are rejected.

/** Largest code magnitude (-128 is never used, so the range is symmetric). */
export const INT8_ROW_MAX = 127;

/** Quantizes `rows` rows of `src` (packed [rows, dim]) into codes and per-row scales. */
export function quantizeRowsInt8(src: Float32Array, rows: number, dim: number, codes: Int8Array, scales: Float32Array): void {
  checkShape('quantizeRowsInt8', rows, dim);
  if (src.length < rows * dim) throw new RangeError(`quantizeRowsInt8: src length ${src.length} < ${rows}*${dim}`);
  if (codes.length < rows * dim) throw new RangeError(`quantizeRowsInt8: codes length ${codes.length} < ${rows}*${dim}`);
  if (scales.length < rows) throw new RangeError(`quantizeRowsInt8: scales length ${scales.length} < ${rows}`);
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let max = 0;
    for (let i = 0; i < dim; i++) {
      const x = src[base + i]!;
      if (!Number.isFinite(x)) throw new RangeError(`quantizeRowsInt8: non-finite value ${x} in row ${r}`);
      const a = Math.abs(x);
      if (a > max) max = a;
    }
    const scale = Math.fround(max / INT8_ROW_MAX);
    scales[r] = scale;
    if (scale === 0) {
      codes.fill(0, base, base + dim);
      continue;
    }
    const inv = 1 / scale;
    for (let i = 0; i < dim; i++) {
      const y = src[base + i]! * inv;
      const q = y >= 0 ? Math.floor(y + 0.5) : -Math.floor(-y + 0.5);
      codes[base + i] = q > INT8_ROW_MAX ? INT8_ROW_MAX : q < -INT8_ROW_MAX ? -INT8_ROW_MAX : q;
    }
  }
}

/**
 * out[r] = scales[r] * (query . codes row r) for `rows` rows starting at row `from`: the sealed
 * index's scan. Four float64 partial sums over i % 4 (as dotRows), combined as s0 + s1 + (s2 + s3).
 */
export function dotRowsInt8(codes: Int8Array, scales: Float32Array, from: number, rows: number, dim: number, query: Float32Array, out: Float64Array): Float64Array {
  checkShape('dotRowsInt8', rows, dim);
  if (!Number.isInteger(from) || from < 0) throw new RangeError(`dotRowsInt8: bad first row ${from}`);
  if (codes.length < (from + rows) * dim) throw new RangeError(`dotRowsInt8: codes length ${codes.length} < ${from + rows}*${dim}`);
  if (scales.length < from + rows) throw new RangeError(`dotRowsInt8: scales length ${scales.length} < ${from + rows}`);
  if (query.length < dim) throw new RangeError(`dotRowsInt8: query length ${query.length} < ${dim}`);
  if (out.length < rows) throw new RangeError(`dotRowsInt8: out length ${out.length} < ${rows}`);
  const end4 = dim - (dim % 4);
  for (let r = 0; r < rows; r++) {
    const base = (from + r) * dim;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let i = 0; i < end4; i += 4) {
      s0 += query[i]! * codes[base + i]!;
      s1 += query[i + 1]! * codes[base + i + 1]!;
      s2 += query[i + 2]! * codes[base + i + 2]!;
      s3 += query[i + 3]! * codes[base + i + 3]!;
    }
    for (let i = end4; i < dim; i++) s0 += query[i]! * codes[base + i]!;
    out[r] = scales[from + r]! * (s0 + s1 + (s2 + s3));
  }
  return out;
}

function checkShape(name: string, rows: number, dim: number): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(dim) || dim < 1) throw new RangeError(`${name}: bad shape [${rows}, ${dim}]`);
}
