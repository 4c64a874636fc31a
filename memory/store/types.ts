// Public types of the chunk store: options, receipts and reports. The options
// are the documentation: each says what it does and its default.
import type { FrameChunk, KvStorageDtype, RecordDtype } from '../frameChunk.js';

/** The per-stream tensor geometry every chunk must have (tokenCount may vary per chunk). */
export interface ChunkGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

/**
 * When chunk payloads are fsynced before their manifest rows commit.
 * - 'every-chunk': each append fsyncs its payload, then commits its row (safest; the default).
 * - { everyChunks: N }: group commit; rows of N appended chunks commit together after one fsync.
 * - { intervalMs: N }: group commit; pending rows commit after one fsync at most N ms after the first.
 * - 'none': rows commit right after the write; the OS flushes when it likes. Survives a process
 *   crash, not a power loss (committed chunks may then be dropped by recovery).
 * In every policy a manifest row never commits before its payload is written (and, except for
 * 'none', fsynced), so a committed chunk is never torn.
 */
export type FsyncPolicy = 'every-chunk' | 'none' | { everyChunks: number } | { intervalMs: number };

/** Disk budget of one stream. Whole segments are deleted, oldest first; the active segment never. */
export interface RetentionPolicy {
  /**
   * The stream's disk budget: every file in the store folder (segments, manifest, its WAL and -shm)
   * plus the files under `alsoCount`, measured on disk. Before each record is written, oldest
   * segments are deleted until the record fits; so the total never exceeds this by more than one
   * segment (docs/memory-store.md, Budget). Must be >= segmentBytes.
   */
  budgetBytes?: number;
  /** Folders whose files count against budgetBytes with the store's own (the stream's retrieval index). */
  alsoCount?: string[];
  /**
   * Older, narrower rule: keep the segment files alone at or under this after each commit (records
   * written but not yet committed on top). Must be >= segmentBytes.
   */
  maxBytes?: number;
  /**
   * Delete segments whose newest chunk ended more than this many seconds of *stream time* before the
   * newest committed chunk's tEnd. Stream time, not wall time, so offline videos processed faster than
   * real time keep the span they asked for; for live sources the two agree.
   */
  maxStreamAgeSec?: number;
  /**
   * Tiering under a budget (docs/memory-store.md, Demotion): before the budget would make
   * retention delete old segments, the oldest segments in a full dtype are rewritten as 'kivi4'
   * in the background; deletion then takes the oldest (demoted) ones. Default true when
   * budgetBytes is set; false keeps the delete-only behaviour.
   */
  demote?: boolean;
  /** Stream seconds at the recent end never demoted (kept at the stream's dtype). Default 1800. */
  keepFullSec?: number;
  /**
   * The archive tier (docs/memory-store.md, Demotion): under budget pressure, once the chunks that
   * still hold KV (any dtype but 'archive') take more than `kvShare` of the budget, the oldest of
   * them are rewritten as 'archive' records: no KV, only the frame's still (FrameChunk.still),
   * re-encoded through the model when a question retrieves it. Default true when budgetBytes is set
   * (and demote is not false); false: KV tiers only, then deletion.
   */
  archive?: boolean;
  /** Share of budgetBytes that chunks holding KV may take before the oldest go to the archive, 0..1. Default 0.4. */
  kvShare?: number;
}

/** The steps of one segment's demotion, for the crash tests' hook (ChunkStoreOptions.demotionStep). */
export type DemotionStep = 'writing' | 'written' | 'synced' | 'committed' | 'deleted';

/** What demoteSegment() did: the old segment's rows now live in `toSegment` as kivi4. */
export interface DemotionResult {
  fromSegment: number;
  toSegment: number;
  chunks: number;
  bytesBefore: number;
  bytesAfter: number;
  ms: number;
}

/** A stretch of contiguous segments (in stream order) whose chunks are held in one dtype. */
export interface TierSpan {
  dtype: RecordDtype;
  tStart: number;
  tEnd: number;
  firstChunkId: number;
  lastChunkId: number;
  chunks: number;
  /** Record bytes of the span's chunks. */
  bytes: number;
  segments: number;
}

export interface ChunkStoreOptions {
  /** Folder of this stream's store; created if missing (see `create`). */
  dir: string;
  /** Required for a new store; for an existing one it must equal the stored geometry when given. */
  geometry?: ChunkGeometry;
  /** Payload dtype for new appends. Default: the store's recorded dtype, 'float32' for a new store. */
  dtype?: KvStorageDtype;
  /** Default 'every-chunk'. */
  fsync?: FsyncPolicy;
  /** Roll to a new segment file when the next record would pass this size. Default 256 MiB. */
  segmentBytes?: number;
  /** RAM LRU budget for decoded chunks (float32 bytes). Default 256 MiB; 0 disables the cache. */
  cacheBytes?: number;
  /** Applied automatically after every manifest commit. Default: none (keep everything). */
  retention?: RetentionPolicy;
  /**
   * Open-time payload check. 'auto' (default): read and checksum the payloads only where a crash of
   * the previous session could have damaged them (its segments past the last fsynced one, and only
   * if it did not close cleanly under fsync 'none'); sizes and torn tails are always checked.
   * 'full': checksum every payload on open (same as verify(), but drops what is damaged).
   */
  recoveryCheck?: 'auto' | 'full';
  /** Create the store if the folder has none. Default true; false gives STORE_CORRUPT/FILE_NOT_FOUND. */
  create?: boolean;
  /**
   * Inspect only (stats, reads, verify), also while another process writes the store: the manifest
   * is opened read-only, no lock is taken, recovery does not run (its report is empty) and nothing
   * is ever written; appends, retention, dropChunks and recordGap throw. Implies `create: false`.
   */
  readOnly?: boolean;
  /**
   * Called with chunk ids removed by automatic retention, after their rows are gone, so the caller can
   * drop them from its indices. (applyRetention() returns them instead.)
   */
  onChunksRemoved?: (chunkIds: number[]) => void;
  /** Test and diagnostics hook: runs after a payload is written, before its row can commit. */
  afterPayloadWrite?: (chunkId: number) => void;
  /**
   * Test hook (fault injection where a real full file system is not available): runs just before
   * each write-side operation; what it throws stands for that operation failing (e.g. an Error with
   * code 'ENOSPC' or 'SQLITE_FULL'). 'record-write' runs after half the record is written.
   */
  ioFault?: (op: StoreIoOp) => void;
  /** Test hook: runs at each step of a demotion (the crash tests SIGKILL the process there). */
  demotionStep?: (step: DemotionStep, segment: number) => void;
  /**
   * Recodes the stills of consecutive chunks going to the archive together (the engine codes them
   * against each other: src/engine/stillGroups.ts); one still per item, same order, opaque to the
   * store. Called with at most ARCHIVE_STILL_RUN items. A rejection keeps the stills as they were.
   */
  packArchiveStills?: (items: ReadonlyArray<{ chunkId: number; still: Uint8Array }>) => Promise<Uint8Array[]>;
}

/** The write-side operations `ioFault` can fail. */
export type StoreIoOp = 'segment-create' | 'record-write' | 'fsync' | 'manifest-commit' | 'gap-write';

/** What append() resolves to once the chunk's manifest row is committed. */
export interface AppendReceipt {
  chunkId: number;
  segment: number;
  offset: number;
  /** Record bytes on disk (header + payload + padding). */
  length: number;
}

export type ChunkFailureReason = 'not-found' | 'checksum' | 'bad-header' | 'truncated' | 'missing-segment' | 'io' | 'archived';

export interface ChunkFailure {
  chunkId: number;
  reason: ChunkFailureReason;
  message: string;
}

export interface ReadChunksResult {
  /** Decoded chunks by id, in ascending id order. Shared with the cache: treat them as read-only. */
  chunks: Map<number, FrameChunk>;
  /** Requested ids that could not be returned, and why. */
  failed: ChunkFailure[];
}

export interface RecoveryReport {
  /** Whether the previous session closed cleanly. */
  cleanShutdown: boolean;
  /** Rows removed from the manifest because their payload was not intact. */
  droppedChunks: ChunkFailure[];
  /** Segment tails cut back to the end of their last committed record (torn or uncommitted writes). */
  truncatedSegments: Array<{ segment: number; fromBytes: number; toBytes: number }>;
  /** Segment files with no committed record, deleted. */
  deletedSegments: number[];
  /** Payloads read and checksummed during recovery. */
  checkedPayloads: number;
}

export interface VerifyReport {
  checkedChunks: number;
  damaged: ChunkFailure[];
  /** Segment files on disk that no manifest row references (harmless; deleted on next open). */
  unreferencedSegments: number[];
  bytesRead: number;
}

export interface RetentionResult {
  removedChunkIds: number[];
  deletedSegments: number[];
  freedBytes: number;
}

export interface SegmentStats {
  segment: number;
  fileBytes: number;
  chunkCount: number;
  firstChunkId: number | null;
  lastChunkId: number | null;
  tStart: number | null;
  tEnd: number | null;
  /** Record bytes of the segment's committed chunks by payload dtype, only the dtypes it holds (the horizon's tier of each stretch). */
  bytesByDtype: Partial<Record<RecordDtype, number>>;
}

export interface StoreStats {
  geometry: ChunkGeometry;
  dtype: KvStorageDtype;
  chunkCount: number;
  firstChunkId: number | null;
  lastChunkId: number | null;
  /** Record bytes (header + payload + padding) of committed chunks, by payload dtype. */
  bytesByDtype: Record<RecordDtype, number>;
  /** Sum of segment file sizes (includes segment headers and holes left by dropped rows). */
  segmentBytes: number;
  /** Every file of the store folder (segments, manifest, WAL, -shm, LOCK) and of `retention.alsoCount`, measured now. */
  diskBytes: number;
  /** `retention.budgetBytes`, null when the store has no budget. */
  budgetBytes: number | null;
  tStart: number | null;
  tEnd: number | null;
  wallStart: number | null;
  wallEnd: number | null;
  segments: SegmentStats[];
  /**
   * What retention (budget, maxBytes, age) has deleted since the store existed: the newest deleted
   * chunk's tEnd (stream s) and the chunks deleted; null when it never deleted anything (or the
   * store's retention ran before this was recorded: then firstChunkId > 0 is the only trace).
   */
  forgotten: { tEnd: number; chunks: number } | null;
  /** Appended chunks whose rows have not committed yet. */
  pendingChunks: number;
  cache: { entries: number; bytes: number; budgetBytes: number; hits: number; misses: number };
  /** Disk reads issued by readChunks()/verify() since open (cache hits add none). */
  io: { readCalls: number; bytesRead: number };
}

export interface StreamGap {
  tStart: number;
  tEnd: number;
  reason: string;
}

/** Which gaps ChunkStore.gaps() returns: those overlapping [from, to] (stream seconds), at most limit. */
export interface GapRange {
  /** Default: -Infinity. */
  from?: number;
  /** Default: +Infinity. */
  to?: number;
  /** Default: all. */
  limit?: number;
}

/** Every committed chunk's id and times, ascending id, index i of each array describing one chunk. */
export interface ChunkTimes {
  ids: Uint32Array;
  tStart: Float64Array;
  tEnd: Float64Array;
}
