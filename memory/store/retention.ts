// Which whole segments a retention policy deletes. Pure: the store supplies the segments and
// applies the result (manifest rows first, in one transaction, then the files).
import type { RetentionPolicy } from './types.js';

export interface RetentionSegment {
  segment: number;
  fileBytes: number;
  /** Newest committed chunk's tEnd in this segment; null when it holds no committed chunk. */
  tEnd: number | null;
  /** The segment being appended to, or one with rows still waiting to commit: never deleted. */
  busy: boolean;
}

/**
 * Segments to delete, oldest first. Only a prefix of the oldest segments is ever taken, so the
 * stored history stays one contiguous span. By age: segments whose newest chunk ended more than
 * maxStreamAgeSec before `newestTEnd`. By bytes: then more, until the total of all segment files is
 * at most maxBytes. Stops at the first busy segment.
 */
export function selectSegmentsToDelete(
  segments: readonly RetentionSegment[],
  newestTEnd: number | null,
  policy: RetentionPolicy,
): number[] {
  const sorted = [...segments].sort((a, b) => a.segment - b.segment);
  let total = sorted.reduce((s, x) => s + x.fileBytes, 0);
  const out: number[] = [];
  for (const s of sorted) {
    if (s.busy) break;
    const tooOld =
      policy.maxStreamAgeSec !== undefined &&
      newestTEnd !== null &&
      (s.tEnd === null || s.tEnd < newestTEnd - policy.maxStreamAgeSec);
    const tooBig = policy.maxBytes !== undefined && total > policy.maxBytes;
    if (!tooOld && !tooBig) break;
    out.push(s.segment);
    total -= s.fileBytes;
  }
  return out;
}
