// Keeps a stream's retrieval index in agreement with its chunk store. The manifest is the source
// of truth; the index is derived data, saved now and then, so on open it may be behind the
// manifest (chunks committed after its last save, then a crash), ahead of it (retention deleted
// old segments, recovery or repair dropped rows), built for other options, or gone.
//
// Reconciliation works on ids, and in the common case touches only the ends of both id ranges:
// the store's O(1) totals (count, first and last id), the index's min and max id, and the manifest
// rows above the index's max id. Only when the counts still disagree (rows went missing in the
// middle) does it compare every id, and even then it reads representatives only for the ids the
// index lacks. A row the index refuses (non-finite values, wrong length) is skipped and reported:
// one bad row must not keep a stream from opening.
import fs from 'node:fs';
import { isVigilError } from '../../common/errors.js';
import type { ChunkMeta, ChunkStore } from '../../memory/store/index.js';
import { type SealingOptions, StreamIndex, type StreamIndexLoadOptions, type StreamIndexOptions } from '../../retrieval/index.js';
import { storedChunkPages } from './storedChunks.js';
import { streamIndexBlocksDir } from './dataLayout.js';

/** A manifest row the index could not take, and the index's reason. */
export interface SkippedChunk {
  chunkId: number;
  reason: string;
}

export interface ReconcileResult {
  /** Chunks added to the index. */
  added: number;
  /** Index entries removed (chunks the manifest no longer holds). */
  removed: number;
  /** Manifest rows that could not be indexed, ascending by id. */
  skipped: SkippedChunk[];
}

export interface OpenedStreamIndex extends ReconcileResult {
  index: StreamIndex;
  /** True when the saved index was missing or unusable and the index was built from the manifest. */
  rebuilt: boolean;
  /** Why it was rebuilt (no saved index, unreadable, other options), null when it was loaded. */
  rebuildReason: string | null;
}

/** Ids per readMetas() call when the full diff finds rows the index lacks. */
const META_PAGE = 256;
/** A long rebuild gives the event loop a turn at least this often (a server keeps answering). */
const YIELD_MS = 20;

/**
 * The index options of a stream folder: older chunks sealed into its index-blocks folder, so the
 * index's RAM does not grow with the stream's history.
 */
export function streamIndexOptions(streamDir: string, numLayers: number, dim: number, space: 'ip' | 'cosine' = 'ip', sealing: Omit<SealingOptions, 'dir'> = {}): StreamIndexOptions {
  return { numLayers, dim, space, sealing: { ...sealing, dir: streamIndexBlocksDir(streamDir) } };
}

/** Why the index would refuse this row (its own checks), or null when it would take it. */
export function unindexableReason(meta: ChunkMeta, numLayers: number, dim: number): string | null {
  try {
    StreamIndex.checkChunk(meta, numLayers, dim);
    return null;
  } catch (error) {
    if (isVigilError(error) && (error.code === 'BAD_INPUT' || error.code === 'SHAPE_MISMATCH')) return error.message;
    throw error;
  }
}

/**
 * Adds one manifest row; a row the index refuses (its own checks: BAD_INPUT / SHAPE_MISMATCH,
 * raised before anything changes) is recorded in `skipped` instead of thrown.
 */
function addOrSkip(index: StreamIndex, meta: ChunkMeta, skipped: SkippedChunk[]): boolean {
  try {
    index.addChunk(meta.chunkId, meta.tStart, meta.tEnd, meta.representatives);
    return true;
  } catch (error) {
    if (isVigilError(error) && (error.code === 'BAD_INPUT' || error.code === 'SHAPE_MISMATCH')) {
      skipped.push({ chunkId: meta.chunkId, reason: error.message });
      return false;
    }
    throw error;
  }
}

/**
 * Merge walk of two ascending id lists: the ids only `a` has and the ids only `b` has. O(|a| + |b|),
 * typed arrays only (a restart after months holds millions of ids).
 */
export function diffSortedIds(a: Uint32Array, b: Uint32Array): { onlyInA: Uint32Array; onlyInB: Uint32Array } {
  const onlyInA = new Uint32Array(a.length);
  const onlyInB = new Uint32Array(b.length);
  let i = 0;
  let j = 0;
  let na = 0;
  let nb = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) {
      i++;
      j++;
    } else if (x < y) {
      onlyInA[na++] = x;
      i++;
    } else {
      onlyInB[nb++] = y;
      j++;
    }
  }
  while (i < a.length) onlyInA[na++] = a[i++]!;
  while (j < b.length) onlyInB[nb++] = b[j++]!;
  return { onlyInA: onlyInA.subarray(0, na), onlyInB: onlyInB.subarray(0, nb) };
}

/**
 * Makes a loaded index hold exactly the manifest's chunks (minus the rows it cannot index), by id.
 * Common case (a clean restart, a crash that lost the last saves, retention since): O(log n) index
 * work plus reading the rows above the index's max id. Rows dropped in the middle: one id-only
 * pass over both id lists. Synchronous; run it before the index is shared (not during a save()).
 */
export function reconcileIndex(index: StreamIndex, store: ChunkStore): ReconcileResult {
  const skipped: SkippedChunk[] = [];
  let added = 0;
  let removed = 0;
  const { chunkCount, firstChunkId, lastChunkId } = store.stats();

  // Rows that recovery dropped on this open (torn or uncommitted after a crash) may be in a saved index.
  const dropped = store.recovery.droppedChunks;
  if (dropped.length > 0) removed += index.removeChunks(dropped.map((d) => d.chunkId));
  if (firstChunkId === null || lastChunkId === null) {
    if (index.size > 0) removed += index.removeChunks(index.chunkIdRange());
    return { added, removed, skipped };
  }
  // Retention deletes whole segments, oldest first: everything it took is below the first row.
  const below = index.chunkIdRange(0, firstChunkId);
  if (below.length > 0) removed += index.removeChunks(below);
  // Past the newest row: chunks a crash took back after the index had seen them.
  const beyond = index.chunkIdRange(lastChunkId + 1);
  if (beyond.length > 0) removed += index.removeChunks(beyond);

  // Committed after the last save: only these rows' representatives are read.
  const max = index.maxChunkId();
  // Frame gating extends only the newest chunk's span, so the one saved chunk whose span may have
  // grown since the save is the index's newest: it takes the manifest's span (the narrow index).
  if (max !== null) {
    const span = store.chunkSpan(max);
    if (span !== null) index.extendChunk(max, span.tEnd);
  }
  for (const page of storedChunkPages(store, max === null ? {} : { afterId: max })) {
    for (const meta of page) if (addOrSkip(index, meta, skipped)) added++;
  }
  // Equal counts with both ends already agreeing: a hidden mismatch would need the index to lack a
  // middle row AND keep a dropped one in equal number, i.e. two unrelated faults since the last save.
  if (index.size + skipped.length === chunkCount) return { added, removed, skipped };

  // Rows went missing in the middle (repair, recovery of an older session), or the index lacks
  // some it skipped before: compare every id, read representatives only for the missing ones.
  const { onlyInA: missing, onlyInB: extra } = diffSortedIds(store.chunkIds(), index.chunkIdRange());
  if (extra.length > 0) removed += index.removeChunks(extra);
  const already = new Set(skipped.map((s) => s.chunkId));
  for (let i = 0; i < missing.length; i += META_PAGE) {
    const ids = Array.from(missing.subarray(i, i + META_PAGE)).filter((id) => !already.has(id));
    if (ids.length === 0) continue;
    for (const meta of store.readMetas(ids)) if (addOrSkip(index, meta, skipped)) added++;
  }
  skipped.sort((a, b) => a.chunkId - b.chunkId);
  return { added, removed, skipped };
}

/**
 * Builds an index from the manifest (a missing or unusable saved index), a page of rows at a time
 * so only one page of representatives is held beside the index, yielding to the event loop every
 * YIELD_MS. Rows the index refuses are skipped and reported.
 */
export async function rebuildIndex(store: ChunkStore, options: StreamIndexOptions): Promise<{ index: StreamIndex; skipped: SkippedChunk[] }> {
  const index = StreamIndex.create(options);
  const skipped: SkippedChunk[] = [];
  let lastYield = performance.now();
  for (const page of storedChunkPages(store)) {
    for (const meta of page) {
      addOrSkip(index, meta, skipped);
      // Sealing runs beside the adds; waiting for it keeps the chunks in RAM bounded.
      await index.idle();
      // Graph mode costs ~0.5 ms per chunk and layer: a page can take seconds.
      if (performance.now() - lastYield > YIELD_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
    }
  }
  await index.completeBackfill();
  return { index, skipped };
}

function loadOptions(options: StreamIndexOptions): StreamIndexLoadOptions {
  const load: StreamIndexLoadOptions = { numLayers: options.numLayers, dim: options.dim, space: options.space ?? 'ip' };
  if (options.hnswThreshold !== undefined) load.hnswThreshold = options.hnswThreshold;
  if (options.backfillPerAdd !== undefined) load.backfillPerAdd = options.backfillPerAdd;
  if (options.exactFilterLimit !== undefined) load.exactFilterLimit = options.exactFilterLimit;
  if (options.hnsw?.ef !== undefined) load.ef = options.hnsw.ef;
  if (options.sealing) load.sealing = options.sealing;
  return load;
}

/**
 * The stream's index for these options: the one saved in `dir`, reconciled with the store, when it
 * loads with the same layers, dimension and similarity space (default 'ip'); otherwise rebuilt
 * from the manifest. Nothing is written: saving the result is the caller's decision.
 */
export async function openStreamIndex(dir: string, store: ChunkStore, options: StreamIndexOptions): Promise<OpenedStreamIndex> {
  let reason = 'no saved index';
  let loaded: StreamIndex | undefined;
  if (fs.existsSync(dir)) {
    try {
      loaded = await StreamIndex.load(dir, loadOptions(options));
    } catch (error) {
      // Derived data: any index that does not load as asked (damaged, other space, other model) is rebuilt.
      reason = `saved index not usable: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  // Outside the try: a store failure during reconciliation is the caller's to see, not a reason to rebuild.
  if (loaded) return { index: loaded, ...reconcileIndex(loaded, store), rebuilt: false, rebuildReason: null };
  const { index, skipped } = await rebuildIndex(store, options);
  return { index, added: index.size, removed: 0, skipped, rebuilt: true, rebuildReason: reason };
}
