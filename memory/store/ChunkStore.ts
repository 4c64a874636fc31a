// The disk tier of one stream's memory: append-only segment files of chunk payloads, a SQLite
// manifest, a RAM LRU in front, retention, recovery and verification (docs/memory-store.md).
//
// Durability order (design.md section 3), enforced here and in CommitQueue:
//   payload written (and fsynced per policy) -> manifest row committed -> append() resolves.
// Updating the retrieval index is the caller's job, after append() resolves.
//
// What blocks the event loop: append() encodes, checksums and writes one record synchronously
// (one chunk write into the page cache), then returns a promise; fsync runs on the thread pool and
// the row commit is one small SQLite transaction. readChunks() and verify() read on the thread pool
// and decode one chunk at a time. open() (recovery) and applyRetention() are synchronous.
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';
import type { FrameChunk, KvStorageDtype, RecordDtype } from '../frameChunk.js';
import type {
  AppendReceipt,
  ChunkFailure,
  ChunkGeometry,
  ChunkStoreOptions,
  ChunkTimes,
  DemotionResult,
  DemotionStep,
  FsyncPolicy,
  GapRange,
  ReadChunksResult,
  RecoveryReport,
  RetentionPolicy,
  RetentionResult,
  StoreIoOp,
  StoreStats,
  StreamGap,
  TierSpan,
  VerifyReport,
} from './types.js';
import { readRange } from './asyncRead.js';
import { ARCHIVE_DTYPE, ARCHIVE_STILL_RUN, archiveRecordOf, DEMOTED_DTYPE, type DemotionTarget, pickDemotion, reencodeRecord, rowHasStill, streamOrder, tierSpansOf } from './demotion.js';
import { checkRecord } from './recordCheck.js';
import { forEachConcurrent } from './asyncRead.js';
import { type ChunkLayers, chunkLayers, DEFAULT_SECTION_READ, readLayerSections, type ScratchBuffers } from './layerReader.js';
import { ChunkCache } from './chunkCache.js';
import { validateChunk } from './chunkValidation.js';
import { CommitQueue, fdatasyncAsync, type PendingCommit } from './commitQueue.js';
import { classifyWriteError, diskFullError, isNoSpace } from './diskFull.js';
import { Manifest, MANIFEST_FILE, type ChunkLocation, type ChunkRow } from './manifest.js';
import { DEFAULT_KEEP_FULL_SEC, DEFAULT_KV_SHARE, resolveOptions, type ResolvedOptions, validateRetention } from './options.js';
import { planReads } from './readPlan.js';
import { RecordEncoder } from './recordEncoder.js';
import { FORMAT_VERSION, payloadLayout, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, stillOf } from './recordFormat.js';
import { recoverStore } from './recovery.js';
import { packRepresentatives, unpackRepresentatives } from './representatives.js';
import { selectSegmentsToDelete } from './retention.js';
import { archivedFailure, readRunChunks, type RunReadContext } from './runReader.js';
import {
  createSegment,
  fsyncDir,
  listSegmentFiles,
  openSegmentForAppend,
  SegmentReaders,
  segmentPath,
  type WritableSegment,
} from './segmentFiles.js';
import { acquireStoreLock } from './storeLock.js';
import { folderBytes, walLimits } from './budget.js';
import { verifyStore } from './verify.js';

/** Reads closer than this are merged into one (cheaper than another system call). */
const READ_MERGE_GAP_BYTES = 256 * 1024;
/** Largest single read; bounds the transient buffer of a reload. */
const READ_RUN_BYTES = 16 * 1024 * 1024;
/** Reads in flight at once: the libuv thread pool's default size. */
const READ_CONCURRENCY = 4;
/** Ids per manifest query of readMetas(): rows are 5.7 KiB (22.5 KiB in older float32 rows), so a batch holds ~12 MB at most. */
const READ_METAS_BATCH = 512;
/** Files of the store folder besides segments, counted against a budget. */
const STORE_SIDE_FILES = [MANIFEST_FILE, `${MANIFEST_FILE}-wal`, `${MANIFEST_FILE}-shm`, 'LOCK'];
/** A budget's `alsoCount` folders are walked again at least this often (ms), even if their mtimes did not change. */
const ALSO_COUNT_REFRESH_MS = 1000;
/** Background demotion converts records for at most this long before giving the event loop back (ms). */
const DEMOTION_SLICE_MS = 8;
/** Demotion starts when fewer than this many segments of the budget are free (it frees ~0.84 of one each, from float32). */
const DEMOTION_HEADROOM_SEGMENTS = 2;
/** Without a pool, each readLayers() gets a buffer of its own. */
const FRESH_BUFFERS: ScratchBuffers = { take: (bytes) => new ArrayBuffer(bytes), give: () => undefined };

export interface ReadLayersResult {
  /** The requested layers by chunk id. */
  chunks: Map<number, ChunkLayers>;
  failed: ChunkFailure[];
  /** Gives the read buffer back to the scratch pool: the layers may not be used afterwards. */
  release(): void;
}

/** A segment file's size as this process wrote it (its committed chunks: Manifest.summaries). */
interface SegmentState {
  fileBytes: number;
}

/** A chunk's metadata and representative vectors, for rebuilding indices without reading payloads. */
export interface ChunkMeta {
  chunkId: number;
  tStart: number;
  tEnd: number;
  wallTime: number;
  tokenCount: number;
  dtype: RecordDtype;
  /** Per layer, float32 [numKvHeads * headDim]. */
  representatives: Float32Array[];
}

export class ChunkStore {
  readonly dir: string;
  readonly geometry: ChunkGeometry;
  /** Payload dtype of new appends. */
  readonly dtype: KvStorageDtype;
  readonly fsync: FsyncPolicy;
  /** What open() found and repaired (read-only stores: nothing, recovery does not run). */
  readonly recovery: RecoveryReport;
  /** Opened with `readOnly`: nothing is ever written (see ChunkStoreOptions.readOnly). */
  readonly readOnly: boolean;

  private readonly opts: ResolvedOptions;
  private readonly manifest: Manifest;
  private readonly readers: SegmentReaders;
  private readonly cache: ChunkCache;
  private readonly queue: CommitQueue;
  private readonly segments = new Map<number, SegmentState>();
  private readonly releaseLock: () => void;
  private readonly onChunksRemoved: ((ids: number[]) => void) | undefined;
  private readonly afterPayloadWrite: ((chunkId: number) => void) | undefined;
  private readonly ioFault: ((op: StoreIoOp) => void) | undefined;
  private active: WritableSegment | null = null;
  /** Segment to keep appending to after open (the newest, if it has room). */
  private resumeSegment: number | null;
  private nextSegmentId: number;
  /** Highest chunk id appended (committed or pending). */
  private lastChunkId: number | null;
  private readonly encoder = new RecordEncoder();
  private failure: VigilError | null = null;
  private closing = false;
  private closed = false;
  private closingPromise: Promise<void> | null = null;
  private readsInFlight = 0;
  private readsIdle: (() => void) | null = null;
  private readonly io = { readCalls: 0, bytesRead: 0 };
  private readonly readCtx: RunReadContext;
  private retentionPolicy: RetentionPolicy | undefined;
  private alsoCountCache: { stamp: string; at: number; bytes: number } | null = null;
  /** Pinned chunk ids (a running question's selection) -> pin count: demotion defers their segments. */
  private readonly pins = new Map<number, number>();
  /** The demotion in progress: its new file counts against the budget; retention deleting `from` aborts it. */
  private demotion: { from: number; to: number; size: number; aborted: boolean } | null = null;
  private demotionTask: Promise<void> | null = null;
  /** The last demoteSegment() call (background or explicit), awaited by dispose(). */
  private demotionRun: Promise<unknown> = Promise.resolve();
  private readonly demotionStep: ((step: DemotionStep, segment: number) => void) | undefined;
  private readonly packArchiveStills: ChunkStoreOptions['packArchiveStills'];
  /** Old segment files whose rows moved while reads were in flight: unlinked when the reads finish. */
  private unlinkWhenIdle: number[] = [];
  /** Whether this session's last append went to the archive (null before the first). */
  private lastAppendArchived: boolean | null = null;
  /** Segments holding no still to archive (DemotionPolicy.stillless); a demoted segment's new id starts clean. */
  private readonly stillless = new Set<number>();

  private constructor(opts: ResolvedOptions, hooks: ChunkStoreOptions) {
    this.opts = opts;
    this.dir = opts.dir;
    this.fsync = opts.fsync;
    this.retentionPolicy = opts.retention;
    this.onChunksRemoved = hooks.onChunksRemoved;
    this.afterPayloadWrite = hooks.afterPayloadWrite;
    this.ioFault = hooks.ioFault;
    this.demotionStep = hooks.demotionStep;
    this.packArchiveStills = hooks.packArchiveStills;
    const readOnly = hooks.readOnly ?? false;
    this.readOnly = readOnly;

    if (!fs.existsSync(opts.dir)) {
      if (!opts.create || readOnly) throw new VigilError('FILE_NOT_FOUND', `memory store folder ${opts.dir} does not exist`);
      fs.mkdirSync(opts.dir, { recursive: true });
    }
    const manifestPath = path.join(opts.dir, MANIFEST_FILE);
    const isNew = !fs.existsSync(manifestPath);
    if (isNew && (!opts.create || readOnly)) throw new VigilError('FILE_NOT_FOUND', `no memory store in ${opts.dir} (no ${MANIFEST_FILE})`);
    // A reader takes no lock: the writer (a running server) keeps it, and nothing here writes.
    this.releaseLock = readOnly ? () => undefined : acquireStoreLock(opts.dir);
    let manifest: Manifest | undefined;
    try {
      try {
        manifest = new Manifest(manifestPath, opts.fsync !== 'none', readOnly);
      } catch (e) {
        // Opening migrates (an index, the summaries table): a full disk is not a damaged manifest.
        if (isNoSpace(e)) throw diskFullError(opts.dir, 'opening the manifest', e);
        throw new VigilError('STORE_CORRUPT', `${manifestPath} is not a readable manifest: ${(e as Error).message}`, { cause: e });
      }
      this.manifest = manifest;
      if (!readOnly && opts.retention?.budgetBytes !== undefined) this.boundWal(opts.retention.budgetBytes);
      let meta = this.manifest.readMeta();
      if (meta === undefined) {
        if (readOnly) throw new VigilError('STORE_CORRUPT', `memory store ${opts.dir} has no metadata yet`);
        if (opts.geometry === undefined) {
          throw new VigilError('BAD_CONFIG', `memory store ${opts.dir} is new: options.geometry is required`);
        }
        this.manifest.createMeta(opts.geometry, opts.dtype ?? 'float32', opts.fsync);
        fsyncDir(opts.dir);
        meta = this.manifest.readMeta()!;
      }
      if (meta.formatVersion > FORMAT_VERSION) {
        throw new VigilError('STORE_CORRUPT', `memory store ${opts.dir} has format ${meta.formatVersion}; this Vigil reads ${FORMAT_VERSION}`);
      }
      const stored: ChunkGeometry = { numLayers: meta.numLayers, numKvHeads: meta.numKvHeads, headDim: meta.headDim };
      const g = opts.geometry;
      if (g !== undefined && (g.numLayers !== stored.numLayers || g.numKvHeads !== stored.numKvHeads || g.headDim !== stored.headDim)) {
        throw new VigilError(
          'SHAPE_MISMATCH',
          `memory store ${opts.dir} holds ${stored.numLayers} layers x ${stored.numKvHeads} KV heads x head_dim ${stored.headDim}; ` +
            `asked for ${g.numLayers} x ${g.numKvHeads} x ${g.headDim} (a different model?)`,
        );
      }
      this.geometry = stored;
      this.dtype = opts.dtype ?? meta.dtype;

      let maxSegmentSeen = -1;
      if (readOnly) {
        // Recovery repairs (truncates, deletes, drops rows): a reader only looks at committed rows.
        this.recovery = { cleanShutdown: meta.cleanShutdown, droppedChunks: [], truncatedSegments: [], deletedSegments: [], checkedPayloads: 0 };
      } else {
        const recovered = recoverStore(opts.dir, this.manifest, meta, stored, opts.recoveryCheck);
        this.recovery = recovered.report;
        maxSegmentSeen = recovered.maxSegmentSeen;
        this.manifest.beginSession(opts.fsync);
      }

      const files = listSegmentFiles(opts.dir);
      for (const f of files) {
        this.segments.set(f.segment, { fileBytes: f.size });
        if (f.segment > maxSegmentSeen) maxSegmentSeen = f.segment;
      }
      // Appends resume in the segment holding the newest chunks (stream order: a demoted segment's id is higher).
      const newestSummary = this.manifest.segmentSummaries().sort(streamOrder).at(-1);
      const newest = newestSummary === undefined ? files.at(-1) : files.find((f) => f.segment === newestSummary.segment);
      this.resumeSegment = newest !== undefined && newest.size < opts.segmentBytes ? newest.segment : null;
      this.nextSegmentId = maxSegmentSeen + 1;
      this.lastChunkId = this.manifest.totals().lastChunkId;
      this.readers = new SegmentReaders(opts.dir);
      this.readCtx = { readers: this.readers, geometry: stored, io: this.io };
      this.cache = new ChunkCache(opts.cacheBytes);
      this.queue = new CommitQueue(opts.fsync, {
        sync: (fd) => {
          this.ioFault?.('fsync');
          return fdatasyncAsync(fd);
        },
        commit: (rows) => {
          this.ioFault?.('manifest-commit');
          this.manifest.insert(rows);
        },
        afterCommit: () => this.afterCommit(),
        onFailure: (e, batch) => (batch === undefined ? this.fail(e) : this.commitFailed(e, batch.stage, batch.items)),
      });
    } catch (e) {
      try {
        manifest?.dispose();
      } finally {
        this.releaseLock();
      }
      // Recovery and the session mark write too.
      if (isNoSpace(e)) throw diskFullError(opts.dir, 'opening the store', e);
      throw e;
    }
  }

  /**
   * Opens (creating if needed) the store in options.dir, runs recovery (see `recovery`), and takes
   * the folder's lock. Synchronous: it may read the segments a crash could have damaged.
   */
  static open(options: ChunkStoreOptions): ChunkStore {
    return new ChunkStore(resolveOptions(options), options);
  }

  /**
   * Writes the chunk's record now (synchronously, one chunk write) and resolves once its manifest
   * row is committed under the fsync policy. Chunk ids must increase. The chunk's arrays are not
   * referenced after this call returns. Rejects with SHAPE_MISMATCH / BAD_INPUT for a bad chunk
   * (nothing written), DISK_FULL when a write, fsync or commit finds no space (the append is
   * undone: its id may be appended again, and later appends succeed once there is space),
   * STORE_IO when a write, fsync or commit fails otherwise (the store then refuses further
   * appends), STORE_CLOSED after dispose().
   */
  async append(chunk: FrameChunk, options: { archive?: boolean } = {}): Promise<AppendReceipt> {
    this.assertWritable();
    // An import of old history can go straight to the archive: its KV is not written (nor needed).
    const dtype: RecordDtype = options.archive === true ? ARCHIVE_DTYPE : this.dtype;
    validateChunk(chunk, this.geometry, this.lastChunkId, dtype !== ARCHIVE_DTYPE);
    const { bytes: rec, payloadBytes, checksum, layerChecksums } = this.encoder.encode(chunk, dtype, this.geometry);
    const length = rec.length;

    const budget = this.retentionPolicy?.budgetBytes;
    if (budget !== undefined) this.makeRoom(length);
    let seg: WritableSegment;
    try {
      seg = this.segmentFor(length, dtype === ARCHIVE_DTYPE);
    } catch (e) {
      throw classifyWriteError(this.dir, 'for a new segment', e, (x) =>
        new VigilError('STORE_IO', `memory store ${this.dir}: opening a segment failed: ${(x as Error).message}`, { cause: x }),
      );
    }
    const offset = seg.size;
    this.writeRecord(seg, rec, length, offset);
    seg.size += length;
    this.segments.get(seg.segment)!.fileBytes = seg.size;
    this.lastChunkId = chunk.chunkId;
    this.afterPayloadWrite?.(chunk.chunkId);

    const row: ChunkRow = {
      chunkId: chunk.chunkId,
      segment: seg.segment,
      offset,
      length,
      tStart: chunk.tStart,
      tEnd: chunk.tEnd,
      wallTime: chunk.wallTime,
      tokenCount: chunk.tokenCount,
      dtype,
      checksum,
      payloadBytes,
      representatives: packRepresentatives(chunk.representatives),
      layerChecksums,
    };
    const receipt: AppendReceipt = { chunkId: chunk.chunkId, segment: seg.segment, offset, length };
    return new Promise<AppendReceipt>((resolve, reject) => this.queue.add({ row, fd: seg.fd, receipt, resolve, reject }));
  }

  /** Commits every pending append now (one fsync); resolves when they are committed. */
  async flush(): Promise<void> {
    this.assertOpen();
    await this.queue.flush();
    if (this.failure !== null) throw this.failure;
  }

  /**
   * Loads committed chunks as float32 FrameChunks: RAM cache first, then disk, reads grouped by
   * segment, sorted by offset and merged, every payload checksummed. A chunk that cannot be
   * returned (unknown id, damaged, missing) is listed in `failed`; the others are returned.
   */
  async readChunks(ids: readonly number[]): Promise<ReadChunksResult> {
    this.assertOpen();
    if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id) && id >= 0)) {
      throw new VigilError('BAD_INPUT', 'readChunks: ids must be an array of chunk ids (integers >= 0)');
    }
    const wanted = [...new Set(ids)].sort((a, b) => a - b);
    const found = new Map<number, FrameChunk>();
    const failed: ChunkFailure[] = [];
    const misses: number[] = [];
    for (const id of wanted) {
      const c = this.cache.get(id);
      if (c !== undefined) found.set(id, c);
      else misses.push(id);
    }
    if (misses.length > 0) {
      const rows = this.manifest.rowsByIds(misses);
      const known = new Set(rows.map((r) => r.chunkId));
      for (const id of misses) {
        if (!known.has(id)) failed.push({ chunkId: id, reason: 'not-found', message: `chunk ${id} is not in the store` });
      }
      this.readsInFlight++;
      try {
        const runs = planReads(rows, { maxGapBytes: READ_MERGE_GAP_BYTES, maxRunBytes: READ_RUN_BYTES });
        await forEachConcurrent(runs, READ_CONCURRENCY, async (run) => {
          for (const chunk of await readRunChunks(this.readCtx, run, failed)) {
            this.cache.put(chunk);
            found.set(chunk.chunkId, chunk);
          }
        });
      } finally {
        this.readDone();
      }
    }
    const chunks = new Map([...found].sort((a, b) => a[0] - b[0]));
    failed.sort((a, b) => a.chunkId - b.chunkId);
    return { chunks, failed };
  }

  /**
   * Loads chosen layers of committed chunks (ReKV: each layer its own chunks): `wanted` maps a
   * chunk id to its layer indices. A chunk in the RAM cache gives views of its arrays; a chunk
   * whose manifest row has per-layer checksums is read layer by layer into one buffer from
   * `scratch`; an older row, or a chunk wanted on every layer, is read whole (readChunks, cached). The returned layers are valid until
   * release(), which gives the buffer back. Failures are listed per chunk, as in readChunks.
   */
  async readLayers(wanted: ReadonlyMap<number, readonly number[]>, scratch: ScratchBuffers = FRESH_BUFFERS): Promise<ReadLayersResult> {
    this.assertOpen();
    const L = this.geometry.numLayers;
    for (const [id, layers] of wanted) {
      if (!Number.isSafeInteger(id) || id < 0 || !layers.every((l) => Number.isInteger(l) && l >= 0 && l < L)) {
        throw new VigilError('BAD_INPUT', `readLayers: chunk ${id} layers [${layers.join(', ')}] are not chunk ids with layers 0..${L - 1}`);
      }
    }
    const chunks = new Map<number, ChunkLayers>();
    const failed: ChunkFailure[] = [];
    const fromWhole = (chunk: FrameChunk) => chunks.set(chunk.chunkId, chunkLayers(chunk, wanted.get(chunk.chunkId) ?? []));
    const misses: number[] = [];
    for (const id of wanted.keys()) {
      const cached = this.cache.get(id);
      if (cached) fromWhole(cached);
      else misses.push(id);
    }
    let buffer: ArrayBuffer | undefined;
    // Held from the location lookup to the last read: a demotion committing meanwhile defers the old file's unlink.
    this.readsInFlight++;
    try {
      if (misses.length > 0) {
        // Locations only: the representatives (5.7-22.5 KiB a row) are not needed to read layers.
        const located = this.manifest.locationsByIds(misses);
        const known = new Set(located.map((r) => r.chunkId));
        for (const id of misses) if (!known.has(id)) failed.push({ chunkId: id, reason: 'not-found', message: `chunk ${id} is not in the store` });
        // Archived chunks have no layers to read: the caller re-encodes their stills (readStills).
        for (const r of located) if (r.dtype === ARCHIVE_DTYPE) failed.push(archivedFailure(r.chunkId));
        const rows = located.filter((r) => r.dtype !== ARCHIVE_DTYPE);
        // Read whole (through the cache, as readChunks does): rows from before layer checksums, and
        // chunks wanted on every layer (full, uniform and oracle contexts), where sections gain nothing.
        const readWhole = (r: ChunkLocation) => r.layerChecksums === null || new Set(wanted.get(r.chunkId)).size === L;
        const whole = rows.filter(readWhole).map((r) => r.chunkId);
        if (whole.length > 0) {
          const read = await this.readChunks(whole);
          for (const chunk of read.chunks.values()) fromWhole(chunk);
          for (const f of read.failed) failed.push(f);
        }
        this.readsInFlight++;
        try {
          const sections = await readLayerSections(
            this.readCtx,
            rows.filter((r) => !readWhole(r)),
            wanted,
            scratch,
            DEFAULT_SECTION_READ,
            failed,
          );
          buffer = sections.buffer;
          for (const [id, chunk] of sections.chunks) chunks.set(id, chunk);
        } finally {
          this.readDone();
        }
      }
    } finally {
      this.readDone();
    }
    const unique = new Map(failed.map((f) => [f.chunkId, f]));
    return {
      chunks,
      failed: [...unique.values()].sort((a, b) => a.chunkId - b.chunkId),
      release: () => {
        if (buffer) scratch.give(buffer);
        buffer = undefined;
      },
    };
  }

  /**
   * The stills of committed chunks (FrameChunk.still: what an archived chunk keeps instead of its
   * KV), each record read whole and checksummed. A chunk without one, unknown or damaged is listed
   * in `failed` ('not-found' when it kept no still).
   */
  async readStills(ids: readonly number[]): Promise<{ stills: Map<number, Uint8Array>; failed: ChunkFailure[] }> {
    this.assertOpen();
    const stills = new Map<number, Uint8Array>();
    const failed: ChunkFailure[] = [];
    this.readsInFlight++;
    try {
      const rows = this.manifest.locationsByIds([...new Set(ids)]);
      const known = new Set(rows.map((r) => r.chunkId));
      for (const id of ids) if (!known.has(id)) failed.push({ chunkId: id, reason: 'not-found', message: `chunk ${id} is not in the store` });
      for (const row of rows) {
        let record: Buffer;
        try {
          const fd = this.readers.acquire(row.segment);
          try {
            record = await readRange(fd, row.offset, row.length);
          } finally {
            this.readers.release(row.segment);
          }
        } catch (e) {
          failed.push({ chunkId: row.chunkId, reason: 'io', message: `chunk ${row.chunkId}: ${(e as Error).message}` });
          continue;
        }
        this.io.readCalls++;
        this.io.bytesRead += record.length;
        const bad = checkRecord(record, 0, row, this.geometry);
        if (bad !== null) {
          failed.push(bad);
          continue;
        }
        const payload = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + row.payloadBytes);
        const still = stillOf(payload, payloadLayout(row.dtype, this.geometry, row.tokenCount).totalBytes);
        if (still) stills.set(row.chunkId, still);
        else failed.push({ chunkId: row.chunkId, reason: 'not-found', message: `chunk ${row.chunkId} kept no still` });
      }
    } finally {
      this.readDone();
    }
    failed.sort((a, b) => a.chunkId - b.chunkId);
    return { stills, failed };
  }

  /** Which of these chunks are archived (no KV: a question must re-encode their stills). */
  archivedIds(ids: readonly number[]): Set<number> {
    this.assertOpen();
    const out = new Set<number>();
    for (const r of this.manifest.locationsByIds([...new Set(ids)])) if (r.dtype === ARCHIVE_DTYPE) out.add(r.chunkId);
    return out;
  }

  /**
   * Applies a retention policy now (default: the store's): deletes whole old segments and their
   * rows, returns the removed chunk ids. Rows go first, in one transaction, then the files.
   */
  applyRetention(policy: RetentionPolicy | undefined = this.retentionPolicy): RetentionResult {
    this.assertOpen();
    this.assertNotReadOnly();
    try {
      return this.retain(policy, policy?.budgetBytes !== undefined ? this.otherBytes(policy) : 0);
    } catch (e) {
      // The row delete is one transaction: on a full disk it rolls back and nothing changed.
      if (isNoSpace(e)) throw diskFullError(this.dir, 'for retention', e);
      throw e;
    }
  }

  /** Size a segment file is rolled at (bytes), fixed when the store opened. */
  get segmentBytes(): number {
    return this.opts.segmentBytes;
  }

  /** The retention policy applied after each commit (and, with a budget, before each write). */
  get retention(): RetentionPolicy | undefined {
    return this.retentionPolicy;
  }

  /**
   * Replaces the retention policy (e.g. a data-folder budget shared again when a stream comes or
   * goes) and applies it now; checked as at open (a budget under one segment is BAD_CONFIG).
   * Returns what it removed (also passed to onChunksRemoved).
   */
  setRetention(policy: RetentionPolicy | undefined): RetentionResult {
    this.assertWritable();
    const next = policy === undefined ? undefined : validateRetention(policy, this.opts.segmentBytes);
    this.retentionPolicy = next;
    if (next?.budgetBytes !== undefined) this.boundWal(next.budgetBytes);
    const r = this.applyRetention();
    if (r.removedChunkIds.length > 0) this.onChunksRemoved?.(r.removedChunkIds);
    return r;
  }

  /**
   * Bytes on disk now: every file of the store folder (segments, manifest, WAL, -shm, LOCK) and of
   * the retention policy's `alsoCount` folders. Measured, not derived: what a budget promises.
   */
  diskBytes(): number {
    this.assertOpen();
    return folderBytes([this.dir, ...(this.retentionPolicy?.alsoCount ?? [])]);
  }

  /** Bytes the budget counts beside the segment files: the rest of the store folder and `alsoCount`, measured. */
  private otherBytes(policy: RetentionPolicy): number {
    // A demotion's new file is on disk before the old one goes: the budget counts it.
    let total = this.alsoCountBytes(policy.alsoCount ?? []) + (this.demotion?.size ?? 0);
    // The store folder's other files, by name (a listing of every segment at each write cost ~1 ms
    // with 100 segments); segment sizes are known exactly in RAM (every write is this process's).
    for (const name of STORE_SIDE_FILES) {
      try {
        total += fs.statSync(path.join(this.dir, name)).size;
      } catch {
        // Not there (SQLite removes its -wal/-shm at close).
      }
    }
    return total;
  }

  /**
   * Bytes under the `alsoCount` folders, walked again when a folder's mtime changed (a file added,
   * removed or renamed in it, as an index save does) or ALSO_COUNT_REFRESH_MS passed (a file grown
   * in place), not at every write: ~20 stats each time cost ~1 ms.
   */
  private alsoCountBytes(dirs: readonly string[]): number {
    const now = performance.now();
    const stamp = dirs
      .map((d) => {
        try {
          return fs.statSync(d).mtimeMs;
        } catch {
          return -1;
        }
      })
      .join(',');
    const c = this.alsoCountCache;
    if (c !== null && c.stamp === stamp && now - c.at < ALSO_COUNT_REFRESH_MS) return c.bytes;
    const bytes = folderBytes(dirs);
    this.alsoCountCache = { stamp, at: now, bytes };
    return bytes;
  }

  /**
   * Before a record is written: delete oldest segments until the folder, the record and a new
   * segment's header fit in the budget. Done before the write (not only after the commit) so the
   * folder never exceeds the budget by more than the one segment retention may not delete.
   */
  private makeRoom(length: number): void {
    const policy = this.retentionPolicy!;
    // The row delete itself grows the WAL: measure again after each pass (a few passes at most).
    for (let pass = 0; pass < 4; pass++) {
      let r: RetentionResult;
      try {
        r = this.retain(policy, this.otherBytes(policy) + length + SEGMENT_HEADER_BYTES);
      } catch (e) {
        // The row delete is one transaction: a full disk rolls it back and nothing changed.
        if (isNoSpace(e)) throw diskFullError(this.dir, 'making room within the budget', e);
        throw e;
      }
      if (r.removedChunkIds.length === 0) return;
      this.onChunksRemoved?.(r.removedChunkIds);
    }
  }

  /** A budgeted store checkpoints its WAL often and truncates it after, so the WAL stays a small, bounded part of the budget. */
  private boundWal(budget: number): void {
    const { autocheckpointPages, journalSizeLimitBytes } = walLimits(budget);
    this.manifest.db.pragma(`wal_autocheckpoint = ${autocheckpointPages}`);
    this.manifest.db.pragma(`journal_size_limit = ${journalSizeLimitBytes}`);
  }

  private retain(policy: RetentionPolicy | undefined, otherBytes = 0): RetentionResult {
    const none: RetentionResult = { removedChunkIds: [], deletedSegments: [], freedBytes: 0 };
    if (policy === undefined) return none;
    const pending = this.queue.pendingSegments();
    // Stream order is the first chunk id, not the segment id (a demoted segment gets a new, higher
    // id); a segment without rows sorts first, unless appends go there or rows of it are committing
    // (then it is among the newest, and busy).
    const order = (segment: number): number =>
      segment === this.active?.segment || segment === this.resumeSegment || pending.has(segment)
        ? Number.MAX_SAFE_INTEGER
        : (this.manifest.summaries.get(segment)?.firstChunkId ?? -1);
    const ids = [...this.segments.keys()].sort((a, b) => order(a) - order(b) || a - b);
    const newestSegment = ids.at(-1);
    const victims = selectSegmentsToDelete(
      ids.map((segment) => {
        const s = this.segments.get(segment)!;
        // The newest segment is where appends go (or will resume): never deleted.
        const busy = segment === newestSegment || segment === this.active?.segment || pending.has(segment);
        return { segment, fileBytes: s.fileBytes, tEnd: this.manifest.summaries.get(segment)?.tEnd ?? null, busy, order: order(segment) };
      }),
      this.manifest.totals().tEnd,
      policy,
      otherBytes,
    );
    if (victims.length === 0) return none;
    const removedChunkIds = this.manifest.deleteSegments(victims);
    for (const id of removedChunkIds) this.cache.delete(id);
    let freedBytes = 0;
    for (const segment of victims) {
      // Deleting the segment a demotion is rewriting: that demotion is void (its new file goes too).
      if (this.demotion?.from === segment) this.demotion.aborted = true;
      freedBytes += this.segments.get(segment)!.fileBytes;
      this.segments.delete(segment);
      if (this.resumeSegment === segment) this.resumeSegment = null;
      // Unlink now; a read in flight keeps its descriptor (and the bytes) until it finishes.
      this.readers.retire(segment);
      fs.rmSync(segmentPath(this.dir, segment), { force: true });
    }
    return { removedChunkIds, deletedSegments: victims, freedBytes };
  }

  /**
   * Reads every committed record and checks it (header, identity, sizes, checksum). Reports
   * damaged chunk ids; changes nothing (dropChunks() removes them if wanted).
   */
  async verify(): Promise<VerifyReport> {
    this.assertOpen();
    this.manifest.reload();
    this.readsInFlight++;
    try {
      return await verifyStore(this.readCtx, this.manifest, {
        dir: this.dir,
        // A reader beside a live writer: the newest segment may be one the writer has just started.
        activeSegment: this.readOnly ? (listSegmentFiles(this.dir).at(-1)?.segment ?? null) : (this.active?.segment ?? null),
        maxGapBytes: READ_MERGE_GAP_BYTES,
        maxRunBytes: READ_RUN_BYTES,
        concurrency: READ_CONCURRENCY,
      });
    } finally {
      this.readDone();
    }
  }

  /** Removes rows (e.g. the damaged ones verify() found); their bytes stay as holes. Returns the ids removed. */
  dropChunks(ids: readonly number[]): number[] {
    this.assertOpen();
    this.assertNotReadOnly();
    let removed: number[];
    try {
      removed = this.manifest.deleteChunks(ids);
    } catch (e) {
      if (isNoSpace(e)) throw diskFullError(this.dir, 'dropping chunks', e);
      throw e;
    }
    for (const id of removed) this.cache.delete(id);
    return removed;
  }

  /**
   * Lengthens a committed chunk's span to end at tEnd (never shortens it): frame gating extends the
   * newest chunk over the frames it turned away. One manifest transaction (the row and its segment's
   * summary), so a crash leaves the old span or the new one; the record's header keeps the span it
   * was written with (reads take times from the row). Returns false when no committed row has this
   * id (not committed yet, or removed). DISK_FULL when the manifest has no room.
   */
  extendChunk(chunkId: number, tEnd: number): boolean {
    this.assertOpen();
    this.assertNotReadOnly();
    if (!Number.isSafeInteger(chunkId) || chunkId < 0 || !Number.isFinite(tEnd)) {
      throw new VigilError('BAD_INPUT', `extendChunk: need a chunk id and a finite tEnd, got ${chunkId}, ${tEnd}`);
    }
    let found: boolean;
    try {
      found = this.manifest.extendChunk(chunkId, tEnd);
    } catch (e) {
      if (isNoSpace(e)) throw diskFullError(this.dir, 'extending a chunk', e);
      throw e;
    }
    // A cached copy still has the old span.
    if (found) this.cache.delete(chunkId);
    return found;
  }

  /** A committed chunk's stream times, from the narrow (id, times) index; null when absent. */
  chunkSpan(chunkId: number): { tStart: number; tEnd: number } | null {
    this.assertOpen();
    return this.manifest.chunkSpan(chunkId) ?? null;
  }

  /** Metadata and representative vectors of committed chunks in id order, a page at a time. */
  listChunks(options: { afterId?: number; limit?: number } = {}): ChunkMeta[] {
    this.assertOpen();
    return this.manifest.rowsPage(options.afterId ?? -1, options.limit ?? 1000).map((r) => this.toMeta(r));
  }

  /**
   * Every committed chunk id, ascending. Narrow: reads the (id, times) index only, never a row's
   * representatives, so its cost is a few bytes per chunk (restart reconciliation).
   */
  chunkIds(): Uint32Array {
    this.assertOpen();
    return this.manifest.chunkIds();
  }

  /** Every committed chunk's id, tStart and tEnd in id order, from the same narrow index. */
  chunkTimes(): ChunkTimes {
    this.assertOpen();
    return this.manifest.chunkTimes();
  }

  /**
   * Metadata and representatives of the given chunks, ascending id; unknown ids are absent.
   * Any number of ids: they are queried READ_METAS_BATCH at a time.
   */
  readMetas(ids: readonly number[]): ChunkMeta[] {
    this.assertOpen();
    if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id) && id >= 0)) {
      throw new VigilError('BAD_INPUT', 'readMetas: ids must be an array of chunk ids (integers >= 0)');
    }
    const wanted = Float64Array.from(new Set(ids)).sort();
    const out: ChunkMeta[] = [];
    for (let i = 0; i < wanted.length; i += READ_METAS_BATCH) {
      for (const r of this.manifest.rowsByIdsOrdered(Array.from(wanted.subarray(i, i + READ_METAS_BATCH)))) out.push(this.toMeta(r));
    }
    return out;
  }

  private toMeta(r: ChunkRow): ChunkMeta {
    const { numLayers: L, numKvHeads: H, headDim: D } = this.geometry;
    return {
      chunkId: r.chunkId,
      tStart: r.tStart,
      tEnd: r.tEnd,
      wallTime: r.wallTime,
      tokenCount: r.tokenCount,
      dtype: r.dtype,
      representatives: unpackRepresentatives(r.representatives, L, H * D),
    };
  }

  /** Records an outage in the stream timeline (kept until retention passes it). */
  recordGap(gap: StreamGap): void {
    this.assertOpen();
    this.assertNotReadOnly();
    if (!Number.isFinite(gap.tStart) || !Number.isFinite(gap.tEnd) || gap.tEnd < gap.tStart) {
      throw new VigilError('BAD_INPUT', `recordGap: need finite tStart <= tEnd, got ${gap.tStart}..${gap.tEnd}`);
    }
    try {
      this.ioFault?.('gap-write');
      this.manifest.insertGap(gap);
    } catch (e) {
      if (isNoSpace(e)) throw diskFullError(this.dir, 'recording a gap', e);
      throw e;
    }
  }

  /**
   * Recorded outages overlapping [from, to] (stream seconds, both ends included; default: all time),
   * ordered by start, at most `limit` (default: all). Filtered in SQL.
   */
  gaps(range: GapRange = {}): StreamGap[] {
    this.assertOpen();
    const from = range.from ?? -Infinity;
    const to = range.to ?? Infinity;
    if (typeof from !== 'number' || typeof to !== 'number' || Number.isNaN(from) || Number.isNaN(to)) {
      throw new VigilError('BAD_INPUT', `gaps: from and to must be numbers (stream seconds), got ${String(range.from)}..${String(range.to)}`);
    }
    const limit = range.limit ?? -1;
    if (range.limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 0)) {
      throw new VigilError('BAD_INPUT', `gaps: limit must be an integer >= 0, got ${String(range.limit)}`);
    }
    if (from > to || limit === 0) return [];
    return this.manifest.gaps(from, to, limit);
  }

  /**
   * stats().chunkCount and stats().segmentBytes without the rest: from the running totals and the
   * segment sizes in RAM, no folder walk (stats() stats every file for diskBytes: 88% of its 0.3 ms
   * at an hour of stream). For callers that ask often (StreamMemory.stats()).
   */
  sizes(): { chunkCount: number; segmentBytes: number } {
    if (this.readOnly) {
      // A reader's counts are only as fresh as stats()'s reload makes them.
      const { chunkCount, segmentBytes } = this.stats();
      return { chunkCount, segmentBytes };
    }
    this.assertOpen();
    let segmentBytes = 0;
    for (const s of this.segments.values()) segmentBytes += s.fileBytes;
    return { chunkCount: this.manifest.totals().chunkCount, segmentBytes };
  }

  /**
   * Counts, bytes and spans from the per-segment summaries kept in RAM (O(segments), no query over
   * the chunk rows). A read-only store re-reads the summaries table and the segment files first, so
   * it sees what its writer committed since.
   */
  stats(): StoreStats {
    this.assertOpen();
    if (this.readOnly) {
      this.manifest.reload();
      this.segments.clear();
      for (const f of listSegmentFiles(this.dir)) this.segments.set(f.segment, { fileBytes: f.size });
    }
    const t = this.manifest.totals();
    let segmentBytes = 0;
    const segments = [...this.segments.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([segment, s]) => {
        segmentBytes += s.fileBytes;
        const m = this.manifest.summaries.get(segment);
        return {
          segment,
          fileBytes: s.fileBytes,
          chunkCount: m?.chunkCount ?? 0,
          firstChunkId: m?.firstChunkId ?? null,
          lastChunkId: m?.lastChunkId ?? null,
          tStart: m?.tStart ?? null,
          tEnd: m?.tEnd ?? null,
          bytesByDtype: m ? nonZeroBytes(m.bytesByDtype) : {},
        };
      });
    return {
      geometry: { ...this.geometry },
      dtype: this.dtype,
      chunkCount: t.chunkCount,
      firstChunkId: t.firstChunkId,
      lastChunkId: t.lastChunkId,
      bytesByDtype: t.bytesByDtype,
      segmentBytes,
      diskBytes: folderBytes([this.dir, ...(this.retentionPolicy?.alsoCount ?? [])]),
      budgetBytes: this.retentionPolicy?.budgetBytes ?? null,
      tStart: t.tStart,
      tEnd: t.tEnd,
      wallStart: t.wallStart,
      wallEnd: t.wallEnd,
      segments,
      forgotten: this.manifest.forgotten ? { ...this.manifest.forgotten } : null,
      pendingChunks: this.queue.size,
      cache: {
        entries: this.cache.size,
        bytes: this.cache.bytes,
        budgetBytes: this.cache.budgetBytes,
        hits: this.cache.hits,
        misses: this.cache.misses,
      },
      io: { ...this.io },
    };
  }

  /**
   * Per dtype, the stream-time ranges [tStart, tEnd] of contiguous segments (stream order) held in
   * it, oldest first: which stretches of memory are at which fidelity. From the segment summaries
   * (O(segments)); a read-only store sees its writer's last commit after stats() or verify().
   */
  tierSpans(): TierSpan[] {
    this.assertOpen();
    return tierSpansOf(this.manifest.segmentSummaries());
  }

  /**
   * Pins chunks (a running question's selection): demotion never moves them until every pin is
   * released (it defers their segments). Returns the release function (idempotent).
   */
  pin(ids: Iterable<number>): () => void {
    const held = [...new Set(ids)];
    for (const id of held) this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const id of held) {
        const n = (this.pins.get(id) ?? 1) - 1;
        if (n <= 0) this.pins.delete(id);
        else this.pins.set(id, n);
      }
      // A demotion deferred by these pins may run now.
      this.scheduleDemotion();
    };
  }

  private segmentPinned(first: number, last: number): boolean {
    for (const id of this.pins.keys()) if (id >= first && id <= last) return true;
    return false;
  }

  /** Resolves when no background demotion is running (tests; dispose() stops one itself). */
  async demotionIdle(): Promise<void> {
    while (this.demotionTask !== null) await this.demotionTask;
  }

  /**
   * Back-pressure for writers faster than demotion (a file ingested at many times real time): while
   * a background demotion runs and the budget has less than one segment of room left, the next
   * appends would make retention delete history the demotion is about to shrink. Returns the
   * demotion's end to wait for then, else null (a live stream at 1 frame/s never waits: demotion
   * runs at 25-50x that).
   */
  demotionBackpressure(): Promise<void> | null {
    const policy = this.retentionPolicy;
    if (this.demotionTask === null || policy?.budgetBytes === undefined) return null;
    let segmentTotal = 0;
    for (const s of this.segments.values()) segmentTotal += s.fileBytes;
    if (segmentTotal + this.otherBytes(policy) + this.opts.segmentBytes <= policy.budgetBytes) return null;
    return this.demotionIdle();
  }

  /**
   * Rewrites one whole segment as 'kivi4' (docs/memory-store.md, Demotion): every record is read,
   * checked, re-encoded and written to a new segment file, which is fsynced (and its folder entry)
   * before one manifest transaction moves the rows and both summaries; only then is the old file
   * deleted. A crash at any step leaves either the old rows and file (the new file, unreferenced,
   * is deleted by recovery) or the new ones (an old file left behind is unreferenced: deleted).
   * Returns null when the segment was deferred or abandoned: pinned chunks, a damaged record,
   * retention deleting it meanwhile, or dispose(). Work is done in slices of DEMOTION_SLICE_MS.
   */
  demoteSegment(segment: number, target: DemotionTarget = DEMOTED_DTYPE): Promise<DemotionResult | null> {
    const run = this.demoteOnce(segment, target);
    // dispose() waits for it (it stops at its next slice), so nothing is written after close.
    this.demotionRun = run.catch(() => undefined);
    return run;
  }

  private async demoteOnce(segment: number, target: DemotionTarget): Promise<DemotionResult | null> {
    this.assertWritable();
    const summary = this.manifest.summaries.get(segment);
    if (summary === undefined) throw new VigilError('BAD_INPUT', `demoteSegment: segment ${segment} holds no committed chunk`);
    if (segment === this.active?.segment || segment === this.resumeSegment || this.queue.pendingSegments().has(segment)) {
      throw new VigilError('BAD_INPUT', `demoteSegment: segment ${segment} is being appended to`);
    }
    if (this.demotion !== null) throw new VigilError('BAD_INPUT', `demoteSegment: segment ${this.demotion.from} is being demoted`);
    if (this.segmentPinned(summary.firstChunkId, summary.lastChunkId)) return null;
    const started = performance.now();
    const rows = this.manifest.locationsInSegments([segment]);
    // Chunks stored without a still have nothing to archive (they keep their KV): a segment of
    // only such chunks is not rewritten, and the policy stops picking it for the archive.
    if (target === ARCHIVE_DTYPE && !rows.some((r) => r.dtype !== ARCHIVE_DTYPE && rowHasStill(r, this.geometry))) {
      this.stillless.add(segment);
      return null;
    }
    const to = this.nextSegmentId++;
    const seg = createSegment(this.dir, to);
    const job = { from: segment, to, size: seg.size, aborted: false };
    this.demotion = job;
    let committed = false;
    try {
      const moved: ChunkLocation[] = [];
      let sliceStart = performance.now();
      // Gives the event loop back once the slice is spent; false when the demotion must stop.
      const slice = async (): Promise<boolean> => {
        if (performance.now() - sliceStart >= DEMOTION_SLICE_MS) {
          await new Promise<void>((r) => setImmediate(r));
          sliceStart = performance.now();
        }
        return !job.aborted && !this.closing;
      };
      // Writes one record of the new segment (its room in the budget made first, as an append would).
      const emit = async (row: ChunkLocation, bytes: Buffer, out: Pick<ChunkLocation, 'payloadBytes' | 'checksum' | 'layerChecksums' | 'dtype'>): Promise<boolean> => {
        this.roomForDemotion(bytes.length);
        if (job.aborted) return false;
        let done = 0;
        while (done < bytes.length) done += fs.writeSync(seg.fd, bytes, done, bytes.length - done, seg.size + done);
        moved.push({ ...row, ...out, segment: to, offset: seg.size, length: bytes.length });
        seg.size += bytes.length;
        job.size = seg.size;
        if (moved.length === 1) this.demotionStep?.('writing', segment);
        return slice();
      };
      // Stills going to the archive wait here, so packArchiveStills can code consecutive ones together.
      const pack = target === ARCHIVE_DTYPE ? this.packArchiveStills : undefined;
      let pending: Array<{ row: ChunkLocation; still: Uint8Array }> = [];
      const flush = async (): Promise<boolean> => {
        const run = pending;
        pending = [];
        if (run.length === 0) return true;
        const stills = await this.packedStills(run, segment);
        if (job.aborted || this.closing) return false;
        for (let i = 0; i < run.length; i++) {
          const enc = archiveRecordOf(run[i]!.row, this.geometry, stills[i]!);
          if (!(await emit(run[i]!.row, enc.bytes, { payloadBytes: enc.payloadBytes, checksum: enc.checksum, layerChecksums: enc.layerChecksums, dtype: ARCHIVE_DTYPE }))) return false;
        }
        return true;
      };
      for (const row of rows) {
        let record: Buffer;
        const fd = this.readers.acquire(segment);
        try {
          record = await readRange(fd, row.offset, row.length);
        } finally {
          this.readers.release(segment);
        }
        if (job.aborted || this.closing) return null;
        const bad = checkRecord(record, 0, row, this.geometry);
        if (bad !== null) {
          // Not ours to repair: verify/repair report and drop it; the segment stays as it is.
          process.emitWarning(`memory store ${this.dir}: demotion of segment ${segment} skipped: ${bad.message}`);
          return null;
        }
        const reencode = row.dtype !== target && row.dtype !== ARCHIVE_DTYPE && (target !== ARCHIVE_DTYPE || rowHasStill(row, this.geometry));
        if (reencode && pack !== undefined) {
          const kvBytes = payloadLayout(row.dtype, this.geometry, row.tokenCount).totalBytes;
          const still = stillOf(record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + row.payloadBytes), kvBytes);
          // A copy: the record (a frame's whole KV) is not kept while the run fills.
          pending.push({ row, still: Uint8Array.from(still!) });
          if (pending.length >= ARCHIVE_STILL_RUN && !(await flush())) return null;
          continue;
        }
        if (!(await flush())) return null;
        // A record already at the target or beyond (a mixed segment) is copied as it is: quantizing twice would add error.
        let bytes: Buffer = record;
        let out = { payloadBytes: row.payloadBytes, checksum: row.checksum, layerChecksums: row.layerChecksums, dtype: row.dtype };
        if (reencode) {
          const enc = await reencodeRecord(record, row, this.geometry, target, slice);
          if (enc === null) return null;
          bytes = enc.bytes;
          out = { payloadBytes: enc.payloadBytes, checksum: enc.checksum, layerChecksums: enc.layerChecksums, dtype: target };
        }
        if (!(await emit(row, bytes, out))) return null;
      }
      if (!(await flush())) return null;
      this.demotionStep?.('written', segment);
      await fdatasyncAsync(seg.fd);
      // The new file's folder entry is durable before a committed row points into it (on the thread pool).
      const folder = await fs.promises.open(this.dir, 'r');
      try {
        await folder.sync();
      } finally {
        await folder.close();
      }
      this.demotionStep?.('synced', segment);
      // Pins taken meanwhile defer it: nothing moves under a running question.
      if (job.aborted || this.closing || this.segmentPinned(summary.firstChunkId, summary.lastChunkId)) return null;
      const { left } = this.manifest.moveRows(segment, to, moved);
      committed = true;
      this.segments.set(to, { fileBytes: seg.size });
      for (const r of moved) this.cache.delete(r.chunkId); // cached copies hold the old fidelity
      this.demotionStep?.('committed', segment);
      if (left === 0) {
        this.segments.delete(segment);
        this.unlinkWhenIdle.push(segment);
        if (this.readsInFlight === 0) this.unlinkOld();
      }
      this.demotionStep?.('deleted', segment);
      return { fromSegment: segment, toSegment: to, chunks: moved.length, bytesBefore: summary.bytes, bytesAfter: seg.size, ms: performance.now() - started };
    } finally {
      fs.closeSync(seg.fd);
      if (!committed) {
        // Nothing points into it: gone now (or, after a crash, at the next open's recovery).
        fs.rmSync(segmentPath(this.dir, to), { force: true });
      }
      this.demotion = null;
    }
  }

  /** The run's stills as packArchiveStills recodes them; on its failure (warned once per segment), the stills as they were. */
  private async packedStills(run: ReadonlyArray<{ row: ChunkLocation; still: Uint8Array }>, segment: number): Promise<Uint8Array[]> {
    const own = run.map((p) => p.still);
    try {
      const packed = await this.packArchiveStills!(run.map((p) => ({ chunkId: p.row.chunkId, still: p.still })));
      if (packed.length === run.length) return packed;
      process.emitWarning(`memory store ${this.dir}: archive stills of segment ${segment} kept as they were: the packer returned ${packed.length} of ${run.length}`);
    } catch (error) {
      process.emitWarning(`memory store ${this.dir}: archive stills of segment ${segment} kept as they were: ${(error as Error).message}`);
    }
    return own;
  }

  /** Deletes old segment files whose rows have moved (no read can hold their locations now). */
  private unlinkOld(): void {
    const gone = this.unlinkWhenIdle;
    this.unlinkWhenIdle = [];
    for (const segment of gone) {
      this.readers.retire(segment);
      // No folder fsync (as retention): a file that reappears after a power loss is unreferenced, and recovery deletes it.
      fs.rmSync(segmentPath(this.dir, segment), { force: true });
    }
  }

  /** Before a demotion writes a record: retention makes room in the budget, the new file counted. */
  private roomForDemotion(length: number): void {
    const policy = this.retentionPolicy;
    if (policy?.budgetBytes === undefined) return;
    const r = this.retain(policy, this.otherBytes(policy) + length);
    if (r.removedChunkIds.length > 0) this.onChunksRemoved?.(r.removedChunkIds);
  }

  /** Starts background demotion when the budget is nearly full and an old full-dtype segment exists. */
  private scheduleDemotion(): void {
    if (this.demotionTask !== null || this.closing || this.closed || this.failure !== null || this.readOnly) return;
    if (this.nextDemotion() === null) return;
    this.demotionTask = (async () => {
      try {
        for (let next = this.nextDemotion(); next !== null && !this.closing; next = this.nextDemotion()) {
          if ((await this.demoteSegment(next.segment, next.target)) === null) break; // deferred (pins) or abandoned: retried after a later commit
        }
      } catch (e) {
        // Demotion is an optimisation: the budget still holds by deletion. Retried after the next commit.
        process.emitWarning(`memory store ${this.dir}: demotion failed: ${(e as Error).message}`);
      } finally {
        this.demotionTask = null;
      }
    })();
  }

  /** The segment demotion should rewrite now under the policy, and to what, or null (no budget, room enough, nothing old). */
  private nextDemotion(): { segment: number; target: DemotionTarget } | null {
    const policy = this.retentionPolicy;
    if (policy?.budgetBytes === undefined || policy.demote === false) return null;
    let segmentTotal = 0;
    for (const s of this.segments.values()) segmentTotal += s.fileBytes;
    if (segmentTotal + this.otherBytes(policy) + DEMOTION_HEADROOM_SEGMENTS * this.opts.segmentBytes <= policy.budgetBytes) return null;
    const pending = this.queue.pendingSegments();
    const pick = pickDemotion(
      this.manifest.segmentSummaries(),
      this.manifest.totals().tEnd,
      {
        keepFullSec: policy.keepFullSec ?? DEFAULT_KEEP_FULL_SEC,
        toKivi4: this.dtype !== DEMOTED_DTYPE,
        toArchive: policy.archive !== false,
        kvBytesLimit: (policy.kvShare ?? DEFAULT_KV_SHARE) * policy.budgetBytes,
        stillless: this.stillless,
      },
      (seg) => seg === this.active?.segment || seg === this.resumeSegment || pending.has(seg),
      (x) => this.segmentPinned(x.firstChunkId, x.lastChunkId),
    );
    return pick === null ? null : { segment: pick.segment.segment, target: pick.target };
  }

  /** Empties the RAM cache (the next reads go to disk). */
  clearCache(): void {
    this.cache.clear();
  }

  /** Chunk ids in the RAM cache, least recently used first. */
  cachedChunkIds(): number[] {
    return this.cache.keys();
  }

  /**
   * Commits pending appends, waits for reads in flight, fsyncs the open segment, marks the store
   * cleanly closed and releases the lock. Idempotent: every call returns the same promise; any use
   * after it fails with STORE_CLOSED.
   */
  dispose(): Promise<void> {
    this.closingPromise ??= this.closeOnce();
    return this.closingPromise;
  }

  get disposed(): boolean {
    return this.closingPromise !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    try {
      // A demotion in progress stops at its next slice (its new file is deleted; nothing moved).
      if (this.demotion !== null) this.demotion.aborted = true;
      await this.demotionTask;
      await this.demotionRun;
      await this.queue.flush();
      if (this.readsInFlight > 0) await new Promise<void>((r) => (this.readsIdle = r));
      let clean = this.failure === null;
      if (this.active !== null) {
        try {
          fs.fdatasyncSync(this.active.fd);
        } catch {
          clean = false;
        }
        fs.closeSync(this.active.fd);
        this.active = null;
      }
      // Everything is on disk now (whatever the policy), so the next open needs no payload check.
      let newest = 0;
      for (const segment of this.segments.keys()) if (segment > newest) newest = segment;
      if (clean && !this.readOnly) {
        try {
          this.manifest.endSession(newest);
        } catch (e) {
          // On a full disk the store just stays marked unclean: the next open checks a little more.
          if (!isNoSpace(e)) throw e;
        }
      }
    } finally {
      if (this.unlinkWhenIdle.length > 0) this.unlinkOld();
      this.readers.closeAll();
      this.manifest.dispose();
      this.releaseLock();
      this.closed = true;
    }
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed || this.closing) throw new VigilError('STORE_CLOSED', `memory store ${this.dir} is closed`);
  }

  private assertNotReadOnly(): void {
    if (this.readOnly) throw new VigilError('BAD_INPUT', `memory store ${this.dir} is open read-only`);
  }

  private assertWritable(): void {
    this.assertOpen();
    this.assertNotReadOnly();
    if (this.failure !== null) throw this.failure;
  }

  private fail(e: unknown): VigilError {
    if (this.failure === null) {
      this.failure =
        e instanceof VigilError
          ? e
          : new VigilError('STORE_IO', `memory store ${this.dir}: ${(e as Error).message}; no further appends`, { cause: e });
    }
    return this.failure;
  }

  /**
   * The segment the next record of `length` bytes goes to, rolling to a new one when full. On a
   * failure nothing is half done: no segment is active, and the next append tries again.
   */
  private segmentFor(length: number, archive: boolean): WritableSegment {
    if (this.active === null) {
      if (this.resumeSegment !== null) {
        const seg = openSegmentForAppend(this.dir, this.resumeSegment);
        try {
          // Records added here are not synced: recovery after a crash under 'none' must recheck it.
          this.manifest.lowerSyncedThrough(this.resumeSegment - 1);
        } catch (e) {
          fs.closeSync(seg.fd);
          throw e;
        }
        this.active = seg;
        this.resumeSegment = null;
      } else {
        this.active = this.newSegment();
      }
    }
    const seg = this.active;
    // A record larger than a whole segment still gets one of its own. Archived imports and KV
    // records do not share a segment: tiers (and demotion, and the horizon) go by segment.
    const tierChange = this.lastAppendArchived !== null && this.lastAppendArchived !== archive;
    this.lastAppendArchived = archive;
    if ((seg.size + length > this.opts.segmentBytes || tierChange) && seg.size > SEGMENT_HEADER_BYTES) {
      this.retire(seg);
      // The retired descriptor closes in the queue: never leave it active if the new segment fails.
      this.active = null;
      this.active = this.newSegment();
    }
    return this.active;
  }

  private newSegment(): WritableSegment {
    this.ioFault?.('segment-create');
    const seg = createSegment(this.dir, this.nextSegmentId);
    try {
      // The new file's directory entry must be durable before a committed row can point into it.
      if (this.fsync !== 'none') fsyncDir(this.dir);
    } catch (e) {
      fs.closeSync(seg.fd);
      fs.rmSync(segmentPath(this.dir, seg.segment), { force: true });
      throw e;
    }
    this.nextSegmentId++;
    this.segments.set(seg.segment, { fileBytes: seg.size });
    return seg;
  }

  /**
   * A full segment: commit what is pending in it (a roll forces a group commit), then fsync and
   * close it, and record that everything up to it is on disk. Queued, so it never runs under a
   * pending fsync of the same descriptor.
   */
  private retire(seg: WritableSegment): void {
    // Neither promise can reject: the queue routes task errors to onFailure (this.fail).
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- never rejects (CommitQueue.flush)
    void this.queue.flush();
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- never rejects (CommitQueue.enqueue)
    void this.queue.enqueue(async () => {
      try {
        await fdatasyncAsync(seg.fd);
        this.manifest.raiseSyncedThrough(seg.segment);
      } catch (e) {
        // Every committed row's payload was fsynced before it committed (or, under 'none', the
        // segment just stays "not known synced"): no space here costs nothing committed.
        if (!isNoSpace(e)) this.fail(e);
      } finally {
        fs.closeSync(seg.fd);
      }
    });
  }

  private writeRecord(seg: WritableSegment, rec: Buffer, length: number, offset: number): void {
    try {
      let done = 0;
      if (this.ioFault !== undefined) {
        // Half the record first, so an injected failure leaves a partial record to cut back.
        const half = length >> 1;
        while (done < half) done += fs.writeSync(seg.fd, rec, done, half - done, offset + done);
        this.ioFault('record-write');
      }
      while (done < length) done += fs.writeSync(seg.fd, rec, done, length - done, offset + done);
    } catch (e) {
      // Cut the partial record off so the segment ends at a record boundary again.
      try {
        fs.ftruncateSync(seg.fd, offset);
      } catch {
        throw this.fail(e);
      }
      throw classifyWriteError(this.dir, 'writing a chunk record', e, (x) =>
        new VigilError('STORE_IO', `memory store ${this.dir}: writing chunk record failed: ${(x as Error).message}`, { cause: x }),
      );
    }
  }

  /**
   * A group commit failed. No space: the batch is rejected with DISK_FULL and undone (ids free
   * again, its records cut off the active segment when they are its tail, else left as an
   * uncommitted tail or hole that no row points at); the store stays usable. After a failed fsync
   * the appends still pending in that segment go too: their pages may have shared the failed
   * writeback, so they could not be trusted to be on disk. Any other error: STORE_IO, no more
   * appends (fail()).
   */
  private commitFailed(e: unknown, stage: 'fsync' | 'commit', batch: PendingCommit[]): VigilError {
    if (!isNoSpace(e)) return this.fail(e);
    const error = diskFullError(this.dir, stage === 'fsync' ? 'syncing chunk records' : 'committing chunk rows', e);
    const undone = [...batch];
    if (stage === 'fsync') {
      const segments = new Set(batch.map((p) => p.row.segment));
      for (const p of this.queue.take((q) => segments.has(q.row.segment))) {
        undone.push(p);
        p.reject(error);
      }
    }
    const active = this.active;
    if (active !== null && !this.queue.hasPendingIn(active.segment)) {
      let from = Infinity;
      for (const p of undone) if (p.row.segment === active.segment && p.row.offset < from) from = p.row.offset;
      if (from < active.size) {
        try {
          fs.ftruncateSync(active.fd, from);
          active.size = from;
          this.segments.get(active.segment)!.fileBytes = from;
        } catch {
          // The records stay as an uncommitted tail; recovery cuts it at the next open.
        }
      }
    }
    // The undone ids may be appended again: the last id is the newest committed or still pending.
    const pendingId = this.queue.lastPendingId();
    const committedId = this.manifest.totals().lastChunkId;
    this.lastChunkId = pendingId ?? committedId;
    return error;
  }

  private afterCommit(): void {
    const policy = this.retentionPolicy;
    if (policy === undefined || this.closed) return;
    try {
      const r = this.retain(policy, policy.budgetBytes !== undefined ? this.otherBytes(policy) : 0);
      if (r.removedChunkIds.length > 0) this.onChunksRemoved?.(r.removedChunkIds);
    } catch (e) {
      // Retention is retried after the next commit; do not fail the appends that succeeded.
      process.emitWarning(`memory store ${this.dir}: retention failed: ${(e as Error).message}`);
    }
    this.scheduleDemotion();
  }

  private readDone(): void {
    this.readsInFlight--;
    if (this.readsInFlight === 0 && this.unlinkWhenIdle.length > 0) this.unlinkOld();
    if (this.readsInFlight === 0 && this.readsIdle !== null) {
      this.readsIdle();
      this.readsIdle = null;
    }
  }
}

/** The dtypes a segment holds bytes of (a segment's stats list only those). */
function nonZeroBytes(bytes: Readonly<Partial<Record<KvStorageDtype, number>>>): Partial<Record<KvStorageDtype, number>> {
  return Object.fromEntries(Object.entries(bytes).filter(([, b]) => b !== undefined && b > 0));
}
