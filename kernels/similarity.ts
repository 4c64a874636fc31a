// Vector similarity over plain or typed arrays, with offsets so callers can
// address rows of a packed matrix without subarray allocations.

function span(fn: string, a: ArrayLike<number>, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > a.length) {
    throw new RangeError(`${fn}: range [${offset}, ${offset + length}) outside length ${a.length}`);
  }
}

/** Dot product of a[aOffset..+length) and b[bOffset..+length); length defaults to what remains of a. */
export function dot(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  length?: number,
  aOffset = 0,
  bOffset = 0,
): number {
  const n = length ?? a.length - aOffset;
  span('dot', a, aOffset, n);
  span('dot', b, bOffset, n);
  let s = 0;
  for (let i = 0; i < n; i++) s += a[aOffset + i] * b[bOffset + i];
  return s;
}

/** Euclidean norm of a[offset..+length); length defaults to what remains of a. */
export function l2Norm(a: ArrayLike<number>, length?: number, offset = 0): number {
  const n = length ?? a.length - offset;
  span('l2Norm', a, offset, n);
  let s = 0;
  for (let i = 0; i < n; i++) {
    const v = a[offset + i];
    s += v * v;
  }
  return Math.sqrt(s);
}

/**
 * Cosine similarity in one pass; 0 when either norm is 0. Clamped to [-1, 1]
 * because rounding can push |cos| of near-parallel vectors just past 1.
 */
export function cosine(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  length?: number,
  aOffset = 0,
  bOffset = 0,
): number {
  const n = length ?? a.length - aOffset;
  span('cosine', a, aOffset, n);
  span('cosine', b, bOffset, n);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[aOffset + i];
    const y = b[bOffset + i];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  if (aa === 0 || bb === 0) return 0;
  const c = ab / (Math.sqrt(aa) * Math.sqrt(bb));
  return c > 1 ? 1 : c < -1 ? -1 : c;
}
