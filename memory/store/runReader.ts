// Reading planned runs from segment files: as one buffer (verify), or as one buffer per record,
// checked and decoded to FrameChunks (readChunks). Failures are reported per chunk, never thrown.
import type { FrameChunk } from '../frameChunk.js';
import type { ChunkLocation, ChunkRow } from './manifest.js';
import type { ChunkFailure, ChunkGeometry } from './types.js';
import { readRange, readvFully } from './asyncRead.js';
import { decodePayload } from './payloadCodec.js';
import type { Extent, ReadRun } from './readPlan.js';
import { checkRecord } from './recordCheck.js';
import { payloadLayout, RECORD_HEADER_BYTES } from './recordFormat.js';
import { unpackRepresentatives } from './representatives.js';
import type { SegmentReaders } from './segmentFiles.js';

/** Idle read descriptors kept open. */
export const MAX_IDLE_READERS = 64;

export interface RunReadContext {
  readers: SegmentReaders;
  geometry: ChunkGeometry;
  /** Counters updated by every read. */
  io: { readCalls: number; bytesRead: number };
}

function failAll(run: ReadRun<Extent & { chunkId: number }>, failed: ChunkFailure[], reason: ChunkFailure['reason'], why: string): null {
  for (const l of run.items) failed.push({ chunkId: l.chunkId, reason, message: `chunk ${l.chunkId}: ${why}` });
  return null;
}

/** Runs `read` with the segment's descriptor held; a missing file fails every chunk of the run. */
export async function withSegment<T>(
  ctx: RunReadContext,
  run: ReadRun<Extent & { chunkId: number }>,
  failed: ChunkFailure[],
  read: (fd: number) => Promise<T>,
): Promise<T | null> {
  let fd: number;
  try {
    fd = ctx.readers.acquire(run.segment);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    return failAll(run, failed, missing ? 'missing-segment' : 'io', `segment ${run.segment}: ${(e as Error).message}`);
  }
  try {
    return await read(fd);
  } catch (e) {
    return failAll(run, failed, 'io', `reading segment ${run.segment}: ${(e as Error).message}`);
  } finally {
    ctx.readers.release(run.segment);
    ctx.readers.trim(MAX_IDLE_READERS);
  }
}

/** The run's bytes in one buffer (shorter at end of file), or null with every chunk failed. */
export function readRunBuffer(ctx: RunReadContext, run: ReadRun<ChunkLocation>, failed: ChunkFailure[]): Promise<Buffer | null> {
  return withSegment(ctx, run, failed, async (fd) => {
    const buf = await readRange(fd, run.offset, run.length);
    ctx.io.readCalls++;
    ctx.io.bytesRead += buf.length;
    return buf;
  });
}

/**
 * Reads the run with readv into one buffer per record (gaps into throwaway buffers), so a decoded
 * float32 chunk views its own record's bytes without a copy and without keeping its neighbours
 * alive; checks every record and decodes the intact ones.
 */
export async function readRunChunks(ctx: RunReadContext, run: ReadRun<ChunkRow>, failed: ChunkFailure[]): Promise<FrameChunk[]> {
  const bufs: Buffer[] = [];
  const records: Buffer[] = [];
  let cursor = run.offset;
  for (const row of run.items) {
    if (row.offset > cursor) bufs.push(Buffer.allocUnsafe(row.offset - cursor));
    const rec = Buffer.allocUnsafeSlow(row.length); // its own 8-aligned ArrayBuffer
    bufs.push(rec);
    records.push(rec);
    cursor = row.offset + row.length;
  }
  const bytes = await withSegment(ctx, run, failed, async (fd) => {
    const r = await readvFully(fd, bufs, run.offset);
    ctx.io.readCalls += r.calls;
    ctx.io.bytesRead += r.bytes;
    return r.bytes;
  });
  if (bytes === null) return [];
  const { numLayers: L, numKvHeads: H, headDim: D } = ctx.geometry;
  const out: FrameChunk[] = [];
  run.items.forEach((row, k) => {
    // A record past end of file (cut short) shows as a short buffer and fails the check.
    const available = Math.max(0, Math.min(row.length, run.offset + bytes - row.offset));
    const buf = records[k]!.subarray(0, available);
    const f = checkRecord(buf, 0, row, ctx.geometry);
    if (f !== null) {
      failed.push(f);
      return;
    }
    if (row.dtype === 'archive') {
      failed.push(archivedFailure(row.chunkId));
      return;
    }
    // The KV sections only: a still may follow them.
    const kvBytes = payloadLayout(row.dtype, ctx.geometry, row.tokenCount).totalBytes;
    const payload = buf.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + kvBytes);
    const { keys, values } = decodePayload(payload, row.dtype, ctx.geometry, row.tokenCount);
    out.push({
      chunkId: row.chunkId,
      tStart: row.tStart,
      tEnd: row.tEnd,
      wallTime: row.wallTime,
      tokenCount: row.tokenCount,
      numLayers: L,
      numKvHeads: H,
      headDim: D,
      keys,
      values,
      representatives: unpackRepresentatives(row.representatives, L, H * D),
    });
  });
  return out;
}

/** An archived chunk holds no KV to read: the question path re-encodes its still instead (ChunkStore.readStills). */
export function archivedFailure(chunkId: number): ChunkFailure {
  return { chunkId, reason: 'archived', message: `chunk ${chunkId} is archived (no KV: its still must be re-encoded)` };
}
