// Reading single layers of chunks: ReKV retrieves r chunks per layer, and the layers disagree, so
// loading whole chunks for the union of every layer's choice reads up to numLayers times more than
// the answer uses (1456 whole chunks, 10 GB, for r = 64 at an hour of stream with independent
// layers). Each layer's section of a payload is contiguous and has its own CRC-32 in the manifest,
// so it is read and checked alone, into one scratch buffer for the whole request.
import type { FrameChunk } from '../frameChunk.js';
import type { ChunkRow } from './manifest.js';
import type { ChunkFailure } from './types.js';
import { forEachConcurrent, readvFully } from './asyncRead.js';
import { payloadCrc32 } from './checksum.js';
import { decodeLayer } from './payloadCodec.js';
import { planReads } from './readPlan.js';
import { alignUp, payloadLayout, RECORD_HEADER_BYTES } from './recordFormat.js';
import { type RunReadContext, withSegment } from './runReader.js';

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

interface LayerExtent {
  chunkId: number;
  segment: number;
  offset: number;
  length: number;
  row: ChunkRow;
  layer: number;
  /** Where the section's bytes land in the scratch buffer, and (float16/int8) its decoded floats. */
  at: number;
  decodedAt: number;
}

/**
 * Reads the given layers of rows that carry per-layer checksums. Returns the decoded layers (views
 * of one buffer taken from `scratch`, valid until that buffer is given back) and the buffer.
 * A chunk any of whose layers fails its checksum or read is reported in `failed` and left out.
 */
export async function readLayerSections(
  ctx: RunReadContext,
  rows: readonly ChunkRow[],
  wanted: ReadonlyMap<number, readonly number[]>,
  scratch: ScratchBuffers,
  options: { maxRunBytes: number; concurrency: number },
  failed: ChunkFailure[],
): Promise<{ chunks: Map<number, ChunkLayers>; buffer: ArrayBuffer | undefined }> {
  const extents: LayerExtent[] = [];
  let bytes = 0;
  for (const row of rows) {
    const lay = payloadLayout(row.dtype, ctx.geometry, row.tokenCount);
    for (const layer of wanted.get(row.chunkId) ?? []) {
      const decoded = row.dtype === 'float32' ? 0 : 2 * lay.elements * 4;
      extents.push({
        chunkId: row.chunkId,
        segment: row.segment,
        offset: row.offset + RECORD_HEADER_BYTES + layer * lay.layerBytes,
        length: lay.layerBytes,
        row,
        layer,
        at: bytes,
        decodedAt: bytes + alignUp(lay.layerBytes, 8),
      });
      bytes += alignUp(lay.layerBytes, 8) + decoded;
    }
  }
  const chunks = new Map<number, ChunkLayers>();
  if (extents.length === 0) return { chunks, buffer: undefined };
  const buffer = scratch.take(bytes);
  const bad = new Set<number>();
  // Only touching sections merge (the layers of one record): no throwaway buffers for gaps.
  const runs = planReads(extents, { maxGapBytes: 0, maxRunBytes: options.maxRunBytes });
  await forEachConcurrent(runs, options.concurrency, async (run) => {
    const views = run.items.map((e) => Buffer.from(buffer, e.at, e.length));
    const read = await withSegment(ctx, run, failed, async (fd) => {
      const r = await readvFully(fd, views, run.offset);
      ctx.io.readCalls += r.calls;
      ctx.io.bytesRead += r.bytes;
      return r.bytes;
    });
    if (read === null) {
      for (const e of run.items) bad.add(e.chunkId);
      return;
    }
    run.items.forEach((e, k) => {
      if (bad.has(e.chunkId)) return;
      const fail = (reason: ChunkFailure['reason'], why: string) => {
        bad.add(e.chunkId);
        failed.push({ chunkId: e.chunkId, reason, message: `chunk ${e.chunkId} layer ${e.layer}: ${why}` });
      };
      if (e.offset + e.length > run.offset + read) return fail('truncated', 'the segment ends inside its record');
      if (payloadCrc32(views[k]!) !== e.row.layerChecksums!.readUInt32LE(4 * e.layer)) return fail('checksum', 'checksum mismatch');
      const n = ctx.geometry.numKvHeads * e.row.tokenCount * ctx.geometry.headDim;
      let data: LayerData;
      if (e.row.dtype === 'float32') {
        data = { key: new Float32Array(buffer, e.at, n), value: new Float32Array(buffer, e.at + 4 * n, n) };
      } else {
        data = { key: new Float32Array(buffer, e.decodedAt, n), value: new Float32Array(buffer, e.decodedAt + 4 * n, n) };
        decodeLayer(views[k]!, e.row.dtype, ctx.geometry, e.row.tokenCount, data.key, data.value);
      }
      let chunk = chunks.get(e.chunkId);
      if (!chunk) {
        const { row } = e;
        chunk = { chunkId: row.chunkId, tStart: row.tStart, tEnd: row.tEnd, wallTime: row.wallTime, tokenCount: row.tokenCount, layers: new Map() };
        chunks.set(e.chunkId, chunk);
      }
      chunk.layers.set(e.layer, data);
    });
  });
  for (const id of bad) chunks.delete(id);
  return { chunks, buffer };
}
