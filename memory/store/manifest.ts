// The manifest: one SQLite database per stream (better-sqlite3, WAL). It is the commit point of
// the store: a chunk exists once its row is committed, and every row points at an intact record.
import Database from 'better-sqlite3';
import type { KvStorageDtype, RecordDtype } from '../frameChunk.js';
import type { ChunkGeometry, ChunkTimes, FsyncPolicy, StreamGap } from './types.js';
import { FORMAT_VERSION } from './recordFormat.js';
import { addRow, SegmentSummaries, type SegmentSummary, type StoreTotals } from './segmentSummary.js';

export const MANIFEST_FILE = 'manifest.sqlite';

/** One committed chunk (without its representative vectors). */
export interface ChunkLocation {
  chunkId: number;
  segment: number;
  offset: number;
  length: number;
  tStart: number;
  tEnd: number;
  wallTime: number;
  tokenCount: number;
  dtype: RecordDtype;
  checksum: number;
  payloadBytes: number;
  /**
   * CRC-32 of each layer's payload section (numLayers x u32, little-endian), so one layer can be
   * read and checked alone; null for rows written before the column existed (whole-record reads).
   */
  layerChecksums: Buffer | null;
}

export interface ChunkRow extends ChunkLocation {
  /** numLayers x (numKvHeads * headDim) float32, little-endian, layer-major. */
  representatives: Buffer;
}

export interface StreamMeta extends ChunkGeometry {
  formatVersion: number;
  dtype: KvStorageDtype;
  createdWall: number;
  cleanShutdown: boolean;
  sessionFsync: FsyncPolicy;
  /** Every committed record in segments <= this one is known to be on stable storage. */
  syncedThroughSegment: number;
}

// Column order matters for reads: SQLite stores a row's columns in table order and a row bigger
// than a page spills into a chain of overflow pages, so a column after the representatives (5.7 KiB,
// 22.5 KiB in older float32 rows, at smolvlm2-256m geometry) costs a walk of that chain (~17 us a row, 25 ms for the 1500 rows of
// an r = 64 question) even when the representatives are not selected. Stores created before this
// order have layer_checksums last (added by ALTER TABLE); they read the same, only slower.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS stream (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  format_version INTEGER NOT NULL,
  num_layers INTEGER NOT NULL,
  num_kv_heads INTEGER NOT NULL,
  head_dim INTEGER NOT NULL,
  dtype TEXT NOT NULL,
  created_wall INTEGER NOT NULL,
  clean_shutdown INTEGER NOT NULL,
  session_fsync TEXT NOT NULL,
  synced_through_segment INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
  chunk_id INTEGER PRIMARY KEY,
  segment_id INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  t_start REAL NOT NULL,
  t_end REAL NOT NULL,
  wall_time REAL NOT NULL,
  token_count INTEGER NOT NULL,
  dtype TEXT NOT NULL,
  checksum INTEGER NOT NULL,
  payload_bytes INTEGER NOT NULL,
  layer_checksums BLOB,
  representatives BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_segment ON chunks (segment_id, offset);
CREATE INDEX IF NOT EXISTS chunks_times ON chunks (chunk_id, t_start, t_end);
CREATE TABLE IF NOT EXISTS gaps (
  id INTEGER PRIMARY KEY,
  t_start REAL NOT NULL,
  t_end REAL NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_by_start ON gaps (t_start, t_end);
CREATE TABLE IF NOT EXISTS forgotten (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  t_end REAL NOT NULL,
  chunks INTEGER NOT NULL
);
`;

/**
 * What retention has deleted so far (the memory horizon's `forgottenBefore`): the newest deleted
 * chunk's end (stream s) and how many chunks went. One row, written in the transaction that
 * deletes the segments; absent until retention first deletes something (or in a store from before
 * the table existed).
 */
export interface ForgottenHistory {
  tEnd: number;
  chunks: number;
}

/** Rows per query of the narrow scans: small pages stay in V8's young generation (65536-row pages ran 3x slower). */
const SCAN_PAGE = 4096;

/** Doubling growth, so filling n rows copies O(n) elements in all. */
function grow<T extends Uint32Array | Float64Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  let n = Math.max(1024, a.length);
  while (n < need) n *= 2;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

// One row per segment holding committed chunks, written in the transactions that change its chunk
// rows, so stats and open never aggregate over the chunk rows. Created (and filled from the chunk
// rows, once) by the first writable open of a store made before it existed.
const SUMMARY_TABLE = `
CREATE TABLE segment_summaries (
  segment_id INTEGER PRIMARY KEY,
  chunk_count INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  bytes_float32 INTEGER NOT NULL,
  bytes_float16 INTEGER NOT NULL,
  bytes_int8 INTEGER NOT NULL,
  bytes_kivi4 INTEGER NOT NULL DEFAULT 0,
  bytes_archive INTEGER NOT NULL DEFAULT 0,
  first_chunk_id INTEGER NOT NULL,
  last_chunk_id INTEGER NOT NULL,
  t_start REAL NOT NULL,
  t_end REAL NOT NULL,
  committed_end INTEGER NOT NULL,
  wall_start REAL NOT NULL,
  wall_end REAL NOT NULL
)`;
const SUMMARY_COLUMN_LIST = `segment_id, chunk_count, bytes, bytes_float32, bytes_float16, bytes_int8, bytes_kivi4, bytes_archive, first_chunk_id, last_chunk_id,
  t_start, t_end, committed_end, wall_start, wall_end`;
/** The same facts computed from the chunk rows (migration, a segment that lost rows, old-store readers). */
const AGGREGATE_SELECT = `SELECT segment_id, COUNT(*), SUM(length),
  SUM(CASE WHEN dtype = 'float32' THEN length ELSE 0 END), SUM(CASE WHEN dtype = 'float16' THEN length ELSE 0 END),
  SUM(CASE WHEN dtype = 'int8' THEN length ELSE 0 END), SUM(CASE WHEN dtype = 'kivi4' THEN length ELSE 0 END),
  SUM(CASE WHEN dtype = 'archive' THEN length ELSE 0 END), MIN(chunk_id), MAX(chunk_id), MIN(t_start), MAX(t_end),
  MAX(offset + length), MIN(wall_time), MAX(wall_time) FROM chunks`;

/** A summary as one flat row (SUMMARY_COLUMN_LIST order). */
type SummaryTuple = [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number];

function fromTuple(r: SummaryTuple): SegmentSummary {
  return {
    segment: r[0],
    chunkCount: r[1],
    bytes: r[2],
    bytesByDtype: { float32: r[3], float16: r[4], int8: r[5], kivi4: r[6], archive: r[7] },
    firstChunkId: r[8],
    lastChunkId: r[9],
    tStart: r[10],
    tEnd: r[11],
    committedEnd: r[12],
    wallStart: r[13],
    wallEnd: r[14],
  };
}

function toTuple(s: SegmentSummary): SummaryTuple {
  const b = s.bytesByDtype;
  return [s.segment, s.chunkCount, s.bytes, b.float32, b.float16, b.int8, b.kivi4, b.archive, s.firstChunkId, s.lastChunkId, s.tStart, s.tEnd, s.committedEnd, s.wallStart, s.wallEnd];
}

const LOCATION_COLUMNS = `chunk_id AS chunkId, segment_id AS segment, offset, length, t_start AS tStart, t_end AS tEnd,
  wall_time AS wallTime, token_count AS tokenCount, dtype, checksum, payload_bytes AS payloadBytes, layer_checksums AS layerChecksums`;

export class Manifest {
  readonly db: Database.Database;
  /** RAM copy of segment_summaries (a writer's is authoritative; a reader's is refreshed by reload()). */
  readonly summaries = new SegmentSummaries();
  /** RAM copy of the `forgotten` row (null: retention never deleted anything here). */
  forgotten: ForgottenHistory | null = null;
  private readonly readOnly: boolean;
  private readonly insertStmt: Database.Statement;
  private readonly commitRows: (rows: ChunkRow[], summaries: SegmentSummary[]) => void;
  private upsertSummaryStmt: Database.Statement | undefined;
  private locationsStmt: Database.Statement | undefined;
  /** Whether chunks_times exists (a read-only open of an older store cannot create it). */
  private readonly hasTimesIndex: boolean;

  /** `readOnly`: a reader beside a live writer (WAL): no schema changes, no pragma writes, no writes at all. */
  constructor(path: string, durable: boolean, readOnly = false) {
    this.db = new Database(path, readOnly ? { readonly: true, fileMustExist: true } : {});
    this.readOnly = readOnly;
    if (readOnly) {
      this.insertStmt = this.db.prepare('SELECT 1');
      this.commitRows = () => {
        throw new Error('the manifest is open read-only');
      };
      this.hasTimesIndex = this.indexExists('chunks_times');
      this.reload();
      return;
    }
    this.db.pragma('journal_mode = WAL');
    // FULL: a commit is on disk when it returns (the WAL is fsynced), which is what "reported as
    // committed" promises. With fsync 'none' nothing is promised past a process crash: NORMAL.
    this.db.pragma(`synchronous = ${durable ? 'FULL' : 'NORMAL'}`);
    this.db.exec(SCHEMA);
    // Stores made before per-layer checksums existed: add the column (their rows keep NULL there).
    const columns = this.db.prepare('PRAGMA table_info(chunks)').all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === 'layer_checksums')) this.db.exec('ALTER TABLE chunks ADD COLUMN layer_checksums BLOB');
    this.insertStmt = this.db.prepare(
      `INSERT INTO chunks (chunk_id, segment_id, offset, length, t_start, t_end, wall_time, token_count, dtype,
        checksum, payload_bytes, representatives, layer_checksums)
       VALUES (@chunkId, @segment, @offset, @length, @tStart, @tEnd, @wallTime, @tokenCount, @dtype, @checksum,
        @payloadBytes, @representatives, @layerChecksums)`,
    );
    this.commitRows = this.db.transaction((rows: ChunkRow[], summaries: SegmentSummary[]) => {
      for (const r of rows) this.insertStmt.run(r);
      for (const x of summaries) this.upsertSummary(x);
    });
    this.hasTimesIndex = true;
    this.migrateSummaries();
    this.summaries.reset(this.loadSummaries());
    this.forgotten = this.loadForgotten();
    if (!this.summariesMatchRows()) {
      // Rows changed behind the table's back (a Vigil from before it wrote this store since): rebuild.
      this.db.transaction(() => {
        this.db.exec('DELETE FROM segment_summaries');
        this.db.exec(`INSERT INTO segment_summaries (${SUMMARY_COLUMN_LIST}) ${AGGREGATE_SELECT} GROUP BY segment_id`);
      })();
      this.summaries.reset(this.loadSummaries());
    }
  }

  private tableExists(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  }

  /**
   * A store made before segment_summaries: create and fill it in one transaction (one pass over the
   * chunk rows, a one-time cost), so a crash leaves either no table or a complete one.
   */
  private migrateSummaries(): void {
    if (this.tableExists('segment_summaries')) {
      // Tables made before dtypes 'kivi4' and 'archive' (no such rows could exist then, so 0 is exact).
      if (!this.summaryHasColumn('bytes_kivi4')) this.db.exec('ALTER TABLE segment_summaries ADD COLUMN bytes_kivi4 INTEGER NOT NULL DEFAULT 0');
      if (!this.summaryHasColumn('bytes_archive')) this.db.exec('ALTER TABLE segment_summaries ADD COLUMN bytes_archive INTEGER NOT NULL DEFAULT 0');
      return;
    }
    this.db.transaction(() => {
      this.db.exec(SUMMARY_TABLE);
      this.db.exec(`INSERT INTO segment_summaries (${SUMMARY_COLUMN_LIST}) ${AGGREGATE_SELECT} GROUP BY segment_id`);
    })();
  }

  private summaryHasColumn(name: string): boolean {
    return (this.db.prepare('PRAGMA table_info(segment_summaries)').all() as Array<{ name: string }>).some((c) => c.name === name);
  }

  private loadSummaries(): SegmentSummary[] {
    const rows = this.db.prepare(`SELECT ${SUMMARY_COLUMN_LIST} FROM segment_summaries ORDER BY segment_id`).raw().all() as SummaryTuple[];
    return rows.map(fromTuple);
  }

  private aggregateSummaries(segments?: readonly number[]): SegmentSummary[] {
    const rows = (
      segments === undefined
        ? this.db.prepare(`${AGGREGATE_SELECT} GROUP BY segment_id ORDER BY segment_id`).raw().all()
        : this.db
            .prepare(`${AGGREGATE_SELECT} WHERE segment_id IN (SELECT value FROM json_each(?)) GROUP BY segment_id ORDER BY segment_id`)
            .raw()
            .all(JSON.stringify(segments))
    ) as SummaryTuple[];
    return rows.map(fromTuple);
  }

  /**
   * Cheap check that the summaries describe the rows: the lowest and highest chunk ids (two rowid
   * seeks). Catches rows added or retention run by a Vigil that did not keep the table.
   */
  private summariesMatchRows(): boolean {
    const lo = this.db.prepare('SELECT chunk_id FROM chunks ORDER BY chunk_id LIMIT 1').pluck().get() as number | undefined;
    const hi = this.db.prepare('SELECT chunk_id FROM chunks ORDER BY chunk_id DESC LIMIT 1').pluck().get() as number | undefined;
    const t = this.summaries.totals();
    return (lo ?? null) === t.firstChunkId && (hi ?? null) === t.lastChunkId;
  }

  /**
   * A reader re-reads the summaries a writer may have changed since (O(segments)); from the chunk
   * rows only for a store no writer has migrated yet. A writer's RAM copy is current: no-op.
   */
  reload(): void {
    if (!this.readOnly) return;
    const read = this.db.transaction(() => {
      this.forgotten = this.loadForgotten();
      // A table without the newest columns (no writer since) is read through the rows, like no table.
      if (this.tableExists('segment_summaries') && this.summaryHasColumn('bytes_archive')) {
        this.summaries.reset(this.loadSummaries());
        if (this.summariesMatchRows()) return;
      }
      this.summaries.reset(this.aggregateSummaries());
    });
    // One read transaction: the table and the rows from the same commit.
    read();
  }

  /** The `forgotten` row; null without one (a reader of a store no writer has opened since the table existed). */
  private loadForgotten(): ForgottenHistory | null {
    if (this.readOnly && !this.tableExists('forgotten')) return null;
    return (this.db.prepare('SELECT t_end AS tEnd, chunks FROM forgotten WHERE id = 1').get() as ForgottenHistory | undefined) ?? null;
  }

  private upsertSummary(x: SegmentSummary): void {
    this.upsertSummaryStmt ??= this.db.prepare(
      `INSERT OR REPLACE INTO segment_summaries (${SUMMARY_COLUMN_LIST}) VALUES (${Array(15).fill('?').join(', ')})`,
    );
    this.upsertSummaryStmt.run(...toTuple(x));
  }

  private indexExists(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?").get(name) !== undefined;
  }

  /**
   * The table scan source of the narrow reads: the covering index chunks_times, whose pages hold
   * only (id, t_start, t_end); the table's leaf pages also hold each row's first ~0.5-4 KB of
   * representatives, so scanning them reads ~100x the bytes.
   */
  private get timesSource(): string {
    return this.hasTimesIndex ? 'chunks INDEXED BY chunks_times' : 'chunks';
  }

  /** Every committed chunk id, ascending, read a page at a time from the covering index. */
  chunkIds(): Uint32Array {
    const stmt = this.db.prepare(`SELECT chunk_id FROM ${this.timesSource} WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?`).pluck();
    let ids = new Uint32Array(0);
    let n = 0;
    let after = -1;
    for (;;) {
      const page = stmt.all(after, SCAN_PAGE) as number[];
      if (page.length === 0) break;
      ids = grow(ids, n + page.length);
      for (const id of page) ids[n++] = id;
      after = page[page.length - 1]!;
      if (page.length < SCAN_PAGE) break;
    }
    return ids.slice(0, n);
  }

  /** Every committed chunk's times in id order, from the covering index (no representatives). */
  chunkTimes(): ChunkTimes {
    const stmt = this.db.prepare(`SELECT chunk_id, t_start, t_end FROM ${this.timesSource} WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?`).raw();
    let ids = new Uint32Array(0);
    let tStart = new Float64Array(0);
    let tEnd = new Float64Array(0);
    let n = 0;
    let after = -1;
    for (;;) {
      const page = stmt.all(after, SCAN_PAGE) as Array<[number, number, number]>;
      if (page.length === 0) break;
      ids = grow(ids, n + page.length);
      tStart = grow(tStart, n + page.length);
      tEnd = grow(tEnd, n + page.length);
      for (const r of page) {
        ids[n] = r[0];
        tStart[n] = r[1];
        tEnd[n] = r[2];
        n++;
      }
      after = page[page.length - 1]![0];
      if (page.length < SCAN_PAGE) break;
    }
    return { ids: ids.slice(0, n), tStart: tStart.slice(0, n), tEnd: tEnd.slice(0, n) };
  }

  readMeta(): StreamMeta | undefined {
    const r = this.db.prepare('SELECT * FROM stream WHERE id = 1').get() as Record<string, unknown> | undefined;
    if (r === undefined) return undefined;
    return {
      formatVersion: Number(r.format_version),
      numLayers: Number(r.num_layers),
      numKvHeads: Number(r.num_kv_heads),
      headDim: Number(r.head_dim),
      dtype: r.dtype as KvStorageDtype,
      createdWall: Number(r.created_wall),
      cleanShutdown: Number(r.clean_shutdown) === 1,
      sessionFsync: JSON.parse(String(r.session_fsync)) as FsyncPolicy,
      syncedThroughSegment: Number(r.synced_through_segment),
    };
  }

  createMeta(geometry: ChunkGeometry, dtype: KvStorageDtype, fsync: FsyncPolicy): void {
    this.db
      .prepare(
        `INSERT INTO stream (id, format_version, num_layers, num_kv_heads, head_dim, dtype, created_wall, clean_shutdown,
          session_fsync, synced_through_segment) VALUES (1, ?, ?, ?, ?, ?, ?, 1, ?, 0)`,
      )
      .run(FORMAT_VERSION, geometry.numLayers, geometry.numKvHeads, geometry.headDim, dtype, Date.now(), JSON.stringify(fsync));
  }

  /** Marks a session open (unclean until close) under the given fsync policy. */
  beginSession(fsync: FsyncPolicy): void {
    this.db.prepare('UPDATE stream SET clean_shutdown = 0, session_fsync = ? WHERE id = 1').run(JSON.stringify(fsync));
  }

  endSession(syncedThroughSegment: number): void {
    this.db
      .prepare('UPDATE stream SET clean_shutdown = 1, synced_through_segment = max(synced_through_segment, ?) WHERE id = 1')
      .run(syncedThroughSegment);
  }

  /** Every committed record up to this segment is now fsynced. */
  raiseSyncedThrough(segment: number): void {
    this.db
      .prepare('UPDATE stream SET synced_through_segment = max(synced_through_segment, ?) WHERE id = 1')
      .run(segment);
  }

  /** Appends are about to resume in segment + 1, which is therefore no longer known to be synced. */
  lowerSyncedThrough(segment: number): void {
    this.db
      .prepare('UPDATE stream SET synced_through_segment = min(synced_through_segment, ?) WHERE id = 1')
      .run(segment);
  }

  /** Commits rows and their segments' summaries in one transaction (all or none). */
  insert(rows: ChunkRow[]): void {
    const changed = new Map<number, SegmentSummary>();
    for (const r of rows) changed.set(r.segment, addRow(changed.get(r.segment) ?? this.summaries.get(r.segment), r));
    this.commitRows(rows, [...changed.values()]);
    // Only once committed: a failed transaction leaves the RAM copy as the table is.
    this.summaries.grew(changed.values());
  }

  /** Locations for the given ids, without representatives; missing ids are simply absent. */
  locationsByIds(ids: readonly number[]): ChunkLocation[] {
    this.locationsStmt ??= this.db.prepare(`SELECT ${LOCATION_COLUMNS} FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?))`);
    return this.locationsStmt.all(JSON.stringify(ids)) as ChunkLocation[];
  }

  /** Rows for the given ids, representatives included; missing ids are simply absent. */
  rowsByIds(ids: readonly number[]): ChunkRow[] {
    return this.db
      .prepare(`SELECT ${LOCATION_COLUMNS}, representatives FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?))`)
      .all(JSON.stringify(ids)) as ChunkRow[];
  }

  /** Rows for the given ids (at most a few hundred: one query), representatives included, ascending id. */
  rowsByIdsOrdered(ids: readonly number[]): ChunkRow[] {
    return this.db
      .prepare(
        `SELECT ${LOCATION_COLUMNS}, representatives FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?)) ORDER BY chunk_id`,
      )
      .all(JSON.stringify(ids)) as ChunkRow[];
  }

  /** All locations, by segment then offset. */
  allLocations(): ChunkLocation[] {
    return this.db.prepare(`SELECT ${LOCATION_COLUMNS} FROM chunks ORDER BY segment_id, offset`).all() as ChunkLocation[];
  }

  locationsInSegments(segments: readonly number[]): ChunkLocation[] {
    return this.db
      .prepare(
        `SELECT ${LOCATION_COLUMNS} FROM chunks WHERE segment_id IN (SELECT value FROM json_each(?)) ORDER BY segment_id, offset`,
      )
      .all(JSON.stringify(segments)) as ChunkLocation[];
  }

  /** Page of rows in id order after `afterId`, for rebuilding indices from representatives. */
  rowsPage(afterId: number, limit: number): ChunkRow[] {
    return this.db
      .prepare(`SELECT ${LOCATION_COLUMNS}, representatives FROM chunks WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?`)
      .all(afterId, limit) as ChunkRow[];
  }

  /** Segments holding committed chunks, ascending (RAM; a reader calls reload() first for fresh ones). */
  segmentSummaries(): SegmentSummary[] {
    return this.summaries.list();
  }

  totals(): StoreTotals {
    return this.summaries.totals();
  }

  /**
   * Deletes the rows and summaries of whole segments in one transaction, with the gaps that end
   * before every chunk still stored; returns the removed chunk ids.
   */
  deleteSegments(segments: readonly number[]): number[] {
    const json = JSON.stringify(segments);
    const gone = new Set(segments);
    // The oldest kept chunk's start, from the summaries: MIN(t_start) over the rows is a full scan.
    let keptFrom: number | null = null;
    for (const s of this.summaries.list()) if (!gone.has(s.segment) && (keptFrom === null || s.tStart < keptFrom)) keptFrom = s.tStart;
    // The horizon's record of what was forgotten, from the rows deleted (the truth, whatever the
    // summaries say): their count and newest end. O(rows deleted).
    let forgotten = this.forgotten;
    const ids = this.db.transaction(() => {
      const removed = this.db
        .prepare('SELECT chunk_id FROM chunks WHERE segment_id IN (SELECT value FROM json_each(?)) ORDER BY chunk_id')
        .pluck()
        .all(json) as number[];
      if (removed.length > 0) {
        const newestEnd = this.db.prepare('SELECT MAX(t_end) FROM chunks WHERE segment_id IN (SELECT value FROM json_each(?))').pluck().get(json) as number;
        forgotten = { tEnd: Math.max(forgotten?.tEnd ?? -Infinity, newestEnd), chunks: (forgotten?.chunks ?? 0) + removed.length };
      }
      this.db.prepare('DELETE FROM chunks WHERE segment_id IN (SELECT value FROM json_each(?))').run(json);
      this.db.prepare('DELETE FROM segment_summaries WHERE segment_id IN (SELECT value FROM json_each(?))').run(json);
      if (keptFrom !== null) this.db.prepare('DELETE FROM gaps WHERE t_end < ?').run(keptFrom);
      if (forgotten !== null) this.db.prepare('INSERT OR REPLACE INTO forgotten (id, t_end, chunks) VALUES (1, ?, ?)').run(forgotten.tEnd, forgotten.chunks);
      return removed;
    })();
    this.summaries.shrank([], segments);
    // Only once committed, as the summaries.
    this.forgotten = forgotten;
    return ids;
  }

  /**
   * Demotion's commit point: moves rows from segment `from` to their rewritten records in segment
   * `to` (location, dtype, checksums, payload bytes; times and representatives stay), and replaces
   * both segments' summaries, in one transaction. A row no longer in `from` (dropped since) is
   * skipped. Returns the number of rows moved and how many rows are left in `from` (0 normally).
   */
  moveRows(from: number, to: number, rows: readonly ChunkLocation[]): { moved: number; left: number } {
    const update = this.db.prepare(
      `UPDATE chunks SET segment_id = @segment, offset = @offset, length = @length, dtype = @dtype, checksum = @checksum,
        payload_bytes = @payloadBytes, layer_checksums = @layerChecksums WHERE chunk_id = @chunkId AND segment_id = @from`,
    );
    let changed: SegmentSummary[] = [];
    let emptied: number[] = [];
    const moved = this.db.transaction(() => {
      let n = 0;
      for (const r of rows) n += update.run({ ...r, from }).changes;
      changed = this.aggregateSummaries([from, to]);
      const left = new Set(changed.map((x) => x.segment));
      emptied = [from, to].filter((x) => !left.has(x));
      for (const x of changed) this.upsertSummary(x);
      this.db.prepare('DELETE FROM segment_summaries WHERE segment_id IN (SELECT value FROM json_each(?))').run(JSON.stringify(emptied));
      return n;
    })();
    this.summaries.shrank(changed, emptied);
    return { moved, left: this.summaries.get(from)?.chunkCount ?? 0 };
  }

  /**
   * Deletes rows by id, and recomputes the summaries of their segments from the rows left, in one
   * transaction; returns the ids that existed.
   */
  deleteChunks(ids: readonly number[]): number[] {
    const json = JSON.stringify(ids);
    let changed: SegmentSummary[] = [];
    let emptied: number[] = [];
    const found = this.db.transaction(() => {
      const rows = this.db
        .prepare('SELECT chunk_id, segment_id FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?)) ORDER BY chunk_id')
        .raw()
        .all(json) as Array<[number, number]>;
      if (rows.length === 0) return [];
      this.db.prepare('DELETE FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?))').run(json);
      const segments = [...new Set(rows.map((r) => r[1]))];
      changed = this.aggregateSummaries(segments);
      const left = new Set(changed.map((x) => x.segment));
      emptied = segments.filter((x) => !left.has(x));
      for (const x of changed) this.upsertSummary(x);
      this.db.prepare('DELETE FROM segment_summaries WHERE segment_id IN (SELECT value FROM json_each(?))').run(JSON.stringify(emptied));
      return rows.map((r) => r[0]);
    })();
    if (found.length > 0) this.summaries.shrank(changed, emptied);
    return found;
  }

  /**
   * Raises one chunk's t_end (never lowers it) and, when that moves its segment's end, the segment
   * summary's, in one transaction: a crash leaves the old span or the new one. False when no row has
   * this id. (Frame gating: a gated frame extends the newest chunk's span.)
   */
  extendChunk(chunkId: number, tEnd: number): boolean {
    let grown: SegmentSummary | undefined;
    const found = this.db.transaction(() => {
      const segment = this.db.prepare('SELECT segment_id FROM chunks WHERE chunk_id = ?').pluck().get(chunkId) as number | undefined;
      if (segment === undefined) return false;
      this.db.prepare('UPDATE chunks SET t_end = max(t_end, ?) WHERE chunk_id = ?').run(tEnd, chunkId);
      const summary = this.summaries.get(segment);
      if (summary !== undefined && tEnd > summary.tEnd) {
        grown = { ...summary, tEnd };
        this.upsertSummary(grown);
      }
      return true;
    })();
    // Only once committed, as insert() does.
    if (grown !== undefined) this.summaries.grew([grown]);
    return found;
  }

  /** One chunk's times from the covering index (no representatives read); undefined when absent. */
  chunkSpan(chunkId: number): { tStart: number; tEnd: number } | undefined {
    return this.db.prepare(`SELECT t_start AS tStart, t_end AS tEnd FROM ${this.timesSource} WHERE chunk_id = ?`).get(chunkId) as { tStart: number; tEnd: number } | undefined;
  }

  insertGap(gap: StreamGap): void {
    this.db.prepare('INSERT INTO gaps (t_start, t_end, reason) VALUES (?, ?, ?)').run(gap.tStart, gap.tEnd, gap.reason);
  }

  /** Gaps overlapping [from, to] (ends included), by start time, at most `limit` (-1: all). */
  gaps(from: number, to: number, limit: number): StreamGap[] {
    return this.db
      .prepare('SELECT t_start AS tStart, t_end AS tEnd, reason FROM gaps WHERE t_start <= ? AND t_end >= ? ORDER BY t_start, id LIMIT ?')
      .all(to, from, limit) as StreamGap[];
  }

  /** Closes the database. Idempotent. */
  dispose(): void {
    if (this.db.open) this.db.close();
  }

  get disposed(): boolean {
    return !this.db.open;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
