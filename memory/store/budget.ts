// Disk budgets (docs/memory-store.md, Budget): sizes derived from a budget and the smallest budget
// a stream can work in. Pure except folderBytes(), which measures real folders.
import fs from 'node:fs';
import path from 'node:path';
import { describeBytes } from '../../common/byteSize.js';
import { VigilError } from '../../common/errors.js';
import type { KvStorageDtype } from '../frameChunk.js';
import { DEFAULT_SEGMENT_BYTES } from './options.js';
import { alignUp, payloadLayout, recordLength, SEGMENT_HEADER_BYTES } from './recordFormat.js';
import type { ChunkGeometry } from './types.js';

/** A budget is cut into at least this many segments, so deleting the oldest frees a small part of it. */
export const SEGMENTS_PER_BUDGET = 16;

/**
 * Bytes a budget sets aside for the manifest's fixed part, for the minimums: the empty database
 * (32 KiB: a page per table and index), its -shm file (32 KiB) and the WAL, which a budgeted store
 * truncates back to budget/16 (at least 16 pages, 64 KiB) after each checkpoint (see walLimits):
 * ~130 KiB measured for a new store with a small budget, rounded up. Larger budgets count their
 * larger WAL like any other file (it is measured).
 */
export const MANIFEST_RESERVE_BYTES = 256 * 1024;

/** SQLite's default page size, which the manifest uses. */
const PAGE_BYTES = 4096;
const WAL_MIN_PAGES = 16;
// SQLite's own default: a large budget checkpoints no more often than an unbudgeted store (each checkpoint syncs).
const WAL_MAX_PAGES = 1000;

/** Bytes of one chunk's record in a segment file (header, payload, padding). */
export function chunkRecordBytes(geometry: ChunkGeometry, dtype: KvStorageDtype, tokens: number): number {
  return recordLength(payloadLayout(dtype, geometry, tokens).totalBytes);
}

/**
 * Bytes a chunk costs beside its record, an estimate for minimums: its representatives twice (the
 * manifest row and the retrieval index's sealed blocks, int8 with a float32 scale per layer), its
 * layer checksums and ~256 bytes of row and index overhead.
 */
export function chunkMetaBytes(geometry: ChunkGeometry): number {
  const { numLayers: L, numKvHeads: H, headDim: D } = geometry;
  return 2 * L * (H * D + 4) + 4 * L + 256;
}

/** The smallest segment that holds one record of this size. */
export function minSegmentBytes(recordBytes: number): number {
  return SEGMENT_HEADER_BYTES + recordBytes;
}

/** Segment size for a budget: budget/16, at least one record, at most the default 256 MiB; a multiple of 8. */
export function segmentBytesForBudget(budget: number, recordBytes: number): number {
  const wanted = Math.floor(budget / SEGMENTS_PER_BUDGET);
  return alignUp(Math.max(minSegmentBytes(recordBytes), Math.min(DEFAULT_SEGMENT_BYTES, wanted)), 8);
}

/** WAL bounds for a budgeted manifest: checkpoint every N pages and truncate the WAL back to N pages after. */
export function walLimits(budget: number): { autocheckpointPages: number; journalSizeLimitBytes: number } {
  const pages = Math.max(WAL_MIN_PAGES, Math.min(WAL_MAX_PAGES, Math.floor(budget / SEGMENTS_PER_BUDGET / PAGE_BYTES)));
  return { autocheckpointPages: pages, journalSizeLimitBytes: pages * PAGE_BYTES };
}

/** What one stream stores per frame and keeps in its window: what its budget must hold. */
export interface BudgetShape {
  geometry: ChunkGeometry;
  dtype: KvStorageDtype;
  /** Tokens of one frame's chunk (image tokens plus its timestamp prompt). */
  tokensPerFrame: number;
  /** Frames of the sliding window: a restart reads them back from the store. */
  windowFrames: number;
}

export interface BudgetPlan {
  budgetBytes: number;
  segmentBytes: number;
  recordBytes: number;
  /** Smallest budget that holds two segments (the one being written and one to delete) and the manifest reserve. */
  minForSegments: number;
  /** Smallest budget whose kept history still holds the whole window after retention deleted a segment. */
  minForWindow: number;
}

/** Segment size and minimums for `budget` at this shape (no check; see checkBudget). */
export function planBudget(budget: number, shape: BudgetShape): BudgetPlan {
  const recordBytes = chunkRecordBytes(shape.geometry, shape.dtype, shape.tokensPerFrame);
  const perChunk = recordBytes + chunkMetaBytes(shape.geometry);
  const seg0 = alignUp(minSegmentBytes(recordBytes), 8);
  const minForSegments = MANIFEST_RESERVE_BYTES + 2 * seg0;
  // History kept after a deletion >= budget - reserve - one segment - the record being written;
  // it must hold the window. Segments are budget/16 once that exceeds the one-record minimum.
  const needed = MANIFEST_RESERVE_BYTES + (shape.windowFrames + 1) * perChunk;
  let minForWindow = needed + seg0;
  if (Math.floor(minForWindow / SEGMENTS_PER_BUDGET) > seg0) minForWindow = Math.ceil((needed * SEGMENTS_PER_BUDGET) / (SEGMENTS_PER_BUDGET - 1)) + 8;
  return { budgetBytes: budget, segmentBytes: segmentBytesForBudget(budget, recordBytes), recordBytes, minForSegments, minForWindow };
}

/** The plan for a budget that works, else BAD_INPUT naming the limit it misses (`what`: the setting's name). */
export function checkBudget(budget: number, shape: BudgetShape, what = 'budget'): BudgetPlan {
  const plan = planBudget(budget, shape);
  const at = `${shape.geometry.numLayers} layers x ${shape.geometry.numKvHeads} KV heads x head_dim ${shape.geometry.headDim}, ${shape.tokensPerFrame} tokens a frame, ${shape.dtype}`;
  if (budget < plan.minForSegments) {
    throw new VigilError(
      'BAD_INPUT',
      `${what} ${describeBytes(budget)} is too small for one segment: the minimum is ${describeBytes(plan.minForSegments)} ` +
        `(a segment holds at least one ${plan.recordBytes}-byte chunk record at ${at}; two segments plus ${MANIFEST_RESERVE_BYTES} bytes for the manifest)`,
    );
  }
  if (budget < plan.minForWindow) {
    throw new VigilError(
      'BAD_INPUT',
      `${what} ${describeBytes(budget)} cannot hold the sliding window of ${shape.windowFrames} frames: the minimum is ${describeBytes(plan.minForWindow)} ` +
        `(${shape.windowFrames + 1} chunks of ${plan.recordBytes} bytes plus their index entries, one segment and the manifest, at ${at})`,
    );
  }
  return plan;
}

/** Sum of the sizes of the regular files under these folders (recursively); missing folders count 0. */
export function folderBytes(dirs: readonly string[]): number {
  let total = 0;
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        try {
          total += fs.statSync(p).size;
        } catch {
          // Deleted between the listing and the stat (a temp file renamed, a segment retired).
        }
      }
    }
  };
  for (const d of dirs) walk(d);
  return total;
}
