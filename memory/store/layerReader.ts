// Reading single layers of chunks: ReKV retrieves r chunks per layer, and the layers disagree, so
// loading whole chunks for the union of every layer's choice reads up to numLayers times more than
// the answer uses (1456 whole chunks, 10 GB, for r = 64 at an hour of stream with independent
// layers). Each layer's section of a payload is contiguous and has its own CRC-32 in the manifest,
// so it is read and checked alone, into one scratch buffer for the whole request.
//
// A question's sections are mostly in the page cache, and the more the layers disagree (the longer
// the stream), the more of them are separate reads: up to r x layers (1920 for r = 64). So that the
// cost follows the bytes and not the number of reads, the sections are sorted by (segment, offset),
// neighbours in one segment at most `maxGapBytes` apart merge into one read (the gap bytes land in
// the buffer and are never returned), each run is read straight into its place in the scratch
// buffer, and the reads are synchronous preads: an async read costs a thread-pool round trip and a
// promise each (on 2 cores, ~20 us against ~5 us for the pread itself). The event loop is given
// back every `sliceMs`. Data that is not cached (32 MiB of reads slower than 1.5 GB/s) switches the
// rest of the request to async reads, `concurrency` in flight, so a cold disk neither blocks the
// loop for long nor loses its queue depth.
import type { FrameChunk } from '../frameChunk.js';
import type { ChunkLocation } from './manifest.js';
import type { ChunkFailure } from './types.js';
import fs from 'node:fs';
import { invariant } from '../../common/errors.js';
import { forEachConcurrent } from './asyncRead.js';
import { payloadCrc32 } from './checksum.js';
import { decodeLayer } from './payloadCodec.js';
import { planReads, type ReadRun } from './readPlan.js';
import { alignUp, payloadLayout, RECORD_HEADER_BYTES } from './recordFormat.js';
import { MAX_IDLE_READERS, type RunReadContext } from './runReader.js';

/** One layer of one chunk, float32 [numKvHeads, tokens, headDim]. */
export interface LayerData {
  key: Float32Array;
  value: Float32Array;
}

/** The requested layers of one chunk, with its times. */
export interface ChunkLayers {
  chunkId: number;
  tStart: number;
  tEnd: number;
  wallTime: number;
  tokenCount: number;
  layers: Map<number, LayerData>;
}

/** The given layers of a whole chunk in RAM, as views of its arrays. */
export function chunkLayers(chunk: FrameChunk, layers: readonly number[]): ChunkLayers {
  const { chunkId, tStart, tEnd, wallTime, tokenCount } = chunk;
  return { chunkId, tStart, tEnd, wallTime, tokenCount, layers: new Map(layers.map((l) => [l, { key: chunk.keys[l]!, value: chunk.values[l]! }])) };
}

/** Where large read buffers come from (and go back to); the engine passes its buffer pool. */
export interface ScratchBuffers {
  take(bytes: number): ArrayBuffer;
  give(buffer: ArrayBuffer): void;
}

/** How readLayerSections reads (ChunkStore passes its defaults; tests force each path). */
export interface SectionReadOptions {
  /** Largest single read (a run of merged sections stays under it). */
  maxRunBytes: number;
  /** Merge two sections of one segment when at most this many bytes lie between them. */
  maxGapBytes: number;
  /** Async reads in flight (the thread pool has 4 threads by default). */
  concurrency: number;
  /** 'auto': synchronous preads, async for the rest once reads look uncached; or force one. */
  io: 'auto' | 'sync' | 'async';
  /** Synchronous reads give the event loop back after this long. */
  sliceMs: number;
}

export const DEFAULT_SECTION_READ: SectionReadOptions = {
  maxRunBytes: 4 * 1024 * 1024,
  // Only touching sections (consecutive layers of one record) merge. Merging across small gaps
  // (the 72-byte record header between chunk i's last layer and chunk i+1's first, say) was
  // measured: it saves under 1% of the reads of ReKV selections (1878 -> 1877 for r = 64).
  maxGapBytes: 0,
  concurrency: 4,
  io: 'auto',
  sliceMs: 8,
};

/**
 * 'auto' judges the synchronous reads over windows of this many bytes: below `UNCACHED_BYTES_PER_MS`
 * (1.5 GB/s) they are taken as coming from the disk, not the page cache (which gives 8-15 GB/s
 * here, syscalls included), and the rest of the request reads async. A window long enough that a
 * few ms of preemption on a busy machine, or the first read of a page since it was written, does
 * not trip it (single slow runs did, and the async path is slower on cached data).
 */
const JUDGE_WINDOW_BYTES = 32 * 1024 * 1024;
const UNCACHED_BYTES_PER_MS = 1.5e6;

interface LayerExtent {
  chunkId: number;
  segment: number;
  offset: number;
  length: number;
  row: ChunkLocation;
  layer: number;
  /** Where the section's bytes land in the scratch buffer, and (float16/int8) its decoded floats. */
  at: number;
  decodedAt: number;
}

/** The number of bytes of [position, position + length) read into buf at `at`; short only at end of file. */
function preadFully(fd: number, buf: Buffer, at: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, at + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function preadFullyAsync(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void =>
      fs.read(fd, buf, at + done, length - done, position + done, (e, n) => {
        if (e) return reject(e);
        done += n;
        if (n === 0 || done >= length) resolve(done);
        else step();
      });
    step();
  });
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Reads the given layers of rows that carry per-layer checksums. Returns the decoded layers (views
 * of one buffer taken from `scratch`, valid until that buffer is given back) and the buffer.
 * A chunk any of whose layers fails its checksum or read is reported in `failed` and left out.
 */
export async function readLayerSections(
  ctx: RunReadContext,
  rows: readonly ChunkLocation[],
  wanted: ReadonlyMap<number, readonly number[]>,
  scratch: ScratchBuffers,
  options: SectionReadOptions,
  failed: ChunkFailure[],
): Promise<{ chunks: Map<number, ChunkLayers>; buffer: ArrayBuffer | undefined }> {
  const extents: LayerExtent[] = [];
  for (const row of rows) {
    const lay = payloadLayout(row.dtype, ctx.geometry, row.tokenCount);
    for (const layer of new Set(wanted.get(row.chunkId) ?? [])) {
      const offset = row.offset + RECORD_HEADER_BYTES + layer * lay.layerBytes;
      extents.push({ chunkId: row.chunkId, segment: row.segment, offset, length: lay.layerBytes, row, layer, at: 0, decodedAt: 0 });
    }
  }
  const chunks = new Map<number, ChunkLayers>();
  if (extents.length === 0) return { chunks, buffer: undefined };

  // Sorted by (segment, offset) and merged; each run lands contiguously (gaps included) in the
  // buffer, so a section sits at run start + its distance from the run's first byte. Records start
  // 8-aligned and sections are multiples of 4 bytes, so every section is 4-aligned in the buffer.
  const runs = planReads(extents, { maxGapBytes: options.maxGapBytes, maxRunBytes: options.maxRunBytes });
  const runAt: number[] = [];
  let bytes = 0;
  for (const run of runs) {
    runAt.push(bytes);
    for (const e of run.items) e.at = bytes + (e.offset - run.offset);
    bytes += alignUp(run.length, 8);
  }
  // The size asked of the pool depends only on the sections (8-aligned each, as one per run would
  // be), not on how they merged: a pooled buffer that fitted the last question fits the next one
  // of the same shape (a fresh one costs ~3.7 ms per MiB of page faults on the project's VMs).
  let size = 0;
  for (const e of extents) size += alignUp(e.length, 8);
  for (const e of extents) {
    if (e.row.dtype === 'float32') continue;
    const decoded = 2 * 4 * payloadLayout(e.row.dtype, ctx.geometry, e.row.tokenCount).elements;
    e.decodedAt = bytes;
    bytes += decoded;
    size += decoded;
  }
  bytes = Math.max(bytes, size);
  const buffer = scratch.take(bytes);
  const bytesView = Buffer.from(buffer, 0, bytes);
  const bad = new Set<number>();
  const fail = (chunkId: number, reason: ChunkFailure['reason'], message: string): void => {
    bad.add(chunkId);
    failed.push({ chunkId, reason, message });
  };

  // Checks and decodes the sections of a run once its bytes (`read` of them, or null) are in.
  const finish = (run: ReadRun<LayerExtent>, read: number | null, why?: string): void => {
    for (const e of run.items) {
      if (bad.has(e.chunkId)) continue;
      if (read === null) {
        fail(e.chunkId, 'io', `chunk ${e.chunkId} layer ${e.layer}: reading segment ${run.segment}: ${why}`);
        continue;
      }
      if (e.offset + e.length > run.offset + read) {
        fail(e.chunkId, 'truncated', `chunk ${e.chunkId} layer ${e.layer}: the segment ends inside its record`);
        continue;
      }
      const section = bytesView.subarray(e.at, e.at + e.length);
      if (payloadCrc32(section) !== e.row.layerChecksums!.readUInt32LE(4 * e.layer)) {
        fail(e.chunkId, 'checksum', `chunk ${e.chunkId} layer ${e.layer}: checksum mismatch`);
        continue;
      }
      const n = ctx.geometry.numKvHeads * e.row.tokenCount * ctx.geometry.headDim;
      let data: LayerData;
      if (e.row.dtype === 'float32') {
        data = { key: new Float32Array(buffer, e.at, n), value: new Float32Array(buffer, e.at + 4 * n, n) };
      } else {
        // Archived rows hold no sections: ChunkStore.readLayers reports them before reading.
        invariant(e.row.dtype !== 'archive', () => `chunk ${e.chunkId} is archived: it has no layer sections`);
        data = { key: new Float32Array(buffer, e.decodedAt, n), value: new Float32Array(buffer, e.decodedAt + 4 * n, n) };
        decodeLayer(section, e.row.dtype, ctx.geometry, e.row.tokenCount, data.key, data.value);
      }
      let chunk = chunks.get(e.chunkId);
      if (!chunk) {
        const { row } = e;
        chunk = { chunkId: row.chunkId, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, tokenCount: row.tokenCount, layers: new Map() };
        chunks.set(e.chunkId, chunk);
      }
      chunk.layers.set(e.layer, data);
    }
  };

  // The run's descriptor (pair with release()), or null with every section of the run failed.
  const open = (run: ReadRun<LayerExtent>): number | null => {
    try {
      return ctx.readers.acquire(run.segment);
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing-segment' : 'io';
      for (const x of run.items) if (!bad.has(x.chunkId)) fail(x.chunkId, reason, `chunk ${x.chunkId}: segment ${run.segment}: ${(e as Error).message}`);
      return null;
    }
  };
  // Idle descriptors are trimmed when the reads move to another segment (runs are in segment
  // order), not after every read, so a segment's descriptor stays open across its runs.
  let lastSegment = -1;
  const release = (run: ReadRun<LayerExtent>): void => {
    ctx.readers.release(run.segment);
    if (run.segment !== lastSegment) ctx.readers.trim(MAX_IDLE_READERS);
    lastSegment = run.segment;
  };
  const count = (n: number): void => {
    ctx.io.readCalls++;
    ctx.io.bytesRead += n;
  };

  try {
    let next = 0;
    if (options.io !== 'async') {
      let windowBytes = 0;
      let windowMs = 0;
      let sliceStart = performance.now();
      for (; next < runs.length; next++) {
        const run = runs[next]!;
        const fd = open(run);
        if (fd === null) continue;
        const t0 = performance.now();
        let read: number;
        try {
          read = preadFully(fd, bytesView, runAt[next]!, run.length, run.offset);
          count(read);
        } catch (e) {
          finish(run, null, (e as Error).message);
          continue;
        } finally {
          release(run);
        }
        const t1 = performance.now();
        finish(run, read);
        windowBytes += read;
        windowMs += t1 - t0;
        if (windowBytes >= JUDGE_WINDOW_BYTES) {
          if (options.io === 'auto' && windowBytes / windowMs < UNCACHED_BYTES_PER_MS) {
            next++;
            break;
          }
          windowBytes = windowMs = 0;
        }
        if (performance.now() - sliceStart >= options.sliceMs) {
          await yieldToLoop();
          sliceStart = performance.now();
        }
      }
    }
    // The rest (all of it for 'async'): on the thread pool, checked as each run lands.
    const rest = runs.map((run, k) => ({ run, at: runAt[k]! })).slice(next);
    await forEachConcurrent(rest, options.concurrency, async ({ run, at }) => {
      const fd = open(run);
      if (fd === null) return;
      let read: number;
      try {
        read = await preadFullyAsync(fd, bytesView, at, run.length, run.offset);
        count(read);
      } catch (e) {
        finish(run, null, (e as Error).message);
        return;
      } finally {
        release(run);
      }
      finish(run, read);
    });
  } finally {
    ctx.readers.trim(MAX_IDLE_READERS);
  }
  for (const id of bad) chunks.delete(id);
  return { chunks, buffer };
}
