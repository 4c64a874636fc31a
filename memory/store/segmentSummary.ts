// Per-segment facts about committed chunks, and the store-wide totals derived from them. The
// manifest persists one row per segment (table segment_summaries) in the same transactions that
// change the chunk rows; this RAM copy answers stats() and retention in O(segments), never by a
// query over the chunk rows (each carries its representatives: 5.7 KiB at smolvlm2-256m geometry, 22.5 KiB in older float32 rows).
import type { RecordDtype } from '../frameChunk.js';
import type { ChunkLocation } from './manifest.js';

export type BytesByDtype = Record<RecordDtype, number>;

/** Every payload dtype, in dtype-code order. */
export const STORE_DTYPES: readonly RecordDtype[] = ['float32', 'float16', 'int8', 'kivi4', 'archive'];

export interface SegmentSummary {
  segment: number;
  chunkCount: number;
  /** Record bytes (header + payload + padding) of the committed chunks. */
  bytes: number;
  bytesByDtype: BytesByDtype;
  firstChunkId: number;
  lastChunkId: number;
  tStart: number;
  tEnd: number;
  /** End of the last committed record: everything after it is uncommitted. */
  committedEnd: number;
  wallStart: number;
  wallEnd: number;
}

/** The fields of a chunk row a summary needs. */
export type SummaryRow = Pick<ChunkLocation, 'chunkId' | 'segment' | 'offset' | 'length' | 'tStart' | 'tEnd' | 'wallTime' | 'dtype'>;

export interface StoreTotals {
  chunkCount: number;
  bytes: number;
  bytesByDtype: BytesByDtype;
  firstChunkId: number | null;
  lastChunkId: number | null;
  tStart: number | null;
  tEnd: number | null;
  wallStart: number | null;
  wallEnd: number | null;
}

/** `prev` (not modified) with `row` added; a new summary when `prev` is undefined. */
export function addRow(prev: SegmentSummary | undefined, row: SummaryRow): SegmentSummary {
  const end = row.offset + row.length;
  if (prev === undefined) {
    const bytesByDtype: BytesByDtype = { float32: 0, float16: 0, int8: 0, kivi4: 0, archive: 0 };
    bytesByDtype[row.dtype] = row.length;
    return {
      segment: row.segment,
      chunkCount: 1,
      bytes: row.length,
      bytesByDtype,
      firstChunkId: row.chunkId,
      lastChunkId: row.chunkId,
      tStart: row.tStart,
      tEnd: row.tEnd,
      committedEnd: end,
      wallStart: row.wallTime,
      wallEnd: row.wallTime,
    };
  }
  const bytesByDtype = { ...prev.bytesByDtype };
  bytesByDtype[row.dtype] += row.length;
  return {
    segment: prev.segment,
    chunkCount: prev.chunkCount + 1,
    bytes: prev.bytes + row.length,
    bytesByDtype,
    firstChunkId: Math.min(prev.firstChunkId, row.chunkId),
    lastChunkId: Math.max(prev.lastChunkId, row.chunkId),
    tStart: Math.min(prev.tStart, row.tStart),
    tEnd: Math.max(prev.tEnd, row.tEnd),
    committedEnd: Math.max(prev.committedEnd, end),
    wallStart: Math.min(prev.wallStart, row.wallTime),
    wallEnd: Math.max(prev.wallEnd, row.wallTime),
  };
}

function emptyTotals(): StoreTotals {
  return {
    chunkCount: 0,
    bytes: 0,
    bytesByDtype: { float32: 0, float16: 0, int8: 0, kivi4: 0, archive: 0 },
    firstChunkId: null,
    lastChunkId: null,
    tStart: null,
    tEnd: null,
    wallStart: null,
    wallEnd: null,
  };
}

const min = (a: number | null, b: number): number => (a === null || b < a ? b : a);
const max = (a: number | null, b: number): number => (a === null || b > a ? b : a);

/** Adds one segment's facts to running totals (in place). */
function include(t: StoreTotals, s: SegmentSummary): void {
  t.chunkCount += s.chunkCount;
  t.bytes += s.bytes;
  for (const d of STORE_DTYPES) t.bytesByDtype[d] += s.bytesByDtype[d];
  t.firstChunkId = min(t.firstChunkId, s.firstChunkId);
  t.lastChunkId = max(t.lastChunkId, s.lastChunkId);
  t.tStart = min(t.tStart, s.tStart);
  t.tEnd = max(t.tEnd, s.tEnd);
  t.wallStart = min(t.wallStart, s.wallStart);
  t.wallEnd = max(t.wallEnd, s.wallEnd);
}

/**
 * The summaries of the segments that hold committed chunks, and their totals. Growth (a commit)
 * updates the totals in O(changed segments); a removal recomputes them in O(segments), since a
 * minimum or maximum cannot be subtracted.
 */
export class SegmentSummaries {
  private readonly bySegment = new Map<number, SegmentSummary>();
  private sums: StoreTotals = emptyTotals();

  constructor(list: Iterable<SegmentSummary> = []) {
    this.reset(list);
  }

  /** Replaces everything (open, or a reader's reload). */
  reset(list: Iterable<SegmentSummary>): void {
    this.bySegment.clear();
    for (const s of list) this.bySegment.set(s.segment, s);
    this.recompute();
  }

  get(segment: number): SegmentSummary | undefined {
    return this.bySegment.get(segment);
  }

  get size(): number {
    return this.bySegment.size;
  }

  /** Ascending segment id. */
  list(): SegmentSummary[] {
    return [...this.bySegment.values()].sort((a, b) => a.segment - b.segment);
  }

  totals(): StoreTotals {
    return { ...this.sums, bytesByDtype: { ...this.sums.bytesByDtype } };
  }

  /** Summaries that only gained chunks (each replaces its segment's previous one). */
  grew(changed: Iterable<SegmentSummary>): void {
    for (const s of changed) {
      const old = this.bySegment.get(s.segment);
      if (old !== undefined) {
        this.sums.chunkCount -= old.chunkCount;
        this.sums.bytes -= old.bytes;
        for (const d of STORE_DTYPES) this.sums.bytesByDtype[d] -= old.bytesByDtype[d];
      }
      this.bySegment.set(s.segment, s);
      // A grown summary contains the old one, so folding it into the extremes is exact.
      include(this.sums, s);
    }
  }

  /** Segments that lost chunks: `changed` replace theirs, `removed` (now empty) go. */
  shrank(changed: Iterable<SegmentSummary>, removed: Iterable<number>): void {
    for (const s of changed) this.bySegment.set(s.segment, s);
    for (const segment of removed) this.bySegment.delete(segment);
    this.recompute();
  }

  private recompute(): void {
    this.sums = emptyTotals();
    for (const s of this.bySegment.values()) include(this.sums, s);
  }
}
