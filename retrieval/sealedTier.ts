// The sealed tier of a stream index: every block sealed so far (sealedBlock.ts), which of their
// chunks are still live, and the search over them. RAM per chunk is the list centroids' share
// (int8, about dim / listChunks bytes per layer) plus one liveness bit; the representatives stay on
// disk and are read list by list for the lists a query's centroids rank first.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dotRowsInt16, dotRowsInt8, INT16_DOT_MAX_DIM, quantizeQueryInt16 } from '../kernels/int8Rows.js';
import { prefetchRanges } from '../kernels/native.js';
import { topK } from '../kernels/topk.js';
import { isVigilError } from '../common/errors.js';
import type { ChunkFilter } from './chunkCatalog.js';
import type { Hits } from './hits.js';
import { IdBitSet } from './idBitSet.js';
import { normalizeRows, readRange, SealedBlock, type BlockMembers, type ListRows } from './sealedBlock.js';
import type { SimilaritySpace } from './space.js';
import { searchId } from './sortedIds.js';

export interface SealedTierOptions {
  dir: string;
  numLayers: number;
  dim: number;
  space: SimilaritySpace;
  /** Lists read per layer and query before the search may stop (more if fewer than k chunks were found). */
  probeLists: number;
}

/** How a save records one block: its file and the chunks removed from it since it was sealed. */
export interface SealedListing {
  file: string;
  dead: number[];
}

interface Entry {
  name: string;
  block: SealedBlock;
  live: number;
  /** Member ids removed since sealing, kept for the next save's listing. */
  dead: number[];
}

/** Where a search's time went (bench/sealed-profile.ts sets `SealedTier.profile` to collect it). */
export interface SealedProfile {
  searches: number;
  /** Scoring every list centroid. */
  centroidMs: number;
  /** Choosing the lists to read (top centroids). */
  orderMs: number;
  /** Reading the chosen lists (syscalls, checksums). */
  readMs: number;
  /** Scoring the lists' members and collecting live ones. */
  scoreMs: number;
  /** Ranking the collected members (top k). */
  mergeMs: number;
  /** Looking up the hits' start times (startTimes, once per retrieval). */
  timesMs: number;
  listsRead: number;
}

export function emptyProfile(): SealedProfile {
  return { searches: 0, centroidMs: 0, orderMs: 0, readMs: 0, scoreMs: 0, mergeMs: 0, timesMs: 0, listsRead: 0 };
}

/** Whether batch reads are announced to the OS first (VIGIL_SEALED_PREFETCH=0 turns it off, for benchmarks). */
const PREFETCH = process.env.VIGIL_SEALED_PREFETCH !== '0';

/** Member tables kept for reuse (time filters and result times read them). */
const MEMBER_CACHE = 64;
/**
 * Block files kept open between searches. A question reads lists of most blocks (every layer
 * probes ~96 lists of its own), and opening and closing a file costs about as much as reading a
 * list, so a month of blocks (~1,300) should stay open; at EMFILE the cache is halved and the open
 * retried.
 */
const OPEN_FILES = 2048;

export const BLOCK_PREFIX = 'block-';

/** Which block and list each row of a centroid table is (the same for every layer). */
interface SharedTable {
  version: number;
  /** The blocks when the table was built; owner indexes this array. */
  entries: Entry[];
  /** Rows of entries[i] are [entryStart[i], entryStart[i + 1]). */
  entryStart: Int32Array;
  owner: Int32Array;
  listOf: Int32Array;
}

/** One layer's centroids of every block, row after row as in SharedTable. */
interface CentroidTable extends SharedTable {
  codes: Int8Array;
  scales: Float32Array;
}

/** Members a search collected: ids and scores in typed arrays that grow and are reused. */
class Collected {
  ids = new Uint32Array(8192);
  scores = new Float64Array(8192);
  count = 0;

  reserve(n: number): void {
    if (this.count + n <= this.ids.length) return;
    const size = Math.max(this.count + n, this.ids.length * 2);
    const ids = new Uint32Array(size);
    const scores = new Float64Array(size);
    ids.set(this.ids.subarray(0, this.count));
    scores.set(this.scores.subarray(0, this.count));
    this.ids = ids;
    this.scores = scores;
  }
}

/**
 * The k best of n (id, score) pairs in any order, ranked as rankHits ranks them (higher score
 * first, equal scores by lower id), without sorting them all: topK selects k by score, then the
 * pairs tied with the k-th score are settled by id.
 */
export function rankCollected(ids: Uint32Array, scores: Float64Array, n: number, k: number): Hits {
  const kk = Math.min(k, n);
  if (kk <= 0) return { ids: [], scores: [] };
  const top = topK(scores.subarray(0, n), kk);
  const kth = top.values[kk - 1]!;
  const picked: number[] = [];
  for (let j = 0; j < kk; j++) if (top.values[j]! > kth) picked.push(top.indices[j]!);
  const tied: number[] = [];
  for (let i = 0; i < n; i++) if (scores[i] === kth) tied.push(i);
  tied.sort((a, b) => ids[a]! - ids[b]!);
  for (let j = 0; picked.length < kk; j++) picked.push(tied[j]!);
  picked.sort((a, b) => scores[b]! - scores[a]! || ids[a]! - ids[b]!);
  return { ids: picked.map((i) => ids[i]!), scores: picked.map((i) => scores[i]!) };
}

export function blockFileName(firstId: number, token: string): string {
  return `${BLOCK_PREFIX}${String(firstId).padStart(10, '0')}-${token}.bin`;
}

export class SealedTier {
  private entries: Entry[] = [];
  private readonly live = new IdBitSet();
  /** Files of blocks with no live chunk left: deleted once a save no longer lists them. */
  private retired: string[] = [];
  private readonly memberCache = new Map<string, BlockMembers>();
  private readonly fds = new Map<string, number>();
  private scratch = new Float64Array(256);
  /** Bumped whenever the blocks change: the centroid tables are rebuilt on the next search. */
  private version = 0;
  private sharedTable: SharedTable | undefined;
  private readonly tables: (CentroidTable | undefined)[] = [];
  /** Per-search scratch, reused: centroid scores, the int16 query, collected members, read buffer. */
  private centroidScores = new Float64Array(0);
  private readonly query16: Int16Array;
  private readonly collected = new Collected();
  private readBuffer = new Uint8Array(64 * 1024);
  private warming = false;
  private disposed = false;
  /** List reads that failed their checksum (their chunks were skipped). */
  damagedReads = 0;
  /** Whether two blocks' id ranges overlap (see entryOf). */
  private overlapping = false;
  /** When set, searches add where their time went (benchmarks only). */
  profile: SealedProfile | undefined;

  private constructor(readonly options: SealedTierOptions) {
    this.query16 = new Int16Array(options.dim);
  }

  static create(options: SealedTierOptions): SealedTier {
    mkdirSync(options.dir, { recursive: true });
    return new SealedTier(options);
  }

  /**
   * The blocks a save listed, with their removed chunks. A listed block that is missing or fails
   * its checks is left out and named in `unusable` (its chunks are then missing from the index,
   * which reconciliation with the store puts back); files no save lists are deleted.
   */
  static load(options: SealedTierOptions, listing: readonly SealedListing[], { deleteOrphans = true } = {}): { tier: SealedTier; unusable: string[] } {
    const tier = deleteOrphans ? SealedTier.create(options) : new SealedTier(options);
    const unusable: string[] = [];
    const listed = new Set(listing.map((l) => l.file));
    if (deleteOrphans && existsSync(options.dir)) for (const name of readdirSync(options.dir)) if (!listed.has(name)) rmSync(join(options.dir, name), { force: true, recursive: true });
    for (const item of listing) {
      const file = join(options.dir, item.file);
      let block: SealedBlock;
      try {
        if (!existsSync(file)) throw new Error('missing');
        block = SealedBlock.open(file, options);
      } catch (error) {
        unusable.push(`${item.file}: ${isVigilError(error) || error instanceof Error ? error.message : String(error)}`);
        continue;
      }
      const entry: Entry = { name: item.file, block, live: 0, dead: [] };
      const dead = new Set(item.dead);
      for (const id of tier.members(entry).ids) {
        if (dead.has(id)) entry.dead.push(id);
        else if (tier.live.add(id)) entry.live++;
      }
      if (entry.live === 0) tier.retired.push(item.file);
      else tier.entries.push(entry);
    }
    tier.entries.sort((a, b) => a.block.header.firstId - b.block.header.firstId);
    tier.checkOverlap();
    return { tier, unusable };
  }

  get size(): number {
    return this.live.size;
  }

  get blockCount(): number {
    return this.entries.length;
  }

  /** RAM held for the blocks (centroids, list tables, liveness bits), for stats. */
  get ramBytes(): number {
    return this.entries.reduce((s, e) => s + e.block.ramBytes, 0) + Math.ceil((this.live.max() ?? 0) / 8);
  }

  has(id: number): boolean {
    return this.live.has(id);
  }

  idsBetween(from: number, to: number): Uint32Array {
    return this.live.between(from, to);
  }

  minId(): number | undefined {
    return this.live.min();
  }

  maxId(): number | undefined {
    return this.live.max();
  }

  /** Takes a block written and fsynced at `name`; `gone` are its chunks removed while it was built. */
  addBlock(name: string, gone: ReadonlySet<number>): void {
    const block = SealedBlock.open(join(this.options.dir, name), this.options);
    const entry: Entry = { name, block, live: 0, dead: [] };
    for (const id of this.members(entry).ids) {
      if (gone.has(id)) entry.dead.push(id);
      else if (this.live.add(id)) entry.live++;
    }
    if (entry.live === 0) {
      this.retired.push(name);
      return;
    }
    const at = this.entries.findIndex((e) => e.block.header.firstId > block.header.firstId);
    if (at < 0) this.entries.push(entry);
    else this.entries.splice(at, 0, entry);
    this.checkOverlap();
  }

  private checkOverlap(): void {
    this.version++;
    this.warmTables();
    this.overlapping = this.entries.some((e, i) => i > 0 && e.block.header.firstId <= this.entries[i - 1]!.block.header.lastId);
  }

  /** Removes the live ids among `ids`; returns those removed. */
  remove(ids: Iterable<number>): number[] {
    const removed: number[] = [];
    for (const id of ids) {
      if (!this.live.has(id)) continue;
      const entry = this.entryOf(id);
      this.live.delete(id);
      removed.push(id);
      if (!entry) continue;
      entry.live--;
      entry.dead.push(id);
    }
    if (removed.length > 0) {
      const emptied = this.entries.filter((e) => e.live === 0);
      if (emptied.length > 0) {
        this.entries = this.entries.filter((e) => e.live > 0);
        this.checkOverlap();
        for (const e of emptied) {
          this.retired.push(e.name);
          this.memberCache.delete(e.name);
          this.closeFile(e.name);
        }
      }
    }
    return removed;
  }

  /** What a save records: every block with live chunks, and the chunks removed from each. */
  listing(): SealedListing[] {
    return this.entries.map((e) => ({ file: e.name, dead: e.dead.slice().sort((a, b) => a - b) }));
  }

  /** Files of blocks with no live chunk left, handed over (a save deletes them once it no longer lists them). */
  takeRetired(): string[] {
    const names = this.retired;
    this.retired = [];
    return names;
  }

  /** Gives retired files back (the save that was to drop them failed). */
  keepRetired(names: readonly string[]): void {
    for (const name of names) this.retired.push(name);
  }

  deleteFiles(names: readonly string[]): void {
    for (const name of names) rmSync(join(this.options.dir, name), { force: true });
  }

  /** Live chunks passing the filter: exact (partially covered blocks read their member times). */
  countPassing(filter: ChunkFilter): number {
    const range = filter.timeRange;
    let count = 0;
    if (!range) count = this.live.size;
    else {
      for (const e of this.entries) {
        const h = e.block.header;
        if (h.tMax < range.start || h.tMin > range.end) continue;
        if (h.tMin >= range.start && h.tMax <= range.end) {
          count += e.live;
          continue;
        }
        const m = this.members(e);
        for (let i = 0; i < m.ids.length; i++) if (this.live.has(m.ids[i]!) && !(m.tEnd[i]! < range.start || m.tStart[i]! > range.end)) count++;
      }
    }
    if (filter.exclude) for (const id of filter.exclude) if (this.live.has(id) && this.passesRange(id, range)) count--;
    return count;
  }

  /**
   * The k best live chunks of one layer passing the filter, by int8 scores: the lists whose
   * centroids score best are read first; after probeLists lists the search stops once it holds k.
   */
  search(layer: number, query: Float32Array, k: number, filter: ChunkFilter): Hits {
    const { dim, space } = this.options;
    let q = query;
    if (space === 'cosine') {
      q = query.slice();
      normalizeRows(q, 1, dim);
    }
    const range = filter.timeRange;
    const prof = this.profile;
    let t0 = prof ? performance.now() : 0;
    const lap = (key: 'centroidMs' | 'orderMs' | 'readMs' | 'scoreMs' | 'mergeMs' | 'timesMs'): void => {
      if (!prof) return;
      const t = performance.now();
      prof[key] += t - t0;
      t0 = t;
    };
    const table = this.table(layer);
    const total = table.owner.length;
    // Every list's centroid, ranked by one int16-query scan of the layer's whole table; a block
    // outside the time range scores -Infinity and is never read.
    if (this.centroidScores.length < total) this.centroidScores = new Float64Array(total);
    const centroidScores = this.centroidScores.subarray(0, total);
    // The int16 scan needs dim <= 516 (its int32 sums); wider vectors take the float64 one.
    const qScale = dim <= INT16_DOT_MAX_DIM ? quantizeQueryInt16(q, dim, this.query16) : 0;
    const rank = (from: number, rows: number): void => {
      if (dim <= INT16_DOT_MAX_DIM) dotRowsInt16(table.codes, table.scales, from, rows, dim, this.query16, qScale, centroidScores.subarray(from, from + rows));
      else dotRowsInt8(table.codes, table.scales, from, rows, dim, q, centroidScores.subarray(from, from + rows));
    };
    let inRange = total;
    if (!range) rank(0, total);
    else {
      inRange = 0;
      for (let e = 0; e < table.entries.length; e++) {
        const h = table.entries[e]!.block.header;
        const from = table.entryStart[e]!;
        const to = table.entryStart[e + 1]!;
        if (h.tMax < range.start || h.tMin > range.end) centroidScores.fill(-Infinity, from, to);
        else {
          rank(from, to - from);
          inRange += to - from;
        }
      }
    }
    lap('centroidMs');
    const first = Math.min(total, Math.max(this.options.probeLists * 2, 16));
    const top = first > 0 ? topK(centroidScores, first).indices : new Int32Array(0);
    lap('orderMs');
    const collected = this.collected;
    collected.count = 0;
    const damaged = new Set<Entry>();
    const scoreList = (entry: Entry, rows: ListRows): void => {
      const n = rows.ids.length;
      const scores = this.scores(n);
      dotRowsInt8(rows.codes, rows.scales, 0, n, dim, q, scores);
      const h = entry.block.header;
      const partial = range !== undefined && !(h.tMin >= range.start && h.tMax <= range.end);
      const members = partial ? this.members(entry) : undefined;
      collected.reserve(n);
      for (let i = 0; i < n; i++) {
        const id = rows.ids[i]!;
        if (!this.live.has(id) || filter.exclude?.has(id)) continue;
        if (members) {
          const m = searchId(members.ids, members.ids.length, id);
          if (members.tEnd[m]! < range!.start || members.tStart[m]! > range!.end) continue;
        }
        // Quantized unit vectors can score a hair above 1; a cosine stays in [-1, 1].
        const score = space === 'cosine' ? Math.max(-1, Math.min(1, scores[i]!)) : scores[i]!;
        collected.ids[collected.count] = id;
        collected.scores[collected.count++] = score;
      }
    };
    const damage = (entry: Entry, error: unknown): void => {
      // One damaged list must not fail every question: the whole block leaves the index (its
      // member table was checked at open), so counts stay exact; the next open's
      // reconciliation with the store indexes those chunks again.
      if (!isVigilError(error) || error.code !== 'INDEX_CORRUPT') throw error;
      this.damagedReads++;
      damaged.add(entry);
      process.emitWarning(`stream index: ${error.message}; the block's chunks leave the index until it is reconciled with the store`);
      this.remove(this.members(entry).ids);
    };
    // The best probeLists lists first, all read in one pass: sorted by file and offset, lists
    // adjacent in a file merged into one read, into one reused buffer.
    const batch: number[] = [];
    let t = 0;
    for (; t < top.length && batch.length < this.options.probeLists; t++) if (centroidScores[top[t]!] !== -Infinity) batch.push(top[t]!);
    this.readBatch(layer, batch, table, scoreList, damage, damaged);
    let probed = batch.length;
    // (readBatch splits its time between readMs and scoreMs itself.)
    if (prof) t0 = performance.now();
    // Then one list at a time until k members are found (a filter that excludes most chunks).
    if (collected.count < k && probed < inRange) {
      const rest = (function* (): Generator<number> {
        for (; t < top.length; t++) yield top[t]!;
        if (top.length === total) return;
        const seen = new Uint8Array(total);
        for (const i of top) seen[i] = 1;
        const others = Array.from({ length: total }, (_, i) => i).filter((i) => seen[i] === 0);
        others.sort((a, b) => centroidScores[b]! - centroidScores[a]! || a - b);
        yield* others;
      })();
      for (const i of rest) {
        if (collected.count >= k) break;
        if (centroidScores[i] === -Infinity) continue;
        probed++;
        this.readBatch(layer, [i], table, scoreList, damage, damaged);
      }
    }
    if (prof) t0 = performance.now();
    const best = rankCollected(collected.ids, collected.scores, collected.count, k);
    lap('mergeMs');
    if (prof) {
      prof.searches++;
      prof.listsRead += probed;
    }
    return best;
  }

  /**
   * The start times of live sealed chunks (a retrieval orders its results by time): per block one
   * read of the span of its tStart table that covers the ids asked (blocks whose ids run without
   * gaps, i.e. every block a stream seals), else its member table. Ids no longer live are left out.
   */
  startTimes(ids: Iterable<number>): Map<number, number> {
    const prof = this.profile;
    const t0 = prof ? performance.now() : 0;
    const byEntry = new Map<Entry, number[]>();
    for (const id of ids) {
      const entry = this.live.has(id) ? this.entryOf(id) : undefined;
      if (!entry) continue;
      const list = byEntry.get(entry);
      if (list) list.push(id);
      else byEntry.set(entry, [id]);
    }
    const out = new Map<number, number>();
    for (const [entry, wanted] of byEntry) {
      const h = entry.block.header;
      const cached = this.memberCache.get(entry.name);
      if (cached || h.lastId - h.firstId + 1 !== h.count) {
        const m = this.members(entry);
        for (const id of wanted) out.set(id, m.tStart[searchId(m.ids, m.ids.length, id)]!);
        continue;
      }
      // Ascending unique ids from firstId to lastId without a gap: id's row is id - firstId.
      let lo = Infinity;
      let hi = -Infinity;
      for (const id of wanted) {
        lo = Math.min(lo, id - h.firstId);
        hi = Math.max(hi, id - h.firstId);
      }
      const times = entry.block.startTimes(this.fd(entry), lo, hi - lo + 1);
      for (const id of wanted) out.set(id, times[id - h.firstId - lo]!);
    }
    if (prof) prof.timesMs += performance.now() - t0;
    return out;
  }

  /**
   * Reads the lists at table positions `positions` (any order) and hands each, checked, to
   * `score`: sorted by block and offset, adjacent lists of a block in one read.
   */
  private readBatch(layer: number, positions: readonly number[], table: CentroidTable, score: (entry: Entry, rows: ListRows) => void, damage: (entry: Entry, error: unknown) => void, damaged: Set<Entry>): void {
    const entries = table.entries;
    const spans = positions
      .map((i) => {
        const entry = entries[table.owner[i]!]!;
        const list = table.listOf[i]!;
        return { entry, list, ...entry.block.listSpan(layer, list) };
      })
      .filter((s) => !damaged.has(s.entry))
      .sort((a, b) => a.entry.block.header.firstId - b.entry.block.header.firstId || (a.entry === b.entry ? a.offset - b.offset : a.entry.name < b.entry.name ? -1 : 1));
    if (PREFETCH && spans.length > 1) {
      // Every read of the batch in flight at once (a page-cache hint): from a cold cache the reads
      // below then wait on one device round trip, not one each (~5x faster on the dev VM).
      const fds = new Int32Array(spans.length);
      const offsets = new Float64Array(spans.length);
      const lengths = new Float64Array(spans.length);
      spans.forEach((s, i) => {
        fds[i] = this.fd(s.entry);
        offsets[i] = s.offset;
        lengths[i] = s.bytes;
      });
      prefetchRanges(fds, offsets, lengths);
    }
    for (let i = 0; i < spans.length; ) {
      // A run of lists of one block, each starting where the previous one ends in the file.
      const entry = spans[i]!.entry;
      let j = i + 1;
      while (j < spans.length && spans[j]!.entry === entry && spans[j]!.offset === spans[j - 1]!.offset + spans[j - 1]!.bytes) j++;
      const length = spans[j - 1]!.offset + spans[j - 1]!.bytes - spans[i]!.offset;
      if (this.readBuffer.length < length) this.readBuffer = new Uint8Array(Math.max(length, this.readBuffer.length * 2));
      // Scored before the next read reuses the buffer.
      const buffer = this.readBuffer;
      const prof = this.profile;
      let t0 = prof ? performance.now() : 0;
      try {
        readRange(this.fd(entry), buffer, 0, length, spans[i]!.offset, entry.block.file);
      } catch (error) {
        damage(entry, error);
        i = j;
        continue;
      }
      for (let m = i; m < j; m++) {
        const s = spans[m]!;
        if (damaged.has(entry)) break;
        let rows: ListRows;
        try {
          rows = entry.block.viewList(layer, s.list, buffer, s.offset - spans[i]!.offset);
        } catch (error) {
          damage(entry, error);
          break;
        }
        if (prof) {
          const t1 = performance.now();
          prof.readMs += t1 - t0;
          score(entry, rows);
          t0 = performance.now();
          prof.scoreMs += t0 - t1;
        } else score(entry, rows);
      }
      if (prof) prof.readMs += performance.now() - t0;
      i = j;
    }
  }

  /** int8 scores of live sealed ids on one layer, in the given order (shared retrieval's sums). */
  scoreIds(layer: number, query: Float32Array, ids: ArrayLike<number>): Float64Array {
    let q = query;
    if (this.options.space === 'cosine') {
      q = query.slice();
      normalizeRows(q, 1, this.options.dim);
    }
    const out = new Float64Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const entry = this.entryOf(ids[i]!);
      if (!entry || !this.live.has(ids[i]!)) throw new Error(`SealedTier.scoreIds: chunk ${ids[i]} is not sealed`);
      out[i] = entry.block.scoreId(this.fd(entry), layer, ids[i]!, q);
    }
    return out;
  }

  /** Closes the block files and drops caches. */
  dispose(): void {
    this.disposed = true;
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.memberCache.clear();
  }

  private passesRange(id: number, range: ChunkFilter['timeRange']): boolean {
    if (!range) return true;
    const entry = this.entryOf(id);
    if (!entry) return false;
    const m = this.members(entry);
    const i = searchId(m.ids, m.ids.length, id);
    return i >= 0 && !(m.tEnd[i]! < range.start || m.tStart[i]! > range.end);
  }

  private entryOf(id: number): Entry | undefined {
    // Ranges overlap only when a chunk older than a sealed block was indexed late (reconciliation
    // put back a row): then ranges do not identify the block, its member table does.
    if (this.overlapping) {
      for (const entry of this.entries) {
        const h = entry.block.header;
        if (id < h.firstId || id > h.lastId) continue;
        const m = this.members(entry);
        if (searchId(m.ids, m.ids.length, id) >= 0) return entry;
      }
      return undefined;
    }
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const h = this.entries[mid]!.block.header;
      if (id < h.firstId) hi = mid - 1;
      else if (id > h.lastId) lo = mid + 1;
      else return this.entries[mid];
    }
    return undefined;
  }

  private members(entry: Entry): BlockMembers {
    const cached = this.memberCache.get(entry.name);
    if (cached) {
      // Refresh its place: the cache drops the least recently used first.
      this.memberCache.delete(entry.name);
      this.memberCache.set(entry.name, cached);
      return cached;
    }
    const members = entry.block.members(this.fd(entry));
    this.memberCache.set(entry.name, members);
    if (this.memberCache.size > MEMBER_CACHE) this.memberCache.delete(this.memberCache.keys().next().value!);
    return members;
  }

  /** An open descriptor of the block's file, from a small LRU (a search touches tens of blocks). */
  private fd(entry: Entry): number {
    let fd = this.fds.get(entry.name);
    if (fd !== undefined) {
      this.fds.delete(entry.name);
    } else {
      try {
        fd = openSync(entry.block.file, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EMFILE' || this.fds.size === 0) throw error;
        this.closeOldest(Math.ceil(this.fds.size / 2));
        fd = openSync(entry.block.file, 'r');
      }
      if (this.fds.size >= OPEN_FILES) this.closeOldest(1);
    }
    this.fds.set(entry.name, fd);
    return fd;
  }

  private closeOldest(count: number): void {
    for (const [name, fd] of this.fds) {
      if (count-- <= 0) break;
      this.fds.delete(name);
      closeSync(fd);
    }
  }

  private closeFile(name: string): void {
    const fd = this.fds.get(name);
    if (fd === undefined) return;
    this.fds.delete(name);
    closeSync(fd);
  }

  /**
   * Rebuilds the centroid tables after the blocks changed, one layer per event-loop turn, so a
   * question after a seal or a removal does not pay for it (~2-3 ms a layer at 30 days). A search
   * that comes first builds its layer itself.
   */
  private warmTables(): void {
    if (this.warming || this.disposed) return;
    this.warming = true;
    let layer = 0;
    const step = (): void => {
      if (this.disposed) {
        this.warming = false;
        return;
      }
      if (this.entries.length > 0) this.table(layer);
      layer++;
      if (layer < this.options.numLayers) setImmediate(step).unref();
      else {
        this.warming = false;
        // Changed again while warming: go round once more.
        if (this.tables.some((t) => t !== undefined && t.version !== this.version)) this.warmTables();
      }
    };
    setImmediate(step).unref();
  }

  /**
   * The centroids of every block's lists on one layer, in one table (block after block, in entry
   * order), rebuilt when the blocks change. The blocks' own centroid arrays become views of it, so
   * the RAM is held once; one kernel call then scores them all.
   */
  private table(layer: number): CentroidTable {
    let shared = this.sharedTable;
    if (!shared || shared.version !== this.version) {
      const entries = this.entries.slice();
      const entryStart = new Int32Array(entries.length + 1);
      entries.forEach((e, i) => (entryStart[i + 1] = entryStart[i]! + e.block.header.lists));
      const total = entryStart[entries.length]!;
      const owner = new Int32Array(total);
      const listOf = new Int32Array(total);
      entries.forEach((e, i) => {
        for (let list = 0; list < e.block.header.lists; list++) {
          owner[entryStart[i]! + list] = i;
          listOf[entryStart[i]! + list] = list;
        }
      });
      shared = { version: this.version, entries, entryStart, owner, listOf };
      this.sharedTable = shared;
    }
    const have = this.tables[layer];
    if (have && have.version === shared.version) return have;
    const { dim } = this.options;
    const total = shared.owner.length;
    const codes = new Int8Array(total * dim);
    const scales = new Float32Array(total);
    shared.entries.forEach((entry, i) => {
      const at = entry.block.layers[layer]!;
      const from = shared.entryStart[i]!;
      const lists = entry.block.header.lists;
      codes.set(at.centroidCodes, from * dim);
      scales.set(at.centroidScales, from);
      at.centroidCodes = codes.subarray(from * dim, (from + lists) * dim);
      at.centroidScales = scales.subarray(from, from + lists);
    });
    const table: CentroidTable = { ...shared, codes, scales };
    this.tables[layer] = table;
    return table;
  }

  private scores(n: number): Float64Array {
    if (this.scratch.length < n) this.scratch = new Float64Array(Math.max(n, this.scratch.length * 2));
    return this.scratch;
  }
}
