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

export type { StreamIndexLoadOptions } from './streamFiles.js';

export interface StreamIndexOptions extends LayerIndexOptions {
  numLayers: number;
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

export class StreamIndex {
  readonly numLayers: number;
  readonly dim: number;
  readonly space: SimilaritySpace;
  private readonly layers: LayerIndex[];
  private catalog: ChunkCatalog;
  /** While a save runs, changes wait here (hnswlib serialises graphs on a worker thread). */
  private saving: Promise<void> | undefined;
  private pending: PendingOp[] = [];
  /** Membership as it will be once `pending` is applied: id -> present. */
  private pendingMembership = new Map<number, boolean>();

  private constructor(layers: LayerIndex[], catalog: ChunkCatalog) {
    this.layers = layers;
    this.catalog = catalog;
    this.numLayers = layers.length;
    this.dim = layers[0]!.dim;
    this.space = layers[0]!.options.space;
  }

  /** An empty index (layers start exact and switch to HNSW at hnswThreshold chunks). */
  static create(options: StreamIndexOptions): StreamIndex {
    checkConfigInt('numLayers', options.numLayers, 1);
    const layers = Array.from({ length: options.numLayers }, () => new LayerIndex(options));
    return new StreamIndex(layers, new ChunkCatalog());
  }

  /**
   * An index holding exactly these chunks (e.g. from the manifest after a crash or a lost folder),
   * in any order. Graph builds are spread over event-loop turns of `slice` inserts per layer;
   * expect ~0.4-0.6 ms per chunk and layer in graph mode (20k chunks x 30 layers: minutes).
   */
  static async rebuild(options: StreamIndexOptions, chunks: Iterable<IndexedChunk>, slice = 256): Promise<StreamIndex> {
    checkConfigInt('numLayers', options.numLayers, 1);
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
    return this.catalog.size;
  }

  has(chunkId: number): boolean {
    return this.catalog.has(chunkId);
  }

  /** Indexed ids, ascending. */
  chunkIds(): number[] {
    return Array.from(this.catalog.allIds());
  }

  /**
   * Lowest and highest indexed id (null when empty), O(1): enough for a restart to tell which
   * chunks the manifest gained or retention took since the last save without listing every id.
   * Like has(), they describe the applied state: changes queued during a save() are not counted.
   */
  minChunkId(): number | null {
    return this.catalog.minId() ?? null;
  }

  maxChunkId(): number | null {
    return this.catalog.maxId() ?? null;
  }

  /** Indexed ids in [from, to), ascending, as a typed array (default: all of them). O(log n + result). */
  chunkIdRange(from = 0, to = MAX_CHUNK_ID + 1): Uint32Array {
    return this.catalog.idsBetween(from, to);
  }

  stats(): { size: number; layers: LayerStats[] } {
    return { size: this.size, layers: this.layers.map((l) => l.stats()) };
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

    const allowed = this.catalog.allowedIds(options);
    const passing = allowed ? allowed.length : this.catalog.size;
    const k = Math.min(r, passing);
    let perLayer: Hits[];
    if (k === 0) {
      perLayer = this.layers.map(() => ({ ids: [], scores: [] }));
    } else if (mode === 'per-layer') {
      perLayer = this.layers.map((layer, i) => layer.search(queries[i]!, k, allowed));
    } else {
      const shared = options.sharedLayer !== undefined ? this.layers[options.sharedLayer]!.search(queries[options.sharedLayer]!, k, allowed) : sharedSum(this.layers, queries, k, allowed);
      perLayer = this.layers.map(() => shared);
    }
    for (const hits of perLayer) {
      // Guaranteed by LayerIndex.search; checked because a shorter layer would break the shared mask.
      if (hits.ids.length !== k) throw new Error(`retrieval returned ${hits.ids.length} chunks on a layer, expected ${k}`);
    }
    const timed = perLayer.map((hits) => this.inTimeOrder(hits));
    const union = this.catalog.timeOrder(Array.from(sortedUnique(timed.flatMap((h) => h.ids))));
    return { chunkIds: timed.map((h) => h.ids), scores: timed.map((h) => h.scores), union };
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
    const run = writeStream(dir, { numLayers: this.numLayers, dim: this.dim, space: this.space }, this.catalog, this.layers);
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
    if (failure !== undefined) throw failure;
    if (applyError !== undefined) throw applyError;
  }

  /** Reads an index written by save(). INDEX_CORRUPT if anything disagrees; FILE_NOT_FOUND if absent. */
  static async load(dir: string, options: StreamIndexLoadOptions = {}): Promise<StreamIndex> {
    const { layers, catalog } = await readStream(dir, options);
    return new StreamIndex(layers, catalog);
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
    const set = new Set(ids);
    const removed = this.catalog.remove(set);
    if (removed.length === 0) return;
    for (const layer of this.layers) layer.remove(removed);
  }

  private willHave(id: number): boolean {
    return this.pendingMembership.get(id) ?? this.catalog.has(id);
  }

  private inTimeOrder(hits: Hits): Hits {
    const score = new Map(hits.ids.map((id, i) => [id, hits.scores[i]!]));
    const ids = this.catalog.timeOrder(hits.ids);
    return { ids, scores: ids.map((id) => score.get(id)!) };
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
