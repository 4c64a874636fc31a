// The sealed tier of a stream index: every block sealed so far (sealedBlock.ts), which of their
// chunks are still live, and the search over them. RAM per chunk is the list centroids' share
// (int8, about dim / listChunks bytes per layer) plus one liveness bit; the representatives stay on
// disk and are read list by list for the lists a query's centroids rank first.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dotRowsInt8 } from '../kernels/int8Rows.js';
import { topK } from '../kernels/topk.js';
import { isVigilError } from '../common/errors.js';
import type { ChunkFilter } from './chunkCatalog.js';
import type { Hits } from './hits.js';
import { rankHits } from './hits.js';
import { IdBitSet } from './idBitSet.js';
import { normalizeRows, SealedBlock, type BlockMembers, type ListRows } from './sealedBlock.js';
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

/** A layer's hits plus the start time of each hit (the index orders results by time). */
export interface SealedHits extends Hits {
  tStart: Map<number, number>;
}

/** Member tables kept for reuse (time filters and result times read them). */
const MEMBER_CACHE = 64;
/** Block files kept open between searches. */
const OPEN_FILES = 128;

export const BLOCK_PREFIX = 'block-';

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
  /** List reads that failed their checksum (their chunks were skipped). */
  damagedReads = 0;
  /** Whether two blocks' id ranges overlap (see entryOf). */
  private overlapping = false;

  private constructor(readonly options: SealedTierOptions) {}

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
  search(layer: number, query: Float32Array, k: number, filter: ChunkFilter): SealedHits {
    const { dim, space } = this.options;
    let q = query;
    if (space === 'cosine') {
      q = query.slice();
      normalizeRows(q, 1, dim);
    }
    const range = filter.timeRange;
    // Every list's centroid score, flat: [block entry, list] pairs in one typed array each.
    let total = 0;
    for (const entry of this.entries) total += entry.block.header.lists;
    const centroidScores = new Float64Array(total);
    const owner = new Int32Array(total);
    const listOf = new Int32Array(total);
    let n = 0;
    this.entries.forEach((entry, e) => {
      const h = entry.block.header;
      if (range && (h.tMax < range.start || h.tMin > range.end)) return;
      const at = entry.block.layers[layer]!;
      dotRowsInt8(at.centroidCodes, at.centroidScales, 0, h.lists, dim, q, centroidScores.subarray(n, n + h.lists));
      for (let list = 0; list < h.lists; list++) {
        owner[n + list] = e;
        listOf[n + list] = list;
      }
      n += h.lists;
    });
    const candidates = this.listOrder(centroidScores.subarray(0, n), owner, listOf);
    const ids: number[] = [];
    const values: number[] = [];
    let probed = 0;
    for (const { entry, list } of candidates()) {
      if (probed >= this.options.probeLists && ids.length >= k) break;
      probed++;
      let rows: ListRows;
      try {
        rows = entry.block.readLists(this.fd(entry), layer, list);
      } catch (error) {
        // One damaged list must not fail every question: the whole block leaves the index (its
        // member table was checked at open), so counts stay exact; the next open's
        // reconciliation with the store indexes those chunks again.
        if (!isVigilError(error) || error.code !== 'INDEX_CORRUPT') throw error;
        this.damagedReads++;
        process.emitWarning(`stream index: ${error.message}; the block's chunks leave the index until it is reconciled with the store`);
        this.remove(this.members(entry).ids);
        continue;
      }
      const n = rows.ids.length;
      const scores = this.scores(n);
      dotRowsInt8(rows.codes, rows.scales, 0, n, dim, q, scores);
      const h = entry.block.header;
      const partial = range !== undefined && !(h.tMin >= range.start && h.tMax <= range.end);
      const members = partial ? this.members(entry) : undefined;
      // Quantized unit vectors can score a hair above 1; a cosine stays in [-1, 1].
      if (space === 'cosine') for (let i = 0; i < n; i++) scores[i] = Math.max(-1, Math.min(1, scores[i]!));
      for (let i = 0; i < n; i++) {
        const id = rows.ids[i]!;
        if (!this.live.has(id) || filter.exclude?.has(id)) continue;
        if (members) {
          const m = searchId(members.ids, members.ids.length, id);
          if (members.tEnd[m]! < range!.start || members.tStart[m]! > range!.end) continue;
        }
        ids.push(id);
        values.push(scores[i]!);
      }
    }
    const best = rankHits(ids, values, k);
    const tStart = new Map<number, number>();
    for (const id of best.ids) {
      const entry = this.entryOf(id);
      // Gone mid-search (its block was damaged): the caller searches again.
      if (!entry) continue;
      const m = this.members(entry);
      tStart.set(id, m.tStart[searchId(m.ids, m.ids.length, id)]!);
    }
    return { ...best, tStart };
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
      fd = openSync(entry.block.file, 'r');
      if (this.fds.size >= OPEN_FILES) {
        const [oldest, oldFd] = this.fds.entries().next().value!;
        this.fds.delete(oldest);
        closeSync(oldFd);
      }
    }
    this.fds.set(entry.name, fd);
    return fd;
  }

  private closeFile(name: string): void {
    const fd = this.fds.get(name);
    if (fd === undefined) return;
    this.fds.delete(name);
    closeSync(fd);
  }

  /**
   * Lists best centroid first: the top few are selected without sorting them all (a month holds
   * ~40k lists per layer); the rest are sorted only if those run out before k hits are found.
   */
  private listOrder(scores: Float64Array, owner: Int32Array, listOf: Int32Array): () => Generator<{ entry: Entry; list: number }> {
    const entries = this.entries;
    const first = Math.min(scores.length, Math.max(this.options.probeLists * 2, 16));
    return function* () {
      const top = topK(scores, first).indices;
      for (const i of top) yield { entry: entries[owner[i]!]!, list: listOf[i]! };
      if (top.length === scores.length) return;
      const seen = new Uint8Array(scores.length);
      for (const i of top) seen[i] = 1;
      const rest = Array.from({ length: scores.length }, (_, i) => i).filter((i) => seen[i] === 0);
      rest.sort((a, b) => scores[b]! - scores[a]! || a - b);
      for (const i of rest) yield { entry: entries[owner[i]!]!, list: listOf[i]! };
    };
  }

  private scores(n: number): Float64Array {
    if (this.scratch.length < n) this.scratch = new Float64Array(Math.max(n, this.scratch.length * 2));
    return this.scratch;
  }
}
