// Top-k selection with a size-k binary min-heap: O(n log k), no full sort.
// Order: larger value first, ties by lower index, NaN after every number.
import { nativeKernels } from './native.js';

/** True when (va, ia) ranks below (vb, ib) in the selection order. */
function worse(va: number, ia: number, vb: number, ib: number): boolean {
  if (va !== va) return vb === vb || ia > ib; // NaN loses to any number; NaN vs NaN by index
  if (vb !== vb) return false;
  return va < vb || (va === vb && ia > ib);
}

/** Restores the heap below slot i; the root holds the worst kept entry. */
function siftDown(vals: Float64Array, idx: Int32Array, size: number, i: number): void {
  const v = vals[i]!;
  const x = idx[i]!;
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && worse(vals[c + 1]!, idx[c + 1]!, vals[c]!, idx[c]!)) c++;
    if (!worse(vals[c]!, idx[c]!, v, x)) break;
    vals[i] = vals[c]!;
    idx[i] = idx[c]!;
    i = c;
  }
  vals[i] = v;
  idx[i] = x;
}

function siftUp(vals: Float64Array, idx: Int32Array, i: number): void {
  const v = vals[i]!;
  const x = idx[i]!;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!worse(v, x, vals[p]!, idx[p]!)) break;
    vals[i] = vals[p]!;
    idx[i] = idx[p]!;
    i = p;
  }
  vals[i] = v;
  idx[i] = x;
}

/**
 * The k largest scores, sorted descending (ties: lower index first). NaN is
 * only returned when fewer than k numbers exist. k is clamped to [0, length].
 */
export function topK(scores: ArrayLike<number>, k: number): { indices: Int32Array; values: Float64Array } {
  const n = scores.length;
  const kk = k > 0 ? Math.min(Math.floor(k), n) : 0;
  const vals = new Float64Array(kk);
  const idx = new Int32Array(kk);
  if (kk === 0) return { indices: idx, values: vals };
  const native = nativeKernels();
  if (native && (scores instanceof Float32Array || scores instanceof Float64Array)) {
    native.topK(scores, kk, vals, idx);
    return { indices: idx, values: vals };
  }
  let size = 0;
  for (let i = 0; i < n; i++) {
    const v = scores[i]!;
    // Most scores lose to the worst kept one: one comparison. (Scanning in index order, an equal
    // score loses on its higher index; NaN on either side makes this false and takes the full test.)
    if (size === kk && v <= vals[0]!) continue;
    if (size < kk) {
      vals[size] = v;
      idx[size] = i;
      siftUp(vals, idx, size++);
    } else if (worse(vals[0]!, idx[0]!, v, i)) {
      vals[0] = v;
      idx[0] = i;
      siftDown(vals, idx, size, 0);
    }
  }
  // Pop the worst into the tail repeatedly: the arrays end up sorted best-first in place.
  while (size > 1) {
    const v = vals[0]!;
    const x = idx[0]!;
    size--;
    vals[0] = vals[size]!;
    idx[0] = idx[size]!;
    vals[size] = v;
    idx[size] = x;
    siftDown(vals, idx, size, 0);
  }
  return { indices: idx, values: vals };
}

/**
 * Index (relative to offset) of the largest of values[offset..+length); the
 * first maximum wins and NaN never beats a number. -1 for an empty range.
 */
export function argmax(values: ArrayLike<number>, offset = 0, length?: number): number {
  const n = length ?? values.length - offset;
  if (offset < 0 || n < 0 || offset + n > values.length) {
    throw new RangeError(`argmax: range [${offset}, ${offset + n}) outside length ${values.length}`);
  }
  if (n === 0) return -1;
  let best = 0;
  let bestV = values[offset]!;
  for (let i = 1; i < n; i++) {
    const v = values[offset + i]!;
    // bestV !== bestV: a leading NaN gives way to the first number.
    if (v > bestV || (bestV !== bestV && v === v)) {
      best = i;
      bestV = v;
    }
  }
  return best;
}
