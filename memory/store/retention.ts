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
  /** Position in stream order (the first chunk id); default the segment id. Demoted segments get new, higher ids. */
  order?: number;
}

/**
 * Segments to delete, oldest first. Only a prefix of the oldest segments is ever taken, so the
 * stored history stays one contiguous span. By age: segments whose newest chunk ended more than
 * maxStreamAgeSec before `newestTEnd`. By bytes: then more, until the total of all segment files is
 * at most maxBytes, and until the segment files plus `otherBytes` (the rest of the folder and the
 * record about to be written) are at most budgetBytes. Stops at the first busy segment.
 */
export function selectSegmentsToDelete(
  segments: readonly RetentionSegment[],
  newestTEnd: number | null,
  policy: RetentionPolicy,
  otherBytes = 0,
): number[] {
  const sorted = [...segments].sort((a, b) => (a.order ?? a.segment) - (b.order ?? b.segment) || a.segment - b.segment);
  let total = sorted.reduce((s, x) => s + x.fileBytes, 0);
  const out: number[] = [];
  for (const s of sorted) {
    if (s.busy) break;
    const tooOld =
      policy.maxStreamAgeSec !== undefined &&
      newestTEnd !== null &&
      (s.tEnd === null || s.tEnd < newestTEnd - policy.maxStreamAgeSec);
    const tooBig = policy.maxBytes !== undefined && total > policy.maxBytes;
    const overBudget = policy.budgetBytes !== undefined && total + otherBytes > policy.budgetBytes;
    if (!tooOld && !tooBig && !overBudget) break;
    out.push(s.segment);
    total -= s.fileBytes;
  }
  return out;
}
