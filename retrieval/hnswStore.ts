// Approximate store: one hnswlib HNSW graph, with the bookkeeping hnswlib leaves to its caller.
// - Inputs must be plain number[] (typed arrays throw), so vectors are copied into one reused array.
// - addPoint is synchronous and blocks the event loop (1,500-3,000 points per second at 192-d
//   with the default M 32 / efConstruction 400): one insert per evicted chunk and layer is fine,
//   bulk loads must be spread out (LayerIndex backfills in slices; StreamIndex.rebuild yields).
// - getCurrentCount() includes deleted points and the library keeps no live list, so the live
//   ids are tracked here (and saved beside the graph). Deleted slots are reused by later inserts
//   (allowReplaceDeleted), so retention keeps the graph's size bounded.
// - ef is not saved in the file; the caller's meta carries it.
// - 'ip' distance is 1 - dot and 'cosine' is 1 - cos(q, v) (vectors normalised on insert), so
//   scores come back as 1 - distance, in float32 precision.
// - For 'ip' the graph indexes v - offset, where offset is the mean of the vectors the graph was
//   built from: real keys share a large common component, and without it every point's best
//   inner-product neighbours are the same few large-norm points, which makes a poor graph. Ranking
//   is unchanged (q . (v - offset) differs from q . v by q . offset for every v), and the score
//   adds q . offset back.
import hnswlib from 'hnswlib-node';
import type { HierarchicalNSW } from 'hnswlib-node';
import { dot } from '../kernels/similarity.js';
import type { Hits } from './hits.js';
import { IdBitSet } from './idBitSet.js';
import { rankHits } from './hits.js';
import type { SimilaritySpace } from './space.js';

export interface HnswParams {
  /** Graph degree (hnswlib M; level 0 keeps 2M links). */
  m: number;
  /** Candidate list size while inserting. */
  efConstruction: number;
  /** Candidate list size while searching (at least k is used). */
  ef: number;
  /** Seed of the level generator: the same inserts in the same order give the same graph. */
  seed: number;
}

export const DEFAULT_HNSW_PARAMS: HnswParams = { m: 32, efConstruction: 400, ef: 256, seed: 100 };

export class HnswStore {
  private readonly index: HierarchicalNSW;
  private readonly live = new IdBitSet();
  /** Largest label ever inserted: a smaller id that is not live may still sit in the graph, deleted. */
  private maxLabel = -1;
  private readonly row: number[];
  private params: HnswParams;

  private constructor(
    readonly space: SimilaritySpace,
    readonly dim: number,
    params: HnswParams,
    /** ip only: subtracted from stored vectors; zeros for cosine. */
    readonly offset: Float32Array,
    index: HierarchicalNSW,
  ) {
    this.params = { ...params };
    this.index = index;
    this.row = new Array<number>(dim).fill(0);
  }

  static create(space: SimilaritySpace, dim: number, params: HnswParams, capacity: number, offset?: Float32Array): HnswStore {
    const index = new hnswlib.HierarchicalNSW(space, dim);
    index.initIndex({
      maxElements: Math.max(16, capacity),
      m: params.m,
      efConstruction: params.efConstruction,
      randomSeed: params.seed,
      allowReplaceDeleted: true,
    });
    index.setEf(params.ef);
    const shift = space === 'ip' && offset ? Float32Array.from(offset) : new Float32Array(dim);
    return new HnswStore(space, dim, params, shift, index);
  }

  /**
   * Reads a graph written by save(). The caller has checked the file against its meta; `ids` are
   * the live labels saved beside it. Throws (plain Error) when hnswlib rejects the file or the ids
   * disagree with it.
   */
  static async load(file: string, space: SimilaritySpace, dim: number, params: HnswParams, offset: Float32Array, ids: Uint32Array): Promise<HnswStore> {
    const index = new hnswlib.HierarchicalNSW(space, dim);
    await index.readIndex(file, true);
    if (index.getNumDimensions() !== dim) throw new Error(`graph has ${index.getNumDimensions()} dimensions, meta says ${dim}`);
    index.setEf(params.ef);
    const store = new HnswStore(space, dim, params, offset, index);
    const labels = new IdBitSet();
    for (const label of index.getIdsList()) {
      labels.add(label);
      if (label > store.maxLabel) store.maxLabel = label;
    }
    for (const id of ids) {
      if (!labels.has(id)) throw new Error(`live id ${id} is not in the graph`);
      if (!store.live.add(id)) throw new Error('live id list has duplicates');
    }
    if (store.live.size > index.getCurrentCount()) throw new Error('more live ids than graph slots');
    return store;
  }

  get size(): number {
    return this.live.size;
  }

  get hnswParams(): HnswParams {
    return { ...this.params };
  }

  /** Slots in use, deleted ones included (hnswlib's count). */
  get slots(): number {
    return this.index.getCurrentCount();
  }

  get capacity(): number {
    return this.index.getMaxElements();
  }

  has(id: number): boolean {
    return this.live.has(id);
  }

  liveIds(): Uint32Array {
    return this.live.toArray();
  }

  setEf(ef: number): void {
    this.index.setEf(ef);
    this.params.ef = ef;
  }

  add(id: number, vector: Float32Array): void {
    if (this.live.has(id)) throw new Error(`HnswStore: id ${id} already present`);
    this.fill(vector, this.offset);
    if (id <= this.maxLabel) {
      // The id was removed earlier and may still be in the graph, deleted; with replacement enabled
      // hnswlib refuses to addPoint over it, so undelete and update it in place instead.
      try {
        this.index.unmarkDelete(id);
        this.index.addPoint(this.row, id);
        this.live.add(id);
        return;
      } catch {
        // Not in the graph any more (its slot was reused): a plain insert below.
      }
    }
    const deleted = this.index.getCurrentCount() - this.live.size;
    if (deleted === 0 && this.index.getCurrentCount() >= this.index.getMaxElements()) {
      // Grow geometrically: resizeIndex reallocates the whole level-0 block.
      const cap = this.index.getMaxElements();
      this.index.resizeIndex(Math.max(cap * 2, cap + 1024));
    }
    this.index.addPoint(this.row, id, deleted > 0);
    this.live.add(id);
    if (id > this.maxLabel) this.maxLabel = id;
  }

  /** Marks ids deleted (ids not live are ignored); returns how many were live. */
  remove(ids: Iterable<number>): number {
    let n = 0;
    for (const id of ids) {
      if (!this.live.delete(id)) continue;
      this.index.markDelete(id);
      n++;
    }
    return n;
  }

  /**
   * Up to k approximate best live ids with scores, ranked like exact search. `allows` restricts the
   * result (hnswlib calls it for every candidate it visits, so it must be cheap and never throw).
   */
  search(query: Float32Array, k: number, allows?: (id: number) => boolean): Hits {
    const want = Math.min(k, this.live.size);
    if (want === 0) return { ids: [], scores: [] };
    this.fill(query);
    const found = allows ? this.index.searchKnn(this.row, want, allows) : this.index.searchKnn(this.row, want);
    const shift = this.space === 'ip' ? dot(query, this.offset) : 0;
    const scores = found.distances.map((d) => 1 - d + shift);
    return rankHits(found.neighbors, scores, want);
  }

  /** The stored vector of a live id, as added (ip: the offset put back; cosine: unit length). */
  vector(id: number): Float32Array {
    const stored = this.index.getPoint(id);
    const out = new Float32Array(this.dim);
    for (let i = 0; i < this.dim; i++) out[i] = stored[i]! + (this.space === 'ip' ? this.offset[i]! : 0);
    return out;
  }

  /** Exact score of a live id from the stored vector (slow: hnswlib copies it out element by element). */
  scoreOf(query: Float32Array, id: number): number {
    const stored = this.index.getPoint(id);
    if (this.space === 'ip') {
      let s = 0;
      for (let i = 0; i < this.dim; i++) s += query[i]! * (stored[i]! + this.offset[i]!);
      return s;
    }
    // Stored cosine vectors are unit length (or zero).
    let s = 0;
    let qq = 0;
    for (let i = 0; i < this.dim; i++) {
      s += query[i]! * stored[i]!;
      qq += query[i]! * query[i]!;
    }
    if (qq === 0 || s === 0) return 0;
    const c = s / Math.sqrt(qq);
    return c > 1 ? 1 : c < -1 ? -1 : c;
  }

  /**
   * Shrinks the graph's allocation to the slots in use, so the next load allocates no more than
   * the graph holds (hnswlib allocates per-slot locks and levels for its whole capacity). The next
   * add grows it again: call this only when no more adds are expected (a clean shutdown).
   */
  compact(): void {
    const slots = Math.max(16, this.index.getCurrentCount());
    if (this.index.getMaxElements() > slots) this.index.resizeIndex(slots);
  }

  async save(file: string): Promise<void> {
    await this.index.writeIndex(file);
  }

  private fill(vector: Float32Array, minus?: Float32Array): void {
    const row = this.row;
    if (minus) for (let i = 0; i < this.dim; i++) row[i] = vector[i]! - minus[i]!;
    else for (let i = 0; i < this.dim; i++) row[i] = vector[i]!;
  }
}
