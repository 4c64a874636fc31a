// One decoder layer's index over chunk representatives. Small layers are searched exactly; at
// `hnswThreshold` chunks an HNSW graph is built alongside, copied a few vectors per add so no single
// frame pays for the whole build, and takes over once complete (the exact copy is then dropped, so
// the graph holds the only copy of the vectors). The modes:
//   exact      ExactStore only (recall 1.0)
//   migrating  ExactStore answers; the graph is being filled (all ids below `nextBackfillId`)
//   hnsw       HnswStore only
import { VigilError } from '../common/errors.js';
import { ExactStore, type ScoredRows } from './exactStore.js';
import { bestK, type Hits } from './hits.js';
import { HnswStore } from './hnswStore.js';
import { readLayer, writeLayer, type LayerTuning } from './layerFiles.js';
import { resolveLayerOptions, type LayerIndexOptions, type ResolvedLayerOptions } from './layerOptions.js';
import { searchId } from './sortedIds.js';
import { checkChunkId, checkCount, checkVector } from './validate.js';

export type LayerMode = 'exact' | 'migrating' | 'hnsw';

export interface LayerStats {
  mode: LayerMode;
  size: number;
  /** Vectors still to copy into the graph (migrating only). */
  pendingBackfill: number;
  /** Graph slots in use (deleted included) and allocated; 0 without a graph. */
  graphSlots: number;
  graphCapacity: number;
  /** Graph searches that came back short and were redone exactly. */
  shortSearches: number;
}

/** Fewer vectors than this at graph start: no offset (see startMigration). */
const MIN_OFFSET_SAMPLES = 256;

export class LayerIndex {
  readonly options: ResolvedLayerOptions;
  private exact: ExactStore | undefined;
  private graph: HnswStore | undefined;
  private nextBackfillId = 0;
  private shortSearches = 0;

  /** An empty layer; it starts exact and builds its graph once it holds hnswThreshold chunks. */
  constructor(options: LayerIndexOptions) {
    this.options = resolveLayerOptions(options);
    this.exact = new ExactStore(this.options.dim, this.options.space);
  }

  get dim(): number {
    return this.options.dim;
  }

  get mode(): LayerMode {
    return this.graph === undefined ? 'exact' : this.exact === undefined ? 'hnsw' : 'migrating';
  }

  get size(): number {
    return this.exact ? this.exact.size : this.graph!.size;
  }

  has(id: number): boolean {
    return this.exact ? this.exact.has(id) : this.graph!.has(id);
  }

  /** Ids in ascending order. */
  ids(): Uint32Array {
    return this.exact ? this.exact.ids().slice() : this.graph!.liveIds();
  }

  stats(): LayerStats {
    return {
      mode: this.mode,
      size: this.size,
      pendingBackfill: this.pendingBackfill(),
      graphSlots: this.graph?.slots ?? 0,
      graphCapacity: this.graph?.capacity ?? 0,
      shortSearches: this.shortSearches,
    };
  }

  /** Sets the graph's search breadth (kept in the saved meta, since hnswlib does not save it). */
  setEf(ef: number): void {
    checkCount('ef', ef, 1);
    this.options.hnsw.ef = ef;
    this.graph?.setEf(ef);
  }

  /**
   * Adds one chunk's representative. Exact mode copies it (O(dim)); graph mode inserts it (0.3-0.5
   * ms median at 192-d, blocking); migrating mode also copies up to backfillPerAdd older vectors.
   */
  add(id: number, vector: Float32Array): void {
    checkChunkId(id);
    checkVector(`representative of chunk ${id}`, vector, this.options.dim);
    if (this.has(id)) throw new VigilError('BAD_INPUT', `chunk ${id} is already indexed`);
    if (!this.exact) {
      this.graph!.add(id, vector);
      return;
    }
    this.exact.add(id, vector);
    if (this.graph) {
      // The backfill walks ids upwards; an id below its cursor would be skipped, so insert it now.
      if (id < this.nextBackfillId) this.graph.add(id, vector);
    } else if (this.exact.size >= this.options.hnswThreshold) {
      this.startMigration();
    }
    if (this.graph) this.backfill(this.options.backfillPerAdd);
  }

  /** A copy of the stored vector of `id`, or undefined when absent (cosine graphs hold it normalised). */
  vector(id: number): Float32Array | undefined {
    if (this.exact) return this.exact.vector(id)?.slice();
    return this.graph!.has(id) ? this.graph!.vector(id) : undefined;
  }

  /** Removes the ids present (others are ignored); returns how many were removed. */
  remove(ids: Iterable<number>): number {
    const set = ids instanceof Set ? (ids as Set<number>) : new Set(ids);
    let removed = 0;
    if (this.exact) removed = this.exact.remove(set);
    // hnswlib's markDelete: the slot stays until a later insert reuses it.
    if (this.graph) {
      const n = this.graph.remove(set);
      if (!this.exact) removed = n;
    }
    return removed;
  }

  /**
   * Copies up to `max` vectors into the graph being built; returns how many remain. When none
   * remain the graph takes over and the exact copy is released. Blocks ~0.4-0.6 ms per vector.
   */
  backfill(max: number): number {
    if (this.mode !== 'migrating') return 0;
    const exact = this.exact!;
    const graph = this.graph!;
    const ids = exact.ids();
    let row = searchId(ids, ids.length, this.nextBackfillId);
    if (row < 0) row = -row - 1;
    for (let n = 0; n < max && row < ids.length; n++, row++) {
      const id = ids[row]!;
      graph.add(id, exact.rowVector(row));
      this.nextBackfillId = id + 1;
    }
    if (row >= ids.length) {
      this.exact = undefined;
      return 0;
    }
    return ids.length - row;
  }

  /** Finishes a pending migration now (blocking: ~0.4-0.6 ms per remaining vector). */
  completeBackfill(): void {
    while (this.backfill(4096) > 0);
  }

  /**
   * The k best chunks for `query`, best first (ties: lower id), restricted to `allowed` (ascending
   * ids) when given. Returns exactly min(k, number of allowed live chunks) hits.
   */
  search(query: Float32Array, k: number, allowed?: ArrayLike<number>): Hits {
    checkVector('query', query, this.options.dim);
    checkCount('r', k, 1);
    if (this.exact) {
      const rows = this.exact.score(query, allowed);
      return bestK(rows.ids, rows.scores, k);
    }
    const graph = this.graph!;
    if (allowed !== undefined && allowed.length <= this.options.exactFilterLimit) {
      return this.exactOverGraph(query, k, this.liveAmong(allowed));
    }
    // Allowed ids are normally all live (StreamIndex keeps layers and catalog equal), so the live
    // intersection is only computed when the graph's answer comes back short.
    const pass = allowed;
    const hits = pass ? graph.search(query, k, (id) => searchId(pass, pass.length, id) >= 0) : graph.search(query, k);
    if (hits.ids.length === k) return hits;
    const candidates = pass ? this.liveAmong(pass) : graph.liveIds();
    if (hits.ids.length === Math.min(k, candidates.length)) return hits;
    // Every layer must return the same count (one attention mask for all layers), so a short
    // approximate answer is replaced by an exact one.
    this.shortSearches++;
    return this.exactOverGraph(query, k, candidates);
  }

  /**
   * Exact scores of every chunk (or the allowed ones), ascending ids; undefined in graph mode,
   * where the vectors live only inside hnswlib.
   */
  scoreAll(query: Float32Array, allowed?: ArrayLike<number>): ScoredRows | undefined {
    checkVector('query', query, this.options.dim);
    return this.exact?.score(query, allowed);
  }

  /** Scores of the given live ids (ascending), in that order. Slow in graph mode (~20 us per id). */
  scoreIds(query: Float32Array, ids: ArrayLike<number>): Float64Array {
    checkVector('query', query, this.options.dim);
    if (this.exact) {
      const rows = this.exact.score(query, ids);
      if (rows.ids.length !== ids.length) throw new VigilError('BAD_INPUT', 'scoreIds: some ids are not indexed or not ascending');
      return rows.scores;
    }
    const out = new Float64Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      if (!this.graph!.has(ids[i]!)) throw new VigilError('BAD_INPUT', `scoreIds: chunk ${ids[i]} is not indexed`);
      out[i] = this.graph!.scoreOf(query, ids[i]!);
    }
    return out;
  }

  /** Shrinks a graph's allocation to what it holds (before a final save; see HnswStore.compact). */
  compact(): void {
    if (this.exact === undefined) this.graph?.compact();
  }

  /**
   * Writes the layer into `dir` (which must exist); see layerFiles.ts. A layer that is still
   * building its graph is saved exact, and the build restarts after load.
   */
  async save(dir: string): Promise<void> {
    await writeLayer(dir, this.options, this.exact ? { exact: this.exact } : { graph: this.graph! });
  }

  /**
   * Reads a layer saved by save(). Structure (dim, space, graph M / efConstruction / seed) comes
   * from the meta; `tuning` may change only what is safe to change (ef, hnswThreshold,
   * backfillPerAdd, exactFilterLimit). `expect` states what the caller requires (BAD_CONFIG when the
   * saved layer differs). Damaged or inconsistent files: INDEX_CORRUPT.
   */
  static async load(dir: string, tuning: LayerTuning = {}, expect: { dim?: number; space?: string } = {}): Promise<LayerIndex> {
    const saved = await readLayer(dir, tuning, expect);
    const index = new LayerIndex(saved.options);
    if (saved.graph) {
      index.exact = undefined;
      index.graph = saved.graph;
    } else {
      index.exact = saved.exact!;
      if (index.exact.size >= index.options.hnswThreshold) index.startMigration();
    }
    return index;
  }

  /**
   * A layer holding exactly these vectors. At or above the threshold the graph is built right away
   * (synchronously: ~0.4-0.6 ms per vector; StreamIndex.rebuild spreads this over event-loop turns).
   * The same entries in any order give the same index: they are inserted in id order.
   */
  static rebuild(options: LayerIndexOptions, entries: Iterable<{ id: number; vector: Float32Array }>): LayerIndex {
    const index = LayerIndex.fromEntries(options, entries);
    index.completeBackfill();
    return index;
  }

  /** Like rebuild, but leaves any graph build pending (for callers that backfill in slices). */
  static fromEntries(options: LayerIndexOptions, entries: Iterable<{ id: number; vector: Float32Array }>): LayerIndex {
    const list = [...entries].sort((a, b) => a.id - b.id);
    const index = new LayerIndex(options);
    const exact = new ExactStore(index.options.dim, index.options.space, list.length);
    for (let i = 0; i < list.length; i++) {
      const { id, vector } = list[i]!;
      checkChunkId(id);
      checkVector(`representative of chunk ${id}`, vector, index.options.dim);
      if (i > 0 && list[i - 1]!.id === id) throw new VigilError('BAD_INPUT', `chunk ${id} appears twice`);
      exact.add(id, vector);
    }
    index.exact = exact;
    if (exact.size >= index.options.hnswThreshold) index.startMigration();
    return index;
  }

  private pendingBackfill(): number {
    if (this.mode !== 'migrating') return 0;
    const ids = this.exact!.ids();
    const row = searchId(ids, ids.length, this.nextBackfillId);
    return ids.length - (row < 0 ? -row - 1 : row);
  }

  /**
   * Starts the graph. For 'ip' it indexes vectors minus their current mean (see hnswStore.ts);
   * later vectors use the same offset, which keeps ranking exact even if the stream drifts.
   */
  private startMigration(): void {
    const exact = this.exact!;
    const dim = this.options.dim;
    const mean = new Float64Array(dim);
    for (let row = 0; row < exact.size; row++) {
      const v = exact.rowVector(row);
      for (let i = 0; i < dim; i++) mean[i]! += v[i]!;
    }
    // A mean of a handful of vectors is mostly noise, and shifting by noise makes the graph worse.
    const n = exact.size >= MIN_OFFSET_SAMPLES ? exact.size : 0;
    const offset = Float32Array.from(mean, (s) => (n > 0 ? s / n : 0));
    const o = this.options;
    this.graph = HnswStore.create(o.space, dim, o.hnsw, Math.ceil(exact.size * 1.25) + 1024, offset);
    this.nextBackfillId = 0;
  }

  /** The allowed ids (ascending) that the graph holds. */
  private liveAmong(allowed: ArrayLike<number>): Uint32Array {
    const out = new Uint32Array(allowed.length);
    let n = 0;
    for (let i = 0; i < allowed.length; i++) if (this.graph!.has(allowed[i]!)) out[n++] = allowed[i]!;
    return out.subarray(0, n);
  }

  /** Exact top-k among the given live ids (ascending), reading vectors back from the graph. */
  private exactOverGraph(query: Float32Array, k: number, ids: Uint32Array): Hits {
    const scores = new Float64Array(ids.length);
    for (let i = 0; i < ids.length; i++) scores[i] = this.graph!.scoreOf(query, ids[i]!);
    return bestK(ids, scores, k);
  }
}
