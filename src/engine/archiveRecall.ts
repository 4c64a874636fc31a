// The question path over an archive (issue 15): archived chunks keep no KV, only their frame's
// still and their index entry, so a question that retrieves them re-encodes their stills through
// the vision encoder and a decoder prefill over [prefix | sink frames] (their original window is
// gone: that is the archive's whole difference, docs/PERFORMANCE.md "Memory tiers"). Re-encoding
// costs a frame's encode (~1.3 s at smolvlm2-256m on 2 cores), so a question re-encodes only the
// archived chunks that stand out from what the KV tiers offer (on some layer, above that layer's
// best KV candidate by more than the spread of its KV top-r): evidence only the archive holds, not
// a haystack it merely has more of; at most `maxReencode` of them, the best first. The slots the
// others held go to the best chunks that still hold KV.
import type { FrameChunk } from '../../memory/frameChunk.js';
import type { ChunkStore } from '../../memory/store/index.js';
import type { TimeRange } from '../../retrieval/index.js';
import { preprocessVideoFrame } from '../model/preprocess/imagePreprocessor.js';
import type { LoadedContext, Selection } from './contextLoader.js';
import type { QuestionMemory } from './questionAnswerer.js';
import type { RgbImage } from './frameGate.js';
import { readArchivedFrames } from './stillGroups.js';
import type { StreamEncoder } from './streamEncoder.js';

/** Archived chunks a question re-encodes by default (~10 s of model time at smolvlm2-256m here). */
export const DEFAULT_MAX_REENCODE = 8;
/** The most a caller may ask for (each is ~1.3 s of model time at smolvlm2-256m here). */
export const MAX_REENCODE_LIMIT = 64;

export interface ReencodeProgress {
  phase: 'reencode';
  /** Frames re-encoded so far, of `total`. */
  done: number;
  total: number;
}

/** What a question did with the archive. */
export interface ArchiveReport {
  /** Archived chunks retrieval chose. */
  retrieved: number;
  /** Of them, re-encoded into the answer's context. */
  reencoded: number;
  /** Left out: past maxReencode, or without a readable still (their slots went to chunks holding KV). */
  skipped: number;
  reencodeMs: number;
}

export interface ArchiveRecallOptions {
  maxReencode: number;
  onProgress?: (progress: ReencodeProgress) => void;
}

/** What the recall needs from the stream: its store, encoder, window and memory's select/load. */
export interface RecallSource {
  store: Pick<ChunkStore, 'archivedIds' | 'readStills' | 'tierSpans' | 'chunkSpan' | 'pin'>;
  encoder: StreamEncoder;
  memory: QuestionMemory;
  /** Retrieval within a time range (the question's own, or the KV tiers'). */
  selectIn(queries: Float32Array[], r: number, exclude: ReadonlySet<number>, range: TimeRange | undefined): Promise<Selection>;
  /** Loading with chunks served from RAM (the re-encoded ones). */
  loadWith(selection: Selection, includeWindow: boolean, recalled: ReadonlyMap<number, FrameChunk>): Promise<LoadedContext>;
  /** The question's time range, if any. */
  range: TimeRange | undefined;
  /** Side of the square frame the encoder takes (what ingest scales frames to). */
  frameSide: number;
}

/** Rounds of leaving out archived chunks whose stills cannot be read before giving up on the archive. */
const MAX_STILL_ROUNDS = 2;

/**
 * A QuestionMemory over `source.memory` whose select() settles archived chunks: it keeps the best
 * `maxReencode`, refills the other slots from the KV tiers, and re-encodes the kept ones; load()
 * serves them from RAM. One per question (it holds that question's re-encoded chunks).
 */
export class ArchiveRecall implements QuestionMemory {
  readonly report: ArchiveReport = { retrieved: 0, reencoded: 0, skipped: 0, reencodeMs: 0 };
  private recalled = new Map<number, FrameChunk>();
  /** Releases the pins on the settled selection (held from the re-encoding until load() is done). */
  private unpin: (() => void) | null = null;

  constructor(
    private readonly source: RecallSource,
    private readonly options: ArchiveRecallOptions,
  ) {}

  get window(): QuestionMemory['window'] {
    return this.source.memory.window;
  }

  fixed(chunkIds: readonly number[]): Selection {
    return this.source.memory.fixed(chunkIds);
  }

  async select(queries: Float32Array[], r: number, exclude: ReadonlySet<number>): Promise<Selection> {
    return this.settle(queries, r, exclude, 0);
  }

  load(selection: Selection, includeWindow: boolean): Promise<LoadedContext> {
    return this.source.loadWith(selection, includeWindow, this.recalled).finally(() => this.releasePins());
  }

  /** Pins `ids` in place of what this question held: background demotion leaves them be until load() ends. */
  private holdPins(ids: readonly number[]): void {
    const release = this.source.store.pin(ids);
    this.releasePins();
    this.unpin = release;
  }

  private releasePins(): void {
    this.unpin?.();
    this.unpin = null;
  }

  private async settle(queries: Float32Array[], r: number, exclude: ReadonlySet<number>, round: number): Promise<Selection> {
    const { store, range } = this.source;
    const first = await this.source.selectIn(queries, r, exclude, range);
    const archived = store.archivedIds(first.chunkIds.flat());
    if (archived.size === 0) return this.reselecting(first, queries, r, exclude);
    // The best the KV tiers offer, per layer: what an archived chunk must clearly beat to be re-encoded.
    const kvRange = this.kvTimeRange();
    const refill = kvRange ? await this.source.selectIn(queries, r, new Set([...exclude, ...archived]), kvRange) : null;
    const refillArchived = refill ? store.archivedIds(refill.chunkIds.flat()) : new Set<number>();
    const ranked = refill ? standingOut(first, archived, refill, refillArchived) : rankBySummedScore(first, archived);
    const cap = round < MAX_STILL_ROUNDS ? this.options.maxReencode : 0;
    const keep = new Set(ranked.slice(0, cap));
    let selection = first;
    if (keep.size < archived.size) {
      selection = mergeSelections(first, refill, (id) => (archived.has(id) ? keep.has(id) : !refillArchived.has(id)), r);
    }
    const chosen = new Set(selection.chunkIds.flat());
    // Re-encoding takes seconds: the KV chunks chosen beside it must not be demoted meanwhile.
    this.holdPins([...chosen]);
    try {
      const toEncode = [...keep].filter((id) => chosen.has(id));
      const { frames, failed } = await readArchivedFrames((ids) => store.readStills(ids), toEncode);
      if (failed.length > 0 && round < MAX_STILL_ROUNDS) {
        // A still that cannot be read (damaged, its group's holder gone, or a chunk archived without one): choose again without it.
        return await this.settle(queries, r, new Set([...exclude, ...failed.map((f) => f.chunkId)]), round + 1);
      }
      this.report.retrieved = archived.size;
      this.report.skipped = archived.size - frames.size;
      await this.reencode(toEncode.filter((id) => frames.has(id)), frames);
    } catch (error) {
      this.releasePins();
      throw error;
    }
    this.report.reencoded = this.recalled.size;
    // A layer that still names an archived chunk without a still (last round) drops it.
    const usable = mergeSelections(selection, null, (id) => !archived.has(id) || this.recalled.has(id), r);
    return this.reselecting(usable, queries, r, exclude);
  }

  /** The same selection, whose reselect (chunks found damaged at load) settles again without them. */
  private reselecting(selection: Selection, queries: Float32Array[], r: number, exclude: ReadonlySet<number>): Selection {
    return { ...selection, reselect: (without) => this.settle(queries, r, new Set([...exclude, ...without]), 0) };
  }

  /** Stream time held in KV tiers (after the archive, which is always the oldest), within the question's range. */
  private kvTimeRange(): TimeRange | null {
    const kv = this.source.store.tierSpans().filter((s) => s.dtype !== 'archive');
    if (kv.length === 0) return null;
    const start = Math.max(kv[0]!.tStart, this.source.range?.start ?? -Infinity);
    const end = this.source.range?.end ?? Infinity;
    return start <= end ? { start, end } : null;
  }

  /** Each still through the vision encoder and a prefill over [prefix | sink frames], at its own time. */
  private async reencode(ids: readonly number[], frames: ReadonlyMap<number, RgbImage>): Promise<void> {
    const { encoder, memory, frameSide } = this.source;
    const started = performance.now();
    const window = encoder.newWindow(memory.window.options);
    window.restore(memory.window.sinkChunks, []);
    const total = ids.length;
    this.options.onProgress?.({ phase: 'reencode', done: 0, total });
    let done = 0;
    for (const id of ids) {
      if (this.recalled.has(id)) continue;
      const span = this.source.store.chunkSpan(id);
      if (span === null) continue; // retention took it meanwhile: loading reports it
      const rgb = frames.get(id)!;
      const image = await preprocessVideoFrame({ data: rgb.data, width: rgb.width, height: rgb.height, channels: 3 }, encoder.model.imageConfig, frameSide);
      const { chunk } = await encoder.encodeFrame(image, span.tStart, window);
      this.recalled.set(id, { ...chunk, chunkId: id, tStart: span.tStart, tEnd: span.tEnd });
      this.options.onProgress?.({ phase: 'reencode', done: ++done, total });
    }
    this.report.reencodeMs += performance.now() - started;
  }
}

/** Archived ids in the selection, best first by their score summed over the layers that chose them (nothing holds KV to compare with). */
function rankBySummedScore(selection: Selection, archived: ReadonlySet<number>): number[] {
  const total = new Map<number, number>();
  selection.chunkIds.forEach((ids, layer) =>
    ids.forEach((id, i) => {
      if (archived.has(id)) total.set(id, (total.get(id) ?? 0) + (selection.scores[layer]?.[i] ?? 0));
    }),
  );
  return [...total.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([id]) => id);
}

/**
 * Archived ids that stand out from what the KV tiers offer, best first: on some layer the chunk
 * beats that layer's best KV candidate by more than the spread of the layer's KV top-r (best minus
 * r-th). Near-ties (a haystack the archive merely has more of) are not worth a frame's encode;
 * evidence that only the archive holds is. Ranked by that margin in units of the spread.
 */
function standingOut(first: Selection, archived: ReadonlySet<number>, kv: Selection, kvArchived: ReadonlySet<number>): number[] {
  const best = new Map<number, number>();
  first.chunkIds.forEach((ids, layer) => {
    const kvScores = (kv.scores[layer] ?? []).filter((_, i) => !kvArchived.has(kv.chunkIds[layer]![i]!));
    if (kvScores.length === 0) return;
    let top = -Infinity;
    let low = Infinity;
    for (const s of kvScores) {
      top = Math.max(top, s);
      low = Math.min(low, s);
    }
    const spread = top - low;
    ids.forEach((id, i) => {
      if (!archived.has(id)) return;
      const margin = (first.scores[layer]?.[i] ?? 0) - top;
      if (!(margin > spread)) return;
      const units = margin / Math.max(spread, Number.EPSILON);
      best.set(id, Math.max(best.get(id) ?? 0, units));
    });
  });
  return [...best.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([id]) => id);
}

/**
 * Per layer, the best `r` of the entries `allowed` lets through from `a` and then `b` (by score,
 * each id once); every layer is then cut to the shortest layer's count, best first, so that every
 * layer's context has one length. reselect is left to the caller.
 */
export function mergeSelections(a: Selection, b: Selection | null, allowed: (id: number) => boolean, r: number): Selection {
  const layers = a.chunkIds.map((ids, layer) => {
    const best = new Map<number, number>();
    const take = (s: Selection) =>
      (s.chunkIds[layer] ?? []).forEach((id, i) => {
        const score = s.scores[layer]?.[i] ?? 0;
        if (allowed(id) && !(best.get(id)! >= score)) best.set(id, score);
      });
    take(a);
    if (b) take(b);
    return [...best.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, r);
  });
  const m = Math.min(...layers.map((l) => l.length));
  return {
    chunkIds: layers.map((l) => l.slice(0, m).map(([id]) => id)),
    scores: layers.map((l) => l.slice(0, m).map(([, s]) => s)),
    reselect: null,
  };
}
