// Demotion (issue 15 item 2): old segments rewritten from the stream's dtype to 'kivi4', and the
// pure parts of it: which segment goes next, what a record becomes, and the dtype spans that
// stats() and the memory horizon report. ChunkStore.demoteSegment() does the I/O and the commit
// (docs/memory-store.md, Demotion).
import type { FrameChunk, KvStorageDtype } from '../frameChunk.js';
import type { ChunkLocation } from './manifest.js';
import { payloadCrc32 } from './checksum.js';
import { decodePayload, encodePayload } from './payloadCodec.js';
import type { EncodedRecord } from './recordEncoder.js';
import { encodeRecordHeader, payloadLayout, RECORD_HEADER_BYTES, recordLength } from './recordFormat.js';
import type { SegmentSummary } from './segmentSummary.js';
import { STORE_DTYPES } from './segmentSummary.js';
import type { ChunkGeometry, TierSpan } from './types.js';

/** The dtype demotion writes. */
export const DEMOTED_DTYPE: KvStorageDtype = 'kivi4';

/** A segment's position in stream order: its first chunk id (segment ids are not: demoted files get new ids). */
export function streamOrder(a: SegmentSummary, b: SegmentSummary): number {
  return a.firstChunkId - b.firstChunkId || a.segment - b.segment;
}

/** The dtype holding most of a segment's bytes (a segment is normally all one dtype). */
export function segmentDtype(s: SegmentSummary): KvStorageDtype {
  let best: KvStorageDtype = 'float32';
  for (const d of STORE_DTYPES) if (s.bytesByDtype[d] > s.bytesByDtype[best]) best = d;
  return best;
}

/**
 * The oldest segment (stream order) that demotion may rewrite now, or null: it holds bytes in a
 * dtype other than kivi4, ends at least keepFullSec before the newest chunk, is not busy (being
 * appended to, rows pending) and holds no pinned chunk (those are deferred, not skipped for good).
 */
export function pickDemotion(
  summaries: readonly SegmentSummary[],
  newestTEnd: number | null,
  keepFullSec: number,
  busy: (segment: number) => boolean,
  pinned: (s: SegmentSummary) => boolean,
): SegmentSummary | null {
  if (newestTEnd === null) return null;
  for (const s of [...summaries].sort(streamOrder)) {
    if (s.tEnd > newestTEnd - keepFullSec) return null; // the rest are newer still
    if (s.bytesByDtype[DEMOTED_DTYPE] === s.bytes || busy(s.segment) || pinned(s)) continue;
    return s;
  }
  return null;
}

/**
 * The record of `row` (intact: checked by the caller, in `record` from its first byte) re-encoded
 * as `target`, one layer at a time with `between()` awaited after each layer (it gives the event
 * loop back when the slice is spent: a 256m chunk is ~20-50 ms of quantization, a layer 1/30 of it).
 * The same bytes as RecordEncoder.encode of the decoded chunk. Null when `between()` says stop.
 */
export async function reencodeRecord(
  record: Buffer,
  row: ChunkLocation,
  geometry: ChunkGeometry,
  target: KvStorageDtype,
  between: () => Promise<boolean>,
): Promise<EncodedRecord | null> {
  const payload = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + row.payloadBytes);
  const { keys, values } = decodePayload(payload, row.dtype, geometry, row.tokenCount);
  const lay = payloadLayout(target, geometry, row.tokenCount);
  const length = recordLength(lay.totalBytes);
  const out = Buffer.allocUnsafeSlow(length); // 8-aligned: sections can be viewed as u16/f32
  const layerChecksums = Buffer.alloc(4 * geometry.numLayers);
  for (let l = 0; l < geometry.numLayers; l++) {
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
  out.fill(0, RECORD_HEADER_BYTES + lay.totalBytes, length);
  const checksum = payloadCrc32(out.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + lay.totalBytes));
  encodeRecordHeader(
    { dtype: target, chunkId: row.chunkId, ...geometry, tokenCount: row.tokenCount, payloadBytes: lay.totalBytes, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, payloadCrc: checksum },
    out,
  );
  return { bytes: out, payloadBytes: lay.totalBytes, checksum, layerChecksums };
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
