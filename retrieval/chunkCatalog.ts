// The stream's indexed chunks and their times, kept once for all layers: the time filter, the
// exclusion set and the time ordering of results are answered here, and the layers receive the
// allowed ids as one ascending list.
import { VigilError } from '../common/errors.js';
import { bytesOf, float64At, readExact, uint32At } from './persist.js';
import { searchId } from './sortedIds.js';

/** A closed interval of stream time in seconds; either end may be infinite. */
export interface TimeRange {
  start: number;
  end: number;
}

export interface ChunkFilter {
  /** Keep only chunks whose [tStart, tEnd] overlaps this range (ends included). */
  timeRange?: TimeRange;
  /** Never return these chunks. */
  exclude?: ReadonlySet<number>;
}

export class ChunkCatalog {
  private ids: Uint32Array = new Uint32Array(64);
  private starts: Float64Array = new Float64Array(64);
  private ends: Float64Array = new Float64Array(64);
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(id: number): boolean {
    return searchId(this.ids, this.count, id) >= 0;
  }

  /** All ids, ascending (a copy). */
  allIds(): Uint32Array {
    return this.ids.slice(0, this.count);
  }

  /** Lowest id, or undefined when empty (ids are kept ascending: O(1)). */
  minId(): number | undefined {
    return this.count === 0 ? undefined : this.ids[0];
  }

  /** Highest id, or undefined when empty. */
  maxId(): number | undefined {
    return this.count === 0 ? undefined : this.ids[this.count - 1];
  }

  /** Ids in [from, to), ascending (a copy): two binary searches, so O(log n + result). */
  idsBetween(from: number, to: number): Uint32Array {
    const at = (id: number): number => {
      const i = searchId(this.ids, this.count, id);
      return i >= 0 ? i : -i - 1;
    };
    const lo = at(from);
    const hi = Math.max(lo, at(to));
    return this.ids.slice(lo, hi);
  }

  times(id: number): { tStart: number; tEnd: number } | undefined {
    const i = searchId(this.ids, this.count, id);
    return i < 0 ? undefined : { tStart: this.starts[i]!, tEnd: this.ends[i]! };
  }

  add(id: number, tStart: number, tEnd: number): void {
    const found = searchId(this.ids, this.count, id);
    if (found >= 0) throw new Error(`ChunkCatalog: chunk ${id} already present`);
    const at = -found - 1;
    if (this.count === this.ids.length) this.grow();
    if (at < this.count) {
      this.ids.copyWithin(at + 1, at, this.count);
      this.starts.copyWithin(at + 1, at, this.count);
      this.ends.copyWithin(at + 1, at, this.count);
    }
    this.ids[at] = id;
    this.starts[at] = tStart;
    this.ends[at] = tEnd;
    this.count++;
  }

  /** Raises a chunk's tEnd (never lowers it; frame gating extends the newest chunk). False when the id is absent. */
  extend(id: number, tEnd: number): boolean {
    const i = searchId(this.ids, this.count, id);
    if (i < 0) return false;
    if (tEnd > this.ends[i]!) this.ends[i] = tEnd;
    return true;
  }

  /** Removes the ids present; returns the ids that were removed. */
  remove(ids: ReadonlySet<number>): number[] {
    const removed: number[] = [];
    let kept = 0;
    for (let i = 0; i < this.count; i++) {
      const id = this.ids[i]!;
      if (ids.has(id)) {
        removed.push(id);
        continue;
      }
      this.ids[kept] = id;
      this.starts[kept] = this.starts[i]!;
      this.ends[kept] = this.ends[i]!;
      kept++;
    }
    this.count = kept;
    return removed;
  }

  /**
   * The ascending ids that pass the filter, or undefined when the filter lets every chunk through
   * (then the layers search unfiltered, which is faster in graph mode).
   */
  allowedIds(filter: ChunkFilter): Uint32Array | undefined {
    const range = filter.timeRange;
    const exclude = filter.exclude;
    if (range === undefined && (exclude === undefined || exclude.size === 0)) return undefined;
    const out = new Uint32Array(this.count);
    let n = 0;
    for (let i = 0; i < this.count; i++) {
      const id = this.ids[i]!;
      if (range && (this.ends[i]! < range.start || this.starts[i]! > range.end)) continue;
      if (exclude && exclude.has(id)) continue;
      out[n++] = id;
    }
    return n === this.count ? undefined : out.subarray(0, n);
  }

  /** Ids ordered by stream time (tStart, then id), the order chunks take in the context. */
  timeOrder(ids: readonly number[]): number[] {
    const keyed = ids.map((id) => {
      const i = searchId(this.ids, this.count, id);
      if (i < 0) throw new Error(`ChunkCatalog: chunk ${id} is not catalogued`);
      return { id, t: this.starts[i]! };
    });
    keyed.sort((a, b) => a.t - b.t || a.id - b.id);
    return keyed.map((k) => k.id);
  }

  /** ids (u32), then tStart (f64), then tEnd (f64), host byte order. */
  serialize(): Uint8Array {
    const n = this.count;
    const out = new Uint8Array(n * 20);
    out.set(bytesOf(this.ids.subarray(0, n)), 0);
    out.set(bytesOf(this.starts.subarray(0, n)), n * 4);
    out.set(bytesOf(this.ends.subarray(0, n)), n * 12);
    return out;
  }

  static async load(file: string, count: number): Promise<ChunkCatalog> {
    const data = await readExact(file, count * 20);
    const catalog = new ChunkCatalog();
    const ids = uint32At(data, 0, count);
    const starts = float64At(data, count * 4, count);
    const ends = float64At(data, count * 12, count);
    for (let i = 0; i < count; i++) {
      if (i > 0 && ids[i]! <= ids[i - 1]!) throw new VigilError('INDEX_CORRUPT', `${file}: chunk ids are not ascending`);
      if (Number.isNaN(starts[i]) || Number.isNaN(ends[i])) throw new VigilError('INDEX_CORRUPT', `${file}: chunk ${ids[i]} has no time`);
    }
    catalog.ids = ids.length > 0 ? ids : new Uint32Array(64);
    catalog.starts = starts.length > 0 ? starts : new Float64Array(64);
    catalog.ends = ends.length > 0 ? ends : new Float64Array(64);
    catalog.count = count;
    return catalog;
  }

  private grow(): void {
    const cap = this.ids.length * 2;
    const ids = new Uint32Array(cap);
    ids.set(this.ids);
    const starts = new Float64Array(cap);
    starts.set(this.starts);
    const ends = new Float64Array(cap);
    ends.set(this.ends);
    this.ids = ids;
    this.starts = starts;
    this.ends = ends;
  }
}
