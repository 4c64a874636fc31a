// Demotion (issue 15 item 2): old segments rewritten from the stream's dtype to 'kivi4', and from
// any KV dtype to 'archive' (the still alone), and the pure parts of it: which segment goes next
// and to what, what a record becomes, and the dtype spans that stats() and the memory horizon
// report. ChunkStore.demoteSegment() does the I/O and the commit (docs/memory-store.md, Demotion).
import type { FrameChunk, RecordDtype } from '../frameChunk.js';
import type { ChunkLocation } from './manifest.js';
import { payloadCrc32 } from './checksum.js';
import { decodePayload, encodePayload } from './payloadCodec.js';
import type { EncodedRecord } from './recordEncoder.js';
import { encodeRecordHeader, payloadLayout, RECORD_HEADER_BYTES, recordLength, STILL_LENGTH_BYTES, stillOf, writeStill } from './recordFormat.js';
import type { SegmentSummary } from './segmentSummary.js';
import { STORE_DTYPES } from './segmentSummary.js';
import type { ChunkGeometry, TierSpan } from './types.js';

/** The compressed KV tier demotion writes first. */
export const DEMOTED_DTYPE = 'kivi4';
/** The last tier: no KV, the frame's still only. */
export const ARCHIVE_DTYPE = 'archive';

/** Where a segment's demotion takes it. */
export type DemotionTarget = typeof DEMOTED_DTYPE | typeof ARCHIVE_DTYPE;

/** Record bytes of a segment that are still in a full KV dtype (neither kivi4 nor archive). */
function fullBytes(s: SegmentSummary): number {
  return s.bytes - s.bytesByDtype.kivi4 - s.bytesByDtype.archive;
}

/** A segment's position in stream order: its first chunk id (segment ids are not: demoted files get new ids). */
export function streamOrder(a: SegmentSummary, b: SegmentSummary): number {
  return a.firstChunkId - b.firstChunkId || a.segment - b.segment;
}

/** The dtype holding most of a segment's bytes (a segment is normally all one dtype). */
export function segmentDtype(s: SegmentSummary): RecordDtype {
  let best: RecordDtype = 'float32';
  for (const d of STORE_DTYPES) if (s.bytesByDtype[d] > s.bytesByDtype[best]) best = d;
  return best;
}

/** What the demotion policy looks at besides the segments (docs/memory-store.md, Demotion). */
export interface DemotionPolicy {
  /** Stream seconds at the recent end never demoted (at most kvBytesLimit of them). */
  keepFullSec: number;
  /** Whether KV may go to the archive (and to kivi4: false when the stream's own dtype is kivi4, nothing to gain). */
  toArchive: boolean;
  toKivi4: boolean;
  /** Record bytes chunks holding KV may take before the oldest go to the archive (kvShare x budget). */
  kvBytesLimit: number;
  /** Segments found to hold no still to archive (chunks stored without one): never archived, kivi4 still applies. */
  stillless: ReadonlySet<number>;
}

/** Whether a chunk row kept its frame's still (its payload goes on past the KV sections). */
export function rowHasStill(row: ChunkLocation, geometry: ChunkGeometry): boolean {
  return row.payloadBytes > payloadLayout(row.dtype, geometry, row.tokenCount).totalBytes;
}

/**
 * The oldest segment (stream order) that demotion may rewrite now, and its target, or null. Only
 * segments older than the recent band (the newest keepFullSec of stream time, at most kvBytesLimit
 * of it), not busy (being appended to, rows pending) and without pinned chunks (deferred, not
 * skipped for good) qualify. Once the chunks that
 * hold KV take more than kvBytesLimit, the oldest segment holding KV goes to the archive; before
 * that, the oldest holding a full dtype goes to kivi4.
 */
export function pickDemotion(
  summaries: readonly SegmentSummary[],
  newestTEnd: number | null,
  policy: DemotionPolicy,
  busy: (segment: number) => boolean,
  pinned: (s: SegmentSummary) => boolean,
): { segment: SegmentSummary; target: DemotionTarget } | null {
  if (newestTEnd === null) return null;
  let kvBytes = 0;
  for (const s of summaries) kvBytes += s.bytes - s.bytesByDtype.archive;
  const ordered = [...summaries].sort(streamOrder);
  // The recent band kept as it is: the newest keepFullSec of stream time, but never more than the
  // KV share of the budget (a budget too small for keepFullSec would otherwise only ever delete).
  let band = 0;
  let protectedFrom = ordered.length;
  for (let i = ordered.length - 1; i >= 0; i--) {
    const s = ordered[i]!;
    band += s.bytes - s.bytesByDtype.archive;
    if (s.tEnd <= newestTEnd - policy.keepFullSec || band > policy.kvBytesLimit) break;
    protectedFrom = i;
  }
  const oldEnough = ordered.slice(0, protectedFrom).filter((s) => !busy(s.segment) && !pinned(s));
  if (policy.toArchive && kvBytes > policy.kvBytesLimit) {
    const s = oldEnough.find((x) => x.bytesByDtype.archive < x.bytes && !policy.stillless.has(x.segment));
    if (s !== undefined) return { segment: s, target: ARCHIVE_DTYPE };
  }
  if (!policy.toKivi4) return null;
  const s = oldEnough.find((x) => fullBytes(x) > 0);
  return s === undefined ? null : { segment: s, target: DEMOTED_DTYPE };
}

/**
 * The record of `row` (intact: checked by the caller, in `record` from its first byte) re-encoded
 * as `target`, one layer at a time with `between()` awaited after each layer (it gives the event
 * loop back when the slice is spent: a 256m chunk is ~20-50 ms of quantization, a layer 1/30 of it).
 * The still, if the record has one, is carried over; 'archive' keeps only it. The same bytes as
 * RecordEncoder.encode of the decoded chunk. Null when `between()` says stop.
 */
export async function reencodeRecord(
  record: Buffer,
  row: ChunkLocation,
  geometry: ChunkGeometry,
  target: DemotionTarget,
  between: () => Promise<boolean>,
): Promise<EncodedRecord | null> {
  const payload = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + row.payloadBytes);
  const kvBytes = payloadLayout(row.dtype, geometry, row.tokenCount).totalBytes;
  const still = stillOf(payload, kvBytes) ?? null; // intact record: never undefined
  if (target === ARCHIVE_DTYPE && still !== null) return archiveRecordOf(row, geometry, still);
  const lay = payloadLayout(target, geometry, row.tokenCount);
  const payloadBytes = lay.totalBytes + (still === null ? 0 : STILL_LENGTH_BYTES + still.length);
  const length = recordLength(payloadBytes);
  const out = Buffer.allocUnsafeSlow(length); // 8-aligned: sections can be viewed as u16/f32
  const layerChecksums = Buffer.alloc(4 * geometry.numLayers);
  const stillAt = RECORD_HEADER_BYTES + lay.totalBytes;
  if (still !== null) payload.copy(out, stillAt, kvBytes, payload.length);
  if (target === ARCHIVE_DTYPE) {
    // No layer sections: each layer's checksum is that of nothing, as RecordEncoder writes it.
    for (let l = 0; l < geometry.numLayers; l++) layerChecksums.writeUInt32LE(payloadCrc32(out.subarray(stillAt, stillAt)), 4 * l);
  } else if (row.dtype === ARCHIVE_DTYPE) {
    return null; // KV cannot come back from a still here (the question path re-encodes it)
  }
  const { keys, values } = target === ARCHIVE_DTYPE || row.dtype === ARCHIVE_DTYPE ? { keys: [], values: [] } : decodePayload(payload.subarray(0, kvBytes), row.dtype, geometry, row.tokenCount);
  for (let l = 0; target !== ARCHIVE_DTYPE && l < geometry.numLayers; l++) {
    const at = RECORD_HEADER_BYTES + l * lay.layerBytes;
    // One layer as a one-layer chunk: encodePayload writes exactly that layer's section at `at`.
    const layer: FrameChunk = {
      chunkId: row.chunkId, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, tokenCount: row.tokenCount,
      ...geometry, numLayers: 1, keys: [keys[l]!], values: [values[l]!], representatives: [],
    };
    encodePayload(layer, target, out, at);
    layerChecksums.writeUInt32LE(payloadCrc32(out.subarray(at, at + lay.layerBytes)), 4 * l);
    if (!(await between())) return null;
  }
  out.fill(0, RECORD_HEADER_BYTES + payloadBytes, length);
  const checksum = payloadCrc32(out.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + payloadBytes));
  encodeRecordHeader(
    { dtype: target, chunkId: row.chunkId, ...geometry, tokenCount: row.tokenCount, payloadBytes, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, payloadCrc: checksum },
    out,
  );
  return { bytes: out, payloadBytes, checksum, layerChecksums };
}

/** Most consecutive stills handed to ChunkStoreOptions.packArchiveStills at once. */
export const ARCHIVE_STILL_RUN = 32;

/** The 'archive' record of `row` holding `still` (its own, or the one packArchiveStills gave it): no KV sections. */
export function archiveRecordOf(row: ChunkLocation, geometry: ChunkGeometry, still: Uint8Array): EncodedRecord {
  const payloadBytes = STILL_LENGTH_BYTES + still.length;
  const length = recordLength(payloadBytes);
  const out = Buffer.allocUnsafeSlow(length);
  writeStill(out, RECORD_HEADER_BYTES, still);
  out.fill(0, RECORD_HEADER_BYTES + payloadBytes, length);
  // No layer sections: each layer's checksum is that of nothing, as RecordEncoder writes it.
  const layerChecksums = Buffer.alloc(4 * geometry.numLayers);
  const empty = payloadCrc32(out.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES));
  for (let l = 0; l < geometry.numLayers; l++) layerChecksums.writeUInt32LE(empty, 4 * l);
  const checksum = payloadCrc32(out.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + payloadBytes));
  encodeRecordHeader(
    { dtype: ARCHIVE_DTYPE, chunkId: row.chunkId, ...geometry, tokenCount: row.tokenCount, payloadBytes, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, payloadCrc: checksum },
    out,
  );
  return { bytes: out, payloadBytes, checksum, layerChecksums };
}

/**
 * Per dtype, the stream-time ranges of contiguous segments (stream order) held in it: consecutive
 * segments of one dtype merge into one span. O(segments) after the sort.
 */
export function tierSpansOf(summaries: readonly SegmentSummary[]): TierSpan[] {
  const out: TierSpan[] = [];
  for (const s of [...summaries].sort(streamOrder)) {
    const dtype = segmentDtype(s);
    const last = out.at(-1);
    if (last !== undefined && last.dtype === dtype) {
      last.tStart = Math.min(last.tStart, s.tStart);
      last.tEnd = Math.max(last.tEnd, s.tEnd);
      last.lastChunkId = s.lastChunkId;
      last.chunks += s.chunkCount;
      last.bytes += s.bytes;
      last.segments++;
    } else {
      out.push({ dtype, tStart: s.tStart, tEnd: s.tEnd, firstChunkId: s.firstChunkId, lastChunkId: s.lastChunkId, chunks: s.chunkCount, bytes: s.bytes, segments: 1 });
    }
  }
  return out;
}
