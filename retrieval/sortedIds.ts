// Chunk ids are kept in ascending order (they are monotonic per stream), so membership and row
// lookups are binary searches and two id lists can be merged in one pass.

/** Index of id in ids[0..size), or -(insertion point) - 1 when absent. */
export function searchId(ids: ArrayLike<number>, size: number, id: number): number {
  let lo = 0;
  let hi = size - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = ids[mid]!;
    if (v < id) lo = mid + 1;
    else if (v > id) hi = mid - 1;
    else return mid;
  }
  return -lo - 1;
}

export function hasId(ids: ArrayLike<number>, size: number, id: number): boolean {
  return searchId(ids, size, id) >= 0;
}

/** Sorted, de-duplicated copy of ids as a Uint32Array. */
export function sortedUnique(ids: Iterable<number>): Uint32Array {
  const sorted = Uint32Array.from(ids).sort();
  let n = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[n - 1]) sorted[n++] = sorted[i]!;
  return sorted.subarray(0, n);
}
