// All retrieval state of one stream: a LayerIndex per decoder layer over the chunks' mean pre-RoPE
// keys, and one ChunkCatalog of their times. ReKV retrieval (rekv-method.md section 4): each layer
// picks its own top-r chunks by dot(question query, chunk key mean) and gets them back in time
// order. Every layer gets the same count r (the decoder shares one attention mask, design.md
// section 3), or all chunks that pass the filter when fewer exist.
import { VigilError } from '../common/errors.js';
import { ChunkCatalog, type ChunkFilter, type TimeRange } from './chunkCatalog.js';
import type { Hits } from './hits.js';
import { LayerIndex, type LayerStats } from './layerIndex.js';
import type { LayerIndexOptions } from './layerOptions.js';
import { sharedSum } from './sharedRanking.js';
import { sortedUnique } from './sortedIds.js';
import type { SimilaritySpace } from './space.js';
import { readStream, writeStream, type StreamIndexLoadOptions } from './streamFiles.js';
import { checkChunkId, checkConfigInt, checkCount, checkTime, checkVector, MAX_CHUNK_ID } from './validate.js';
import { ChunkSealer, resolveSealing, type SealingOptions } from './chunkSealer.js';
import { rankHits } from './hits.js';
import type { SealedProfile, SealedTier } from './sealedTier.js';

export type { StreamIndexLoadOptions } from './streamFiles.js';
export type { SealingOptions } from './chunkSealer.js';

export interface StreamIndexOptions extends LayerIndexOptions {
  numLayers: number;
  /**
   * Seal older chunks into block files (sealedBlock.ts) so RAM does not grow with history; without
   * it every chunk stays in RAM (exact, then HNSW).
   */
  sealing?: SealingOptions;
}

/** What the index needs of one chunk (FrameChunk has all of it). */
export interface IndexedChunk {
  chunkId: number;
  tStart: number;
  tEnd: number;
  /** Per layer [numKvHeads * headDim]: the chunk's mean pre-RoPE key. */
  representatives: readonly Float32Array[];
}

export interface RetrieveOptions extends ChunkFilter {
  /**
   * 'per-layer' (ReKV, default): each layer ranks by its own scores. 'shared': one set for every
   * layer (r chunk loads instead of up to L*r), ranked by the sum of all layers' scores or by
   * `sharedLayer` alone.
   */
  mode?: 'per-layer' | 'shared';
  sharedLayer?: number;
}

/** Retrieved chunks; the shape the engine's QuestionMemory.retrieve returns. */
export interface Retrieval {
  /** chunkIds[layer]: ascending stream time (ties by id), the same length on every layer. */
  chunkIds: number[][];
  /** scores[layer][i] belongs to chunkIds[layer][i] (in shared mode: the score it was ranked by). */
  scores: number[][];
  /** Every chunk any layer retrieved, in time order: what to load. */
  union: number[];
}

type PendingOp = { kind: 'add'; chunk: IndexedChunk } | { kind: 'remove'; ids: number[] };

export interface StreamIndexStats {
  size: number;
  layers: LayerStats[];
  /** Chunks in sealed blocks, the blocks, and the RAM they hold; absent without sealing. */
  sealed?: { chunks: number; blocks: number; ramBytes: number; sealFailures: number };
}

export class StreamIndex {
  readonly numLayers: number;
  readonly dim: number;
  readonly space: SimilaritySpace;
  /** The recent chunks, in RAM: one LayerIndex per layer and their catalog. */
  private readonly layers: LayerIndex[];
  private catalog: ChunkCatalog;
  /** The older chunks, sealed into block files, and the worker that seals them. */
  private readonly sealer: ChunkSealer | undefined;
  /** While a save runs, changes wait here (hnswlib serialises graphs on a worker thread). */
  private saving: Promise<void> | undefined;
  private pending: PendingOp[] = [];
  /** Membership as it will be once `pending` is applied: id -> present. */
  private pendingMembership = new Map<number, boolean>();

  private constructor(layers: LayerIndex[], catalog: ChunkCatalog, sealed?: { tier: SealedTier; options: SealingOptions }) {
    this.layers = layers;
    this.catalog = catalog;
    this.numLayers = layers.length;
    this.dim = layers[0]!.dim;
    this.space = layers[0]!.options.space;
    this.sealer = sealed ? new ChunkSealer(sealed.tier, resolveSealing(sealed.options), this.sealerHost()) : undefined;
  }

  /** An empty index (layers start exact and switch to HNSW at hnswThreshold chunks). */
  static create(options: StreamIndexOptions): StreamIndex {
    checkConfigInt('numLayers', options.numLayers, 1);
    const layers = Array.from({ length: options.numLayers }, () => new LayerIndex(options));
    const space = layers[0]!.options.space;
    const sealed = options.sealing ? { tier: ChunkSealer.emptyTier(options.sealing, options.numLayers, options.dim, space), options: options.sealing } : undefined;
    return new StreamIndex(layers, new ChunkCatalog(), sealed);
  }

  /**
   * An index holding exactly these chunks (e.g. from the manifest after a crash or a lost folder),
   * in any order. Graph builds are spread over event-loop turns of `slice` inserts per layer;
   * expect ~0.4-0.6 ms per chunk and layer in graph mode (20k chunks x 30 layers: minutes).
   */
  static async rebuild(options: StreamIndexOptions, chunks: Iterable<IndexedChunk>, slice = 256): Promise<StreamIndex> {
    checkConfigInt('numLayers', options.numLayers, 1);
    if (options.sealing) {
      // Added one by one, so older chunks are sealed on the way and RAM stays bounded.
      const index = StreamIndex.create(options);
      const list = [...chunks].sort((a, b) => a.chunkId - b.chunkId);
      for (const chunk of list) {
        if (index.has(chunk.chunkId)) throw new VigilError('BAD_INPUT', `chunk ${chunk.chunkId} appears twice`);
        index.addChunk(chunk.chunkId, chunk.tStart, chunk.tEnd, chunk.representatives);
        await index.idle();
      }
      return index;
    }
    checkConfigInt('dim', options.dim, 1);
    // Id order makes every catalog insert an append.
    const list = [...chunks].sort((a, b) => a.chunkId - b.chunkId);
    const catalog = new ChunkCatalog();
    for (const chunk of list) {
      StreamIndex.checkChunk(chunk, options.numLayers, options.dim);
      if (catalog.has(chunk.chunkId)) throw new VigilError('BAD_INPUT', `chunk ${chunk.chunkId} appears twice`);
      catalog.add(chunk.chunkId, chunk.tStart, chunk.tEnd);
    }
    const layers = Array.from({ length: options.numLayers }, (_, layer) =>
      LayerIndex.fromEntries(options, list.map((c) => ({ id: c.chunkId, vector: c.representatives[layer]! }))),
    );
    const index = new StreamIndex(layers, catalog);
    await index.completeBackfill(slice);
    return index;
  }

  get size(): number {
    return this.catalog.size + (this.sealer?.tier.size ?? 0);
  }

  has(chunkId: number): boolean {
    return this.catalog.has(chunkId) || (this.sealer?.tier.has(chunkId) ?? false);
  }

  /** Indexed ids, ascending. */
  chunkIds(): number[] {
    return Array.from(this.chunkIdRange());
  }

  /**
   * Lowest and highest indexed id (null when empty), O(1): enough for a restart to tell which
   * chunks the manifest gained or retention took since the last save without listing every id.
   * Like has(), they describe the applied state: changes queued during a save() are not counted.
   */
  minChunkId(): number | null {
    const ids = [this.catalog.minId(), this.sealer?.tier.minId()].filter((id) => id !== undefined);
    return ids.length === 0 ? null : Math.min(ids[0]!, ids[1] ?? Infinity);
  }

  maxChunkId(): number | null {
    const ids = [this.catalog.maxId(), this.sealer?.tier.maxId()].filter((id) => id !== undefined);
    return ids.length === 0 ? null : Math.max(ids[0]!, ids[1] ?? -Infinity);
  }

  /** Indexed ids in [from, to), ascending, as a typed array (default: all of them). O(log n + result). */
  chunkIdRange(from = 0, to = MAX_CHUNK_ID + 1): Uint32Array {
    const recent = this.catalog.idsBetween(from, to);
    if (!this.sealer || this.sealer.tier.size === 0) return recent;
    return mergeSorted(this.sealer.tier.idsBetween(from, to), recent);
  }

  stats(): StreamIndexStats {
    const stats: StreamIndexStats = { size: this.size, layers: this.layers.map((l) => l.stats()) };
    if (this.sealer) stats.sealed = { chunks: this.sealer.tier.size, blocks: this.sealer.tier.blockCount, ramBytes: this.sealer.tier.ramBytes, sealFailures: this.sealer.failures };
    return stats;
  }

  /** Blocks sealed since create or load: the index changed (a save has something to write). */
  get sealsSinceOpen(): number {
    return this.sealer?.swaps ?? 0;
  }

  /** Lists each sealed search reads per layer before it may stop (recall vs. reads; bench/sealed-index.ts). */
  setProbeLists(lists: number): void {
    checkCount('probeLists', lists, 1);
    if (this.sealer) this.sealer.tier.options.probeLists = lists;
  }

  /** Makes sealed searches add where their time goes to `profile` (undefined: stop); benchmarks only. */
  profileSealed(profile: SealedProfile | undefined): void {
    if (this.sealer) this.sealer.tier.profile = profile;
  }

  /** Resolves when no block is being sealed and none is due (rebuilds wait here between adds). */
  async idle(): Promise<void> {
    await this.sealer?.idle();
  }

  /**
   * Indexes an evicted chunk on every layer. Cost per call: a copy per layer in exact mode, one
   * hnswlib insert per layer in graph mode (~0.3-0.5 ms each, blocking: 10-15 ms for 30 layers),
   * plus backfillPerAdd inserts per layer while a graph is being built. During a save the change
   * is checked now and applied when the save completes.
   */
  addChunk(chunkId: number, tStart: number, tEnd: number, representatives: readonly Float32Array[]): void {
    const chunk: IndexedChunk = { chunkId, tStart, tEnd, representatives };
    StreamIndex.checkChunk(chunk, this.numLayers, this.dim);
    if (this.willHave(chunkId)) throw new VigilError('BAD_INPUT', `chunk ${chunkId} is already indexed`);
    if (this.saving) {
      // Copied: the caller may reuse its buffers before the save ends.
      this.pending.push({ kind: 'add', chunk: { ...chunk, representatives: representatives.map((v) => v.slice()) } });
      this.pendingMembership.set(chunkId, true);
      return;
    }
    this.applyAdd(chunk);
    this.sealer?.maybeSeal();
  }

  /** Drops chunks (retention, purge); unknown ids are ignored. Returns how many were indexed. */
  removeChunks(ids: Iterable<number>): number {
    const list = [...new Set(ids)];
    const count = list.filter((id) => this.willHave(id)).length;
    if (this.saving) {
      this.pending.push({ kind: 'remove', ids: list });
      for (const id of list) this.pendingMembership.set(id, false);
      return count;
    }
    this.applyRemove(list);
    return count;
  }

  /**
   * Per layer the top-r chunks for that layer's query (retrievalQueries() builds them from the
   * decoder's query taps), sorted by time. Returns min(r, chunks passing the filter) per layer.
   */
  retrieve(queries: readonly Float32Array[], r: number, options: RetrieveOptions = {}): Retrieval {
    if (!Array.isArray(queries) || queries.length !== this.numLayers) {
      throw new VigilError('SHAPE_MISMATCH', `expected ${this.numLayers} layer queries, got ${Array.isArray(queries) ? queries.length : typeof queries}`);
    }
    queries.forEach((q, layer) => checkVector(`query of layer ${layer}`, q, this.dim));
    checkCount('r', r, 1);
    if (options.timeRange) StreamIndex.checkRange(options.timeRange);
    const mode = options.mode ?? 'per-layer';
    if (mode !== 'per-layer' && mode !== 'shared') throw new VigilError('BAD_INPUT', `unknown retrieval mode ${JSON.stringify(mode)}`);
    if (options.sharedLayer !== undefined && (!Number.isInteger(options.sharedLayer) || options.sharedLayer < 0 || options.sharedLayer >= this.numLayers)) {
      throw new VigilError('BAD_INPUT', `sharedLayer must be a layer index in [0, ${this.numLayers}), got ${options.sharedLayer}`);
    }

    const damagedBefore = this.sealer?.tier.damagedReads ?? 0;
    const allowed = this.catalog.allowedIds(options);
    const passingRecent = allowed ? allowed.length : this.catalog.size;
    const tier = this.sealer?.tier;
    const passingSealed = tier && tier.size > 0 ? tier.countPassing(options) : 0;
    const k = Math.min(r, passingRecent + passingSealed);
    // One layer's top k over both tiers: the recent chunks exactly (or HNSW), the sealed ones by
    // their int8 lists; merged by score (ties: lower id).
    const layerSearch = (layer: number): Hits => {
      const recent = passingRecent > 0 ? this.layers[layer]!.search(queries[layer]!, Math.min(k, passingRecent), allowed) : { ids: [], scores: [] };
      if (passingSealed === 0) return recent;
      const sealed = tier!.search(layer, queries[layer]!, Math.min(k, passingSealed), options);
      return rankHits(recent.ids.concat(sealed.ids), recent.scores.concat(sealed.scores), k);
    };
    let perLayer: Hits[];
    if (k === 0) {
      perLayer = this.layers.map(() => ({ ids: [], scores: [] }));
    } else if (mode === 'per-layer') {
      perLayer = this.layers.map((_, i) => layerSearch(i));
    } else if (options.sharedLayer !== undefined) {
      const shared = layerSearch(options.sharedLayer);
      perLayer = this.layers.map(() => shared);
    } else {
      const shared = passingSealed === 0 ? sharedSum(this.layers, queries, k, allowed) : this.sharedOverTiers(queries, k, layerSearch);
      perLayer = this.layers.map(() => shared);
    }
    // A damaged sealed block left the index during this search: the counts changed, search again.
    if ((tier?.damagedReads ?? 0) !== damagedBefore) return this.retrieve(queries, r, options);
    for (const hits of perLayer) {
      // Guaranteed by LayerIndex.search; checked because a shorter layer would break the shared mask.
      if (hits.ids.length !== k) throw new Error(`retrieval returned ${hits.ids.length} chunks on a layer, expected ${k}`);
    }
    // Sealed chunks' start times, read once for every layer's hits (block files hold them).
    const sealedTimes = passingSealed > 0 ? tier!.startTimes(sortedUnique(perLayer.flatMap((h) => h.ids)).filter((id) => !this.catalog.has(id))) : new Map<number, number>();
    const timed = perLayer.map((hits) => this.inTimeOrder(hits, sealedTimes));
    const union = this.timeOrder(Array.from(sortedUnique(timed.flatMap((h) => h.ids))), sealedTimes);
    return { chunkIds: timed.map((h) => h.ids), scores: timed.map((h) => h.scores), union };
  }

  /**
   * Shared ranking with sealed blocks: the union of every layer's own top k are the candidates (a
   * chunk outside all of them cannot win), each scored on every layer (as sharedSum in graph mode).
   */
  private sharedOverTiers(queries: readonly Float32Array[], k: number, layerSearch: (layer: number) => Hits): Hits {
    const own = this.layers.map((_, i) => layerSearch(i));
    const candidates = sortedUnique(own.flatMap((h) => h.ids));
    const total = new Float64Array(candidates.length);
    const tier = this.sealer!.tier;
    this.layers.forEach((layer, i) => {
      const known = new Map(own[i]!.ids.map((id, j) => [id, own[i]!.scores[j]!]));
      const missing = Array.from(candidates).filter((id) => !known.has(id));
      const recent = missing.filter((id) => this.catalog.has(id));
      const sealed = missing.filter((id) => !this.catalog.has(id));
      const recentScores = recent.length > 0 ? layer.scoreIds(queries[i]!, recent) : new Float64Array(0);
      const sealedScores = sealed.length > 0 ? tier.scoreIds(i, queries[i]!, sealed) : new Float64Array(0);
      recent.forEach((id, j) => known.set(id, recentScores[j]!));
      sealed.forEach((id, j) => known.set(id, sealedScores[j]!));
      candidates.forEach((id, j) => (total[j]! += known.get(id)!));
    });
    return rankHits(Array.from(candidates), Array.from(total), k);
  }

  /** Copies up to `max` vectors per layer into graphs being built; returns how many remain in all. */
  backfill(max: number): number {
    if (this.saving) return this.layers.reduce((n, l) => n + l.stats().pendingBackfill, 0);
    return this.layers.reduce((n, l) => n + l.backfill(max), 0);
  }

  /** Finishes pending graph builds, `slice` inserts per layer per event-loop turn. */
  async completeBackfill(slice = 256): Promise<void> {
    while (this.backfill(slice) > 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /**
   * Shrinks every graph's allocation to the slots it uses, so the saved index loads into no more
   * memory than it holds. For a final save: the next add grows a graph again.
   */
  compact(): void {
    if (this.saving) return;
    for (const layer of this.layers) layer.compact();
  }

  /** Sets the graph search breadth on every layer. */
  setEf(ef: number): void {
    for (const layer of this.layers) layer.setEf(ef);
  }

  /**
   * Writes the index to `dir`, replacing what is there: written beside it, then swapped in by
   * rename. Changes made meanwhile are applied after the write (the saved index does not hold them).
   */
  async save(dir: string): Promise<void> {
    while (this.saving) await this.saving;
    const sealed = this.sealer ? { listing: this.sealer.tier.listing(), retired: this.sealer.tier.takeRetired() } : undefined;
    const run = writeStream(dir, { numLayers: this.numLayers, dim: this.dim, space: this.space }, this.catalog, this.layers, sealed?.listing);
    this.saving = run.then(
      () => undefined,
      () => undefined,
    );
    let failure: unknown;
    try {
      await run;
    } catch (error) {
      failure = error;
    }
    this.saving = undefined;
    const applyError = this.applyPending();
    // Blocks emptied before this save are no longer listed by it: their files can go.
    if (sealed) {
      if (failure === undefined) this.sealer!.tier.deleteFiles(sealed.retired);
      else this.sealer!.tier.keepRetired(sealed.retired);
    }
    if (failure !== undefined) throw failure;
    if (applyError !== undefined) throw applyError;
  }

  /** Reads an index written by save(). INDEX_CORRUPT if anything disagrees; FILE_NOT_FOUND if absent. */
  static async load(dir: string, options: StreamIndexLoadOptions = {}): Promise<StreamIndex> {
    const { layers, catalog, sealed } = await readStream(dir, options);
    if (sealed.length > 0 && !options.sealing) throw new VigilError('BAD_CONFIG', `${dir} has sealed blocks: open it with their folder (sealing options)`);
    if (!options.sealing) return new StreamIndex(layers, catalog);
    const space = layers[0]!.options.space;
    const { tier, unusable } = ChunkSealer.loadTier(options.sealing, layers.length, layers[0]!.dim, space, sealed);
    // A listed block that is gone or damaged is left out: reconciliation with the store puts its chunks back.
    for (const why of unusable) process.emitWarning(`stream index ${dir}: sealed block not used: ${why}`);
    // Chunks both sealed and in RAM (a crash between a seal and the next save) are kept sealed.
    const twice = Array.from(catalog.allIds()).filter((id) => tier.has(id));
    const index = new StreamIndex(layers, catalog, { tier, options: options.sealing });
    if (twice.length > 0) index.dropRecent(twice);
    // A close that came before a due seal finished leaves more recent chunks than two blocks.
    index.sealer?.maybeSeal();
    return index;
  }

  /** Waits for a seal in flight to finish (a dispose must not leave a half-written block behind). */
  async dispose(): Promise<void> {
    await this.sealer?.dispose();
  }

  /** The ids of the oldest recent chunks, copied with their times and vectors, for a seal. */
  private sealerHost(): ConstructorParameters<typeof ChunkSealer>[2] {
    return {
      recentCount: () => this.catalog.size,
      saving: () => this.saving,
      snapshot: (count) => {
        const ids = this.catalog.allIds().slice(0, count);
        const tStart = new Float64Array(ids.length);
        const tEnd = new Float64Array(ids.length);
        ids.forEach((id, i) => {
          const t = this.catalog.times(id)!;
          tStart[i] = t.tStart;
          tEnd[i] = t.tEnd;
        });
        const vectors = this.layers.map((layer) => {
          const packed = new Float32Array(ids.length * this.dim);
          ids.forEach((id, i) => packed.set(layer.vector(id)!, i * this.dim));
          return packed;
        });
        return { ids, tStart, tEnd, vectors };
      },
      present: (id) => this.catalog.has(id),
      dropRecent: (ids) => this.dropRecent(ids),
    };
  }

  /** Removes chunks from the recent tier only (they were sealed). */
  private dropRecent(ids: readonly number[]): void {
    const removed = this.catalog.remove(new Set(ids));
    if (removed.length === 0) return;
    for (const layer of this.layers) layer.remove(removed);
  }

  private applyPending(): unknown {
    const ops = this.pending;
    this.pending = [];
    this.pendingMembership.clear();
    let first: unknown;
    for (const op of ops) {
      try {
        if (op.kind === 'add') this.applyAdd(op.chunk);
        else this.applyRemove(op.ids);
      } catch (error) {
        first ??= error;
      }
    }
    return first;
  }

  private applyAdd(chunk: IndexedChunk): void {
    const done: LayerIndex[] = [];
    try {
      for (let layer = 0; layer < this.numLayers; layer++) {
        this.layers[layer]!.add(chunk.chunkId, chunk.representatives[layer]!);
        done.push(this.layers[layer]!);
      }
    } catch (error) {
      // All layers or none: a chunk on some layers only would make layer results disagree.
      for (const layer of done) layer.remove([chunk.chunkId]);
      throw error;
    }
    this.catalog.add(chunk.chunkId, chunk.tStart, chunk.tEnd);
  }

  private applyRemove(ids: number[]): void {
    this.sealer?.tier.remove(ids);
    const set = new Set(ids);
    const removed = this.catalog.remove(set);
    if (removed.length === 0) return;
    for (const layer of this.layers) layer.remove(removed);
  }

  private willHave(id: number): boolean {
    return this.pendingMembership.get(id) ?? this.has(id);
  }

  private inTimeOrder(hits: Hits, sealedTimes: ReadonlyMap<number, number>): Hits {
    const score = new Map(hits.ids.map((id, i) => [id, hits.scores[i]!]));
    const ids = this.timeOrder(hits.ids, sealedTimes);
    return { ids, scores: ids.map((id) => score.get(id)!) };
  }

  /** Ids ordered by tStart, then id: recent ones from the catalog, sealed ones from the search's times. */
  private timeOrder(ids: readonly number[], sealedTimes: ReadonlyMap<number, number>): number[] {
    if (sealedTimes.size === 0) return this.catalog.timeOrder(ids);
    const keyed = ids.map((id) => ({ id, t: this.catalog.times(id)?.tStart ?? sealedTimes.get(id)! }));
    keyed.sort((a, b) => a.t - b.t || a.id - b.id);
    return keyed.map((k) => k.id);
  }

  /**
   * The checks addChunk() and rebuild() apply (BAD_INPUT / SHAPE_MISMATCH), without an index: lets
   * a caller tell an unindexable row from a missing one.
   */
  static checkChunk(chunk: IndexedChunk, numLayers: number, dim: number): void {
    checkChunkId(chunk.chunkId);
    checkTime(`tStart of chunk ${chunk.chunkId}`, chunk.tStart);
    checkTime(`tEnd of chunk ${chunk.chunkId}`, chunk.tEnd);
    if (chunk.tEnd < chunk.tStart) throw new VigilError('BAD_INPUT', `chunk ${chunk.chunkId} ends (${chunk.tEnd}) before it starts (${chunk.tStart})`);
    if (!Array.isArray(chunk.representatives) || chunk.representatives.length !== numLayers) {
      throw new VigilError('SHAPE_MISMATCH', `chunk ${chunk.chunkId} has ${chunk.representatives?.length} representatives, the index has ${numLayers} layers`);
    }
    chunk.representatives.forEach((v, layer) => checkVector(`representative of chunk ${chunk.chunkId}, layer ${layer}`, v, dim));
  }

  /**
   * Raises an indexed chunk's tEnd (never lowers it): frame gating extends the newest chunk's span
   * over the frames it turned away. A chunk whose add waits for a save gets the new span there.
   * False when the chunk is not indexed. Its vectors are unchanged, so no layer is touched.
   */
  extendChunk(chunkId: number, tEnd: number): boolean {
    checkTime(`tEnd of chunk ${chunkId}`, tEnd);
    for (const op of this.pending) {
      if (op.kind === 'add' && op.chunk.chunkId === chunkId) {
        op.chunk.tEnd = Math.max(op.chunk.tEnd, tEnd);
        return true;
      }
    }
    return this.catalog.extend(chunkId, tEnd);
  }

  private static checkRange(range: TimeRange): void {
    checkTime('timeRange.start', range.start);
    checkTime('timeRange.end', range.end);
    if (range.end < range.start) throw new VigilError('BAD_INPUT', `timeRange ends (${range.end}) before it starts (${range.start})`);
  }
}

/** Union of two ascending id arrays with no common id. */
function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) out[n++] = a[i]! <= b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[n++] = a[i++]!;
  while (j < b.length) out[n++] = b[j++]!;
  return out;
}
