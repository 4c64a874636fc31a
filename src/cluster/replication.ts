// Replicated memory (issue 18): one stream folder copied asynchronously to a JetStream object
// store bucket, so another node can restore the stream's memory after a failover (restoreStream,
// replicationRestore.ts). docs/memory-store.md, "Replication", has the design and the figures.
//
// Each snapshot: the manifest's online backup, the committed byte ranges of the segments it
// references, the saved index and its sealed blocks; then the replication manifest, written last
// (a snapshot is complete once it is in the bucket). Everything is cut into pieces of at most
// `pieceBytes`, named by their SHA-256, so unchanged bytes are never sent twice: a sealed segment
// goes once, the segment being appended to sends only its new bytes, the manifest backup only its
// changed pieces. Objects no longer referenced by the newest two manifests are deleted (deletions by
// retention and demotion are mirrored one snapshot later; the one kept behind lets a restore that
// read the previous manifest finish).
//
// Ingest never waits for any of this: the replicator only reads the stream's files (a read-only
// SQLite connection, file reads) on its own timer. At most one snapshot exists at a time; a failed
// upload (NATS slow or down) is retried with backoff, and every retry takes a fresh snapshot, so
// the newest state supersedes what was pending.
import os from 'node:os';
import path from 'node:path';
import { open } from 'node:fs/promises';
import type Database from 'better-sqlite3';
import type { ObjectStore } from 'nats';
import { isVigilError, VigilError } from '../../common/errors.js';
import { checkStreamId } from '../engine/dataLayout.js';
import { listNames, putPiece, sha256Hex, withTimeout } from './objectStoreFiles.js';
import {
  type FilePiece,
  manifestObject,
  parseReplicationManifest,
  pieceObject,
  type RecoveryPoint,
  referencedObjects,
  REPLICATION_FORMAT,
  REPLICATION_VERSION,
  type ReplicatedFile,
  type ReplicationManifest,
} from './replicationManifest.js';
import { captureSnapshot, dataVersion, disposeSnapshot, type LocalSnapshot, newestChunk, oldestWallTime, openManifestReader, type SegmentExtent, type WholeFile } from './replicationSnapshot.js';
import { streamIndexDir } from '../engine/dataLayout.js';
import { stat } from 'node:fs/promises';

export { restoreStream, REPLICATION_GAP_REASON, type RestoreOptions, type RestoreReport } from './replicationRestore.js';
export type { RecoveryPoint, ReplicationManifest } from './replicationManifest.js';

export interface StreamReplicatorOptions {
  bucket: ObjectStore;
  streamId: string;
  /** The stream's folder (kv/, index/, index-blocks/). */
  dir: string;
  /** A snapshot at most this often, seconds; default 10. */
  intervalSec?: number;
  /** Largest object, bytes; default 4 MiB. */
  pieceBytes?: number;
  /** Where manifest backups and index copies are made; default the OS temp folder. */
  tempDir?: string;
  /** Backoff after a failed upload: first wait and cap, ms; default 1,000 and 30,000. */
  retryMs?: { initial?: number; max?: number };
  /** A failed snapshot, for the owner's log (the replicator keeps going). */
  onError?: (error: Error) => void;
  /**
   * Called before each snapshot's manifest is written (the commit point of a snapshot): throws when
   * this node may no longer write the stream (a cluster node's lease fence), so an owner that lost
   * its lease never replaces the new owner's snapshot. Default: none.
   */
  beforeCommit?: () => Promise<void>;
}

export interface ReplicationStatus {
  streamId: string;
  /** The newest chunk in the last complete snapshot (null: none yet). */
  recoveryPoint: RecoveryPoint | null;
  /**
   * Seconds of wall time a failover now would lose: 0 when the last snapshot holds the newest
   * committed chunk, else now minus the recovery point's wall time (the oldest chunk's when no
   * snapshot completed yet).
   */
  lagSec: number;
  /** Completed snapshots since start, and the bucket's snapshot number. */
  snapshots: number;
  seq: number | null;
  lastSnapshotAt: number | null;
  /** Bytes of the last snapshot sent (new pieces only) and how long it took end to end. */
  lastSnapshotBytes: number;
  lastSnapshotMs: number;
  /** Piece bytes sent since start, and per second of wall time since start. */
  bytesUploaded: number;
  bytesPerSec: number;
  /** Failed attempts in a row (0 once one succeeds) and the last error's message. */
  failures: number;
  lastError: string | null;
}

const DEFAULT_INTERVAL_SEC = 10;
const DEFAULT_PIECE_BYTES = 4 << 20;
/**
 * Pieces of the manifest backup: a commit touches a few B-tree pages (new rows at the end, their
 * index entries, the header), so smaller pieces send less of a large manifest again.
 */
const MANIFEST_PIECE_BYTES = 256 << 10;
/** Small tail pieces of a growing segment are merged this many at a time (bounded object count). */
const MERGE_FANOUT = 8;
/** Snapshots start at least this many of the last snapshot's durations apart (a 10% duty cycle at most). */
const SNAPSHOT_DUTY_FACTOR = 10;
/** Pieces sent side by side. */
const UPLOADS_IN_FLIGHT = 4;
/** When nothing changed at the due time, look again this often. */
const IDLE_CHECK_MS = 1000;
/** Reads through consumers (the manifest, the listing) give up after this long (the client has no timeout for them). */
const READ_TIMEOUT_MS = 30_000;
/** A snapshot whose files moved under it (retention, demotion) is retaken at once, this often at most. */
const STALE_RETRIES = 3;

interface SegmentPiece extends FilePiece {
  /** 0: one snapshot's delta; n: a merge of MERGE_FANOUT level n-1 pieces; Infinity: a full piece (never merged). */
  level: number;
}

interface SegmentState {
  end: number;
  pieces: SegmentPiece[];
}

/** A file of the snapshot that moved under it (its next snapshot is taken at once). */
class StaleSnapshot extends Error {}

export class StreamReplicator {
  private readonly intervalMs: number;
  private readonly pieceBytes: number;
  private readonly tempDir: string;
  private readonly retryInitial: number;
  private readonly retryMax: number;
  private readonly startedAt = Date.now();
  private db: Database.Database | null = null;
  private disposed = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private forced: Array<{ resolve: (s: ReplicationStatus) => void; reject: (e: Error) => void }> = [];
  /** The bucket's state as this replicator knows it (loaded once, from the bucket, at the first attempt). */
  private remoteLoaded = false;
  private readonly remote = new Set<string>();
  private current: ReplicationManifest | null = null;
  private previous: ReplicationManifest | null = null;
  /** Pieces of the last complete snapshot: segments by id, sealed blocks by path. */
  private segments = new Map<number, SegmentState>();
  private immutableFiles = new Map<string, FilePiece[]>();
  private lastChange = '';
  private handingOver = false;
  private lastStart = -Infinity;
  private readonly stats = { snapshots: 0, lastSnapshotAt: null as number | null, lastSnapshotBytes: 0, lastSnapshotMs: 0, bytesUploaded: 0, failures: 0, lastError: null as string | null };

  constructor(private readonly options: StreamReplicatorOptions) {
    checkStreamId(options.streamId);
    this.intervalMs = (options.intervalSec ?? DEFAULT_INTERVAL_SEC) * 1000;
    this.pieceBytes = options.pieceBytes ?? DEFAULT_PIECE_BYTES;
    this.tempDir = options.tempDir ?? os.tmpdir();
    this.retryInitial = options.retryMs?.initial ?? 1000;
    this.retryMax = options.retryMs?.max ?? 30_000;
    if (!(this.intervalMs > 0) || !Number.isFinite(this.intervalMs)) throw new VigilError('BAD_CONFIG', `replication intervalSec must be a positive number, got ${options.intervalSec}`);
    if (!Number.isSafeInteger(this.pieceBytes) || this.pieceBytes < 4096) throw new VigilError('BAD_CONFIG', `replication pieceBytes must be an integer >= 4096, got ${options.pieceBytes}`);
  }

  /** Starts the background loop (returns at once; nothing here waits for NATS). */
  start(): this {
    // run() handles its own failures; this only keeps a bug there from becoming an unhandled rejection.
    this.loop ??= this.run().catch((error: unknown) => this.options.onError?.(error instanceof Error ? error : new Error(String(error))));
    return this;
  }

  /** Takes a snapshot now (ignoring the interval) and resolves once it is complete in the bucket, or rejects with why it failed. */
  snapshotNow(options: { handOver?: boolean } = {}): Promise<ReplicationStatus> {
    // A hand-over's snapshot (ingest already stopped) holds all the owner stored: its manifest says so.
    if (options.handOver) this.handingOver = true;
    if (this.disposed) return Promise.reject(new VigilError('DISPOSED', 'this replicator has been disposed'));
    this.start();
    const done = new Promise<ReplicationStatus>((resolve, reject) => this.forced.push({ resolve, reject }));
    this.wake?.();
    return done;
  }

  status(): ReplicationStatus {
    const rp = this.current?.recoveryPoint ?? null;
    return {
      streamId: this.options.streamId,
      recoveryPoint: rp,
      lagSec: this.lagSec(rp),
      snapshots: this.stats.snapshots,
      seq: this.current?.seq ?? null,
      lastSnapshotAt: this.stats.lastSnapshotAt,
      lastSnapshotBytes: this.stats.lastSnapshotBytes,
      lastSnapshotMs: this.stats.lastSnapshotMs,
      bytesUploaded: this.stats.bytesUploaded,
      bytesPerSec: this.stats.bytesUploaded / Math.max(1e-3, (Date.now() - this.startedAt) / 1000),
      failures: this.stats.failures,
      lastError: this.stats.lastError,
    };
  }

  /** Stops the loop (an upload in flight finishes or fails first); the bucket keeps the last snapshot. */
  async dispose(): Promise<void> {
    this.disposed = true;
    this.wake?.();
    await this.loop;
    for (const f of this.forced.splice(0)) f.reject(new VigilError('DISPOSED', 'this replicator has been disposed'));
    this.db?.close();
    this.db = null;
  }

  private lagSec(rp: RecoveryPoint | null): number {
    let db: Database.Database | null;
    try {
      db = this.reader();
    } catch {
      // The manifest cannot be read here now: the replica's age is the lag, as if newer chunks existed.
      return rp === null ? 0 : Math.max(0, (Date.now() - rp.wallTime) / 1000);
    }
    if (db === null) return 0;
    const newest = newestChunk(db);
    if (newest === null || (rp !== null && newest.chunkId <= rp.chunkId)) return 0;
    const since = rp?.wallTime ?? oldestWallTime(db) ?? Date.now();
    return Math.max(0, (Date.now() - since) / 1000);
  }

  private reader(): Database.Database | null {
    this.db ??= openManifestReader(this.options.dir);
    return this.db;
  }

  private async run(): Promise<void> {
    let backoff = this.retryInitial;
    while (!this.disposed) {
      const forced = this.forced.length > 0;
      // A snapshot reads the whole manifest (its online backup): as the manifest grows (weeks of
      // history) snapshots are spaced so that taking them stays under a tenth of the time.
      const spacing = Math.max(this.intervalMs, SNAPSHOT_DUTY_FACTOR * this.stats.lastSnapshotMs);
      const wait = forced ? 0 : Math.max(0, this.lastStart + spacing - Date.now());
      if (wait > 0) {
        await this.sleep(wait);
        continue;
      }
      let change: string | null;
      try {
        change = await this.changeKey();
      } catch (error) {
        // The manifest could not be opened (a folder being created or removed): counted as a failed attempt below.
        change = `unreadable: ${(error as Error).message}`;
      }
      if (!forced && (change === null || change === this.lastChange)) {
        await this.sleep(IDLE_CHECK_MS);
        continue;
      }
      this.lastStart = Date.now();
      const waiting = this.forced.splice(0);
      try {
        if (change === null) throw new VigilError('FILE_NOT_FOUND', `stream ${this.options.streamId}: no manifest to replicate yet`);
        await this.replicateOnce();
        this.lastChange = change;
        this.stats.failures = 0;
        this.stats.lastError = null;
        backoff = this.retryInitial;
        const status = this.status();
        for (const w of waiting) w.resolve(status);
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        this.stats.failures++;
        this.stats.lastError = err.message;
        for (const w of waiting) w.reject(err);
        this.options.onError?.(err);
        if (!this.disposed) await this.sleep(backoff);
        backoff = Math.min(this.retryMax, backoff * 2);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  /** What would make a new snapshot differ: the manifest's data version and the saved index folder. */
  private async changeKey(): Promise<string | null> {
    const db = this.reader();
    if (db === null) return null;
    let index = 'none';
    try {
      const s = await stat(path.join(streamIndexDir(this.options.dir), 'index.json'));
      index = `${s.ino}:${s.mtimeMs}`;
    } catch {
      // no saved index
    }
    return `${dataVersion(db)}|${index}`;
  }

  private async replicateOnce(): Promise<void> {
    const db = this.reader();
    if (db === null) throw new VigilError('FILE_NOT_FOUND', `stream ${this.options.streamId}: no manifest to replicate yet`);
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      const snapshot = await captureSnapshot(db, this.options.dir, this.tempDir);
      try {
        const sent = await this.upload(snapshot);
        this.stats.snapshots++;
        this.stats.lastSnapshotAt = snapshot.takenAt;
        this.stats.lastSnapshotBytes = sent;
        this.stats.lastSnapshotMs = performance.now() - started;
        return;
      } catch (error) {
        if (!(error instanceof StaleSnapshot) || attempt + 1 >= STALE_RETRIES) throw error;
      } finally {
        await disposeSnapshot(snapshot);
      }
    }
  }

  private async upload(snapshot: LocalSnapshot): Promise<number> {
    const { bucket, streamId } = this.options;
    // The first contact also tells whether NATS answers before any piece is queued in the client.
    if (!this.remoteLoaded) await this.loadRemote(snapshot.storeCreated);
    else await bucket.info(manifestObject(streamId));
    if (this.current !== null && this.current.storeCreated !== snapshot.storeCreated) this.forgetStore();
    const sender = new PieceSender(bucket, streamId, this.remote, this.pieceBytes);
    // What this snapshot sent, kept for the next one only once it is complete (a failed piece must not be reused).
    const segments = new Map<number, SegmentState>();
    const immutable = new Map<string, FilePiece[]>();
    const files: ReplicatedFile[] = [await sender.wholeFile('kv/manifest.sqlite', snapshot.manifestCopy, Math.min(this.pieceBytes, MANIFEST_PIECE_BYTES))];
    for (const segment of snapshot.segments) files.push(await this.segmentFile(sender, segment, segments));
    for (const file of snapshot.indexFiles) files.push(await this.indexFile(sender, file, immutable));
    await sender.drain();
    const manifest: ReplicationManifest = {
      format: REPLICATION_FORMAT,
      version: REPLICATION_VERSION,
      streamId,
      seq: (this.current?.seq ?? 0) + 1,
      takenAt: snapshot.takenAt,
      storeCreated: snapshot.storeCreated,
      recoveryPoint: snapshot.recoveryPoint,
      files,
      ...(this.handingOver ? { handedOver: true } : {}),
    };
    await this.options.beforeCommit?.();
    await bucket.putBlob({ name: manifestObject(streamId) }, Buffer.from(JSON.stringify(manifest)));
    this.previous = this.current;
    this.current = manifest;
    this.segments = segments;
    this.immutableFiles = immutable;
    this.stats.bytesUploaded += sender.bytes;
    await this.collectGarbage();
    return sender.bytes;
  }

  /** Deletes objects neither of the newest two manifests references (a failure is retried after the next snapshot). */
  private async collectGarbage(): Promise<void> {
    const keep = referencedObjects(this.current!);
    if (this.previous) for (const name of referencedObjects(this.previous)) keep.add(name);
    for (const name of [...this.remote]) {
      if (keep.has(name)) continue;
      try {
        await this.options.bucket.delete(name);
        this.remote.delete(name);
      } catch {
        // kept in `remote`: tried again after the next snapshot
      }
    }
  }

  /**
   * The bucket's last manifest of this stream and the objects under its prefix (once per
   * replicator). Pieces of the same store are reused: segments whose files still hold their bytes
   * (the last piece of each is checked against its SHA-256: only a segment's tail can change,
   * cut back by recovery and appended again), sealed blocks by name.
   */
  private async loadRemote(storeCreated: number): Promise<void> {
    const { bucket, streamId } = this.options;
    const text = await withTimeout(bucket.getBlob(manifestObject(streamId)), READ_TIMEOUT_MS, `reading the replication manifest of ${streamId}`);
    for (const name of await listNames(bucket, `${streamId}/piece/`, READ_TIMEOUT_MS)) this.remote.add(name);
    if (text !== null) {
      const manifest = parseReplicationManifest(Buffer.from(text).toString('utf8'), streamId);
      this.current = manifest;
      if (manifest.storeCreated === storeCreated) {
        for (const file of manifest.files) {
          const segment = /^kv\/seg-(\d+)\.kvseg$/.exec(file.path);
          if (segment) {
            if (await this.tailMatches(file)) this.segments.set(Number(segment[1]), { end: file.size, pieces: file.pieces.map((p) => ({ ...p, level: Infinity })) });
          } else if (file.path.startsWith('index-blocks/')) {
            this.immutableFiles.set(file.path, file.pieces);
          }
        }
      }
    }
    this.remoteLoaded = true;
  }

  private async tailMatches(file: ReplicatedFile): Promise<boolean> {
    const last = file.pieces.at(-1);
    if (last === undefined) return true;
    try {
      const data = await readRange(path.join(this.options.dir, file.path), last.offset, last.size);
      return sha256Hex(data) === last.sha256;
    } catch {
      return false;
    }
  }

  /** Another store under the same stream id (deleted and created again): nothing of the old one is reused. */
  private forgetStore(): void {
    this.segments = new Map();
    this.immutableFiles = new Map();
  }

  /** A segment's committed bytes: the pieces already sent, plus its new bytes (small tail pieces merged MERGE_FANOUT at a time). */
  private async segmentFile(sender: PieceSender, extent: SegmentExtent, sent: Map<number, SegmentState>): Promise<ReplicatedFile> {
    let state = this.segments.get(extent.segment);
    // Shorter than what was sent: recovery cut it back; its bytes past the cut may differ now.
    // A piece the bucket lost (deleted by hand) is sent again with the whole segment.
    if (state === undefined || state.end > extent.committedEnd || !state.pieces.every((p) => this.remote.has(p.object))) state = { end: 0, pieces: [] };
    if (state.end < extent.committedEnd) {
      const pieces = state.pieces.slice();
      let start = state.end;
      let level = 0;
      for (;;) {
        const tail = pieces.slice(-(MERGE_FANOUT - 1));
        if (tail.length < MERGE_FANOUT - 1 || !tail.every((p) => p.level === level) || extent.committedEnd - tail[0]!.offset > this.pieceBytes) break;
        pieces.length -= tail.length;
        start = tail[0]!.offset;
        level++;
      }
      const source = path.join(this.options.dir, extent.path);
      for (let offset = start; offset < extent.committedEnd; offset += this.pieceBytes) {
        const size = Math.min(this.pieceBytes, extent.committedEnd - offset);
        let data: Buffer;
        try {
          data = await readRange(source, offset, size);
        } catch (error) {
          throw new StaleSnapshot(`${extent.path} moved under the snapshot: ${(error as Error).message}`);
        }
        const piece = await sender.send(data, offset);
        pieces.push({ ...piece, level: size === this.pieceBytes ? Infinity : level });
      }
      state = { end: extent.committedEnd, pieces };
    }
    sent.set(extent.segment, state);
    return { path: extent.path, size: state.end, pieces: state.pieces.map(({ level: _level, ...p }) => p) };
  }

  private async indexFile(sender: PieceSender, file: WholeFile, sent: Map<string, FilePiece[]>): Promise<ReplicatedFile> {
    const known = file.immutable ? this.immutableFiles.get(file.path) : undefined;
    if (known && known.every((p) => this.remote.has(p.object))) {
      sent.set(file.path, known);
      return { path: file.path, size: known.reduce((n, p) => n + p.size, 0), pieces: known };
    }
    let replicated: ReplicatedFile;
    try {
      replicated = await sender.wholeFile(file.path, file.source);
    } catch (error) {
      if (isVigilError(error) || !file.immutable) throw error;
      throw new StaleSnapshot(`${file.path} moved under the snapshot: ${(error as Error).message}`);
    }
    if (file.immutable) sent.set(file.path, replicated.pieces);
    return replicated;
  }
}

/** Reads `size` bytes at `offset`; a file shorter than that is an error. */
async function readRange(file: string, offset: number, size: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const data = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(data, done, size - done, offset + done);
      if (bytesRead === 0) throw new Error(`${file} ends at ${offset + done}, expected ${offset + size} bytes`);
      done += bytesRead;
    }
    return data;
  } finally {
    await handle.close();
  }
}

/**
 * Sends pieces named by their SHA-256, skipping those the bucket holds, up to UPLOADS_IN_FLIGHT at
 * a time; `drain()` waits for all and throws the first failure.
 */
class PieceSender {
  bytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(
    private readonly bucket: ObjectStore,
    private readonly streamId: string,
    private readonly remote: Set<string>,
    private readonly pieceBytes: number,
  ) {}

  async send(data: Buffer, offset: number): Promise<FilePiece> {
    const sha256 = sha256Hex(data);
    const object = pieceObject(this.streamId, sha256);
    if (!this.remote.has(object)) {
      while (this.inFlight.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.inFlight);
      this.throwFailure();
      this.remote.add(object);
      const put = putPiece(this.bucket, object, data, sha256).then(
        () => {
          this.bytes += data.length;
        },
        (error: unknown) => {
          this.remote.delete(object);
          this.failure ??= error;
        },
      );
      const tracked = put.finally(() => this.inFlight.delete(tracked));
      this.inFlight.add(tracked);
    }
    return { object, offset, size: data.length, sha256 };
  }

  async wholeFile(relative: string, source: string, pieceBytes = this.pieceBytes): Promise<ReplicatedFile> {
    const { size } = await stat(source);
    const pieces: FilePiece[] = [];
    for (let offset = 0; offset < size; offset += pieceBytes) pieces.push(await this.send(await readRange(source, offset, Math.min(pieceBytes, size - offset)), offset));
    return { path: relative, size, pieces };
  }

  async drain(): Promise<void> {
    await Promise.all([...this.inFlight]);
    this.throwFailure();
  }

  private throwFailure(): void {
    if (this.failure !== null) throw this.failure instanceof Error ? this.failure : new Error(String(this.failure));
  }
}
