import fs from 'node:fs';
import type { ContextWindow } from '../../memory/contextWindow.js';
import type { FrameChunk, KvStorageDtype, UnnumberedChunk } from '../../memory/frameChunk.js';
import { type ChunkLayers, chunkLayers, ChunkStore } from '../../memory/store/index.js';
import { validateChunk } from '../../memory/store/chunkValidation.js';
import { asStoredRepresentatives } from '../../memory/store/representatives.js';
import type { FsyncPolicy, RetentionPolicy, StoreStats } from '../../memory/store/types.js';
import type { ChunkTimes, SealingOptions, StreamIndex, TimeRange } from '../../retrieval/index.js';
import { isVigilError, VigilError } from '../../common/errors.js';
import { sharedBufferPool } from '../model/bufferPool.js';
import { fixedSelection, type LoadedContext, loadContext, type ReadLayers, type Selection } from './contextLoader.js';
import { streamIndexDir, streamStoreDir } from './dataLayout.js';
import { openStreamIndex, streamIndexOptions, type SkippedChunk as UnindexedChunk } from './indexReconcile.js';
import type { QuestionMemory } from './questionAnswerer.js';
import { kvTier, type MemoryHorizon, memoryHorizon } from './memoryHorizon.js';
import { packStillGroups } from './stillGroups.js';

export interface StreamMemoryOptions {
  /** The stream's folder: `kv/` (chunk store) and `index/` (retrieval index) live in it. */
  dir: string;
  /** How retrieval scores chunks: 'ip' (dot product, ReKV's published numbers; default) or 'cosine'. */
  similarity?: 'ip' | 'cosine';
  /** Payload dtype on disk; default float32 (bit-exact). */
  storageDtype?: KvStorageDtype;
  fsync?: FsyncPolicy;
  retention?: RetentionPolicy;
  /** RAM budget of the chunk reload cache, bytes. */
  cacheBytes?: number;
  segmentBytes?: number;
  /** 'per-layer' (ReKV) or 'shared' (one chunk set for every layer). */
  retrievalMode?: 'per-layer' | 'shared';
  /** How older chunks are sealed into index blocks (defaults: retrieval/chunkSealer.ts). */
  indexSealing?: Omit<SealingOptions, 'dir' | 'readOnly'>;
}

/** What a restart found: how the saved index was brought in line with the manifest. */
export interface MemoryOpenReport {
  indexRebuilt: boolean;
  indexAdded: number;
  indexRemoved: number;
  /** Manifest rows the index could not take (non-finite or misshapen representatives): never retrieved. */
  unindexable: UnindexedChunk[];
  openMs: number;
}

export interface StreamMemoryStats {
  nextChunkId: number;
  contextFrames: number;
  storedChunks: number;
  storedBytes: number;
  indexedChunks: number;
  lastFrameTime: number | null;
  /** Chunks waiting to be committed again after a full disk turned them back. */
  heldBackChunks: number;
  /** Chunks a full disk kept out for good (they fall inside a 'disk full' gap). */
  lostChunks: number;
}

/** Archived imports between waits for the index's background sealing (half a default block). */
const IMPORT_SEAL_EVERY = 1024;

/** Chunks past the sinks looked at for sinks after a restart (archived stragglers of a mixed segment are skipped). */
const SINK_SEARCH_SLACK = 64;

/** A restart that changed the index this much saves it at once rather than at shutdown. */
const RESAVE_AFTER_CHANGES = 1000;

/** Chunks a full disk turned back, kept in RAM to be committed again; past this the oldest are lost. */
const MAX_HELD_BACK = 16;

type RemovalListener = (chunkIds: readonly number[]) => void;

/**
 * One stream's memory, the single owner of everything a stream remembers: the context window
 * (sinks + recent frames in RAM), chunk numbering, the chunk store on disk, the retrieval index
 * (and its time catalog). A chunk enters by append() and flows window -> store (payload, then
 * manifest row) -> index; questions select() and load() from it. Retention's removals reach every
 * subscriber through one event (onRemoved).
 *
 * Write path per frame: append() validates the chunk once (the store's validator), numbers it and
 * pushes it into the window synchronously; the store write and the index add run behind it without
 * holding up the next frame. A failed write or index add puts the memory in an error state that the
 * next append() or settle() throws (never an unhandled rejection). A full disk (DISK_FULL) is
 * thrown once and then cleared, so ingest can pause and come back when space returns; the chunks
 * it turned back are kept and committed again, in id order, by the next append() or flush().
 */
export class StreamMemory implements QuestionMemory {
  private nextChunkId: number;
  private lastT: number | null;
  private readonly pendingCommits = new Set<Promise<void>>();
  /** Ids whose store commit is in flight; retention can remove one before its index add runs. */
  private readonly committing = new Set<number>();
  private readonly removedWhileCommitting = new Set<number>();
  private failure: unknown;
  private diskFull: VigilError | undefined;
  /** Chunks whose commit a full disk turned back, in id order: committed again before anything newer. */
  private heldBack: FrameChunk[] = [];
  /** Chunks a full disk kept out for good (more than MAX_HELD_BACK waiting, or overtaken). */
  private lostChunks = 0;
  /** Frame gating: a committed row's longer span not yet written (see extendLast). */
  private pendingSpan: { chunkId: number; tEnd: number } | null = null;
  private spanWrittenAt = -Infinity;
  private readonly removalListeners = new Set<RemovalListener>();
  private disposing: Promise<void> | null = null;
  private backgroundSave: Promise<void> | undefined;
  /** Counts changes to the index; the saved index is current while the two agree. */
  private indexVersion = 0;
  private savedIndexVersion = 0;
  /** index.sealsSinceOpen at the last save: a seal changes the index without an add. */
  private savedSeals = 0;

  private constructor(
    readonly window: ContextWindow,
    readonly store: ChunkStore,
    readonly index: StreamIndex,
    private readonly options: StreamMemoryOptions,
    readonly openReport: MemoryOpenReport,
  ) {
    const stats = store.stats();
    this.nextChunkId = (stats.lastChunkId ?? -1) + 1;
    this.lastT = stats.tEnd;
  }

  /**
   * Opens (or creates) the memory in options.dir around an empty window. Restart cost does not
   * grow with history: the saved index is reconciled with the manifest by ids, and only the sink
   * and recent frames are read back into the window.
   */
  static async open(window: ContextWindow, options: StreamMemoryOptions): Promise<StreamMemory> {
    const started = performance.now();
    const { numLayers, numKvHeads, headDim } = window.shape;
    fs.mkdirSync(options.dir, { recursive: true });
    const box: { memory?: StreamMemory } = {};
    const store = ChunkStore.open({
      dir: streamStoreDir(options.dir),
      geometry: { numLayers, numKvHeads, headDim },
      ...(options.storageDtype ? { dtype: options.storageDtype } : {}),
      ...(options.fsync ? { fsync: options.fsync } : {}),
      ...(options.retention ? { retention: options.retention } : {}),
      ...(options.cacheBytes !== undefined ? { cacheBytes: options.cacheBytes } : {}),
      ...(options.segmentBytes ? { segmentBytes: options.segmentBytes } : {}),
      // Retention removes manifest rows first; everything derived from them follows.
      onChunksRemoved: (ids) => box.memory?.removed(ids),
      // Stills going to the archive are coded against each other (H.264 groups).
      packArchiveStills: packStillGroups,
    });
    try {
      const opened = await openStreamIndex(streamIndexDir(options.dir), store, streamIndexOptions(options.dir, numLayers, numKvHeads * headDim, options.similarity ?? 'ip', options.indexSealing));
      const report: MemoryOpenReport = {
        indexRebuilt: opened.rebuilt,
        indexAdded: opened.added,
        indexRemoved: opened.removed,
        unindexable: opened.skipped,
        openMs: 0,
      };
      const memory = new StreamMemory(window, store, opened.index, options, report);
      box.memory = memory;
      if (opened.rebuilt || opened.added > 0 || opened.removed > 0) memory.indexVersion++;
      memory.onRemoved((ids) => {
        memory.index.removeChunks(ids);
        memory.indexVersion++;
      });
      await memory.restoreWindow();
      // A rebuilt (or much changed) index is saved now, in the background, so a crash before the
      // next clean shutdown does not rebuild it again; frames and questions go on meanwhile.
      if ((opened.rebuilt && memory.index.size > 0) || opened.added + opened.removed > RESAVE_AFTER_CHANGES) memory.saveInBackground();
      report.openMs = performance.now() - started;
      return memory;
    } catch (error) {
      await store.dispose();
      throw error;
    }
  }

  /** Id the next appended chunk gets. */
  get nextId(): number {
    return this.nextChunkId;
  }

  /** Stream time of the newest chunk (null when empty). */
  get lastFrameTime(): number | null {
    return this.lastT;
  }

  /** Subscribes to removals (retention); returns the unsubscribe function. */
  onRemoved(listener: RemovalListener): () => void {
    this.removalListeners.add(listener);
    return () => this.removalListeners.delete(listener);
  }

  /**
   * Takes a frame's chunk as the stream's next: checked (shape, finiteness, time order) before
   * anything changes, numbered, pushed into the window, and committed to disk and index behind
   * this call. Throws a pending failure first (see the class comment).
   */
  append(chunk: UnnumberedChunk): FrameChunk {
    this.assertOpen();
    this.throwFailure();
    this.writePendingSpan();
    this.recommitHeldBack();
    if (this.lastT !== null && chunk.tStart < this.lastT) throw new VigilError('BAD_INPUT', `frame time ${chunk.tStart} is before the previous frame (${this.lastT})`);
    const numbered: FrameChunk = { ...chunk, chunkId: this.nextChunkId };
    validateChunk(numbered, this.store.geometry, this.nextChunkId > 0 ? this.nextChunkId - 1 : null);
    this.window.push(numbered);
    this.nextChunkId++;
    this.lastT = numbered.tEnd;
    this.commit(numbered);
    return numbered;
  }

  /** Resolves when the store's background demotion has made room (ChunkStore.demotionBackpressure): at once when it need not. */
  async demotionRoom(): Promise<void> {
    await this.store.demotionBackpressure();
  }

  /**
   * Whether new chunks should carry their frame's still (FrameChunk.still): the store may archive
   * them, i.e. it has a budget with demotion and the archive on (RetentionPolicy.archive).
   */
  get keepsStills(): boolean {
    const r = this.store.retention;
    return r?.budgetBytes !== undefined && r.demote !== false && r.archive !== false;
  }

  /**
   * Imports a chunk of old history straight into the archive tier (its still and representatives;
   * its KV is not written): the numbered chunk is committed and indexed before this resolves. Only
   * before the stream's first frame (the window is still empty), in time order: the way to bring
   * in (or fast-forward) history older than what will be encoded live.
   */
  async appendArchived(chunk: UnnumberedChunk): Promise<FrameChunk> {
    this.assertOpen();
    this.throwFailure();
    if (this.window.sinkChunks.length > 0) throw new VigilError('BAD_INPUT', 'archived history can only be imported before the stream\'s first frame');
    if (this.lastT !== null && chunk.tStart < this.lastT) throw new VigilError('BAD_INPUT', `frame time ${chunk.tStart} is before the previous frame (${this.lastT})`);
    const numbered: FrameChunk = { ...chunk, chunkId: this.nextChunkId };
    await this.store.append(numbered, { archive: true });
    this.nextChunkId++;
    this.lastT = numbered.tEnd;
    // As commit() does: the manifest's decoded representatives, so a rebuilt index ranks the same.
    this.index.addChunk(numbered.chunkId, numbered.tStart, numbered.tEnd, asStoredRepresentatives(numbered.representatives));
    this.indexVersion++;
    // Imports come back to back, faster than the index seals in the background: let it catch up
    // now and then, or the recent (RAM) tier grows with the import (bench/horizon.ts saw 0 blocks at 26k).
    if (numbered.chunkId % IMPORT_SEAL_EVERY === IMPORT_SEAL_EVERY - 1) await this.index.idle();
    return numbered;
  }

  /**
   * appendArchived for a run of consecutive chunks, their stills coded together first as demotion
   * codes them (H.264 still groups: stillGroups.ts), so imported history costs what archived history
   * does. The run is checked whole before anything is written (a member must not outlive a holder
   * that was never written).
   */
  async appendArchivedRun(chunks: readonly UnnumberedChunk[]): Promise<FrameChunk[]> {
    this.assertOpen();
    if (this.window.sinkChunks.length > 0) throw new VigilError('BAD_INPUT', 'archived history can only be imported before the stream\'s first frame');
    let last = this.lastT ?? -Infinity;
    for (const c of chunks) {
      if (c.still === undefined) throw new VigilError('BAD_INPUT', 'an archived import needs its frame\'s still');
      if (c.tStart < last) throw new VigilError('BAD_INPUT', `frame time ${c.tStart} is before the previous frame (${last})`);
      last = c.tEnd;
    }
    const first = this.nextChunkId;
    const stills = await packStillGroups(chunks.map((c, i) => ({ chunkId: first + i, still: c.still! })));
    const out: FrameChunk[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const numbered = await this.appendArchived({ ...chunks[i]!, still: stills[i]! });
      if (numbered.chunkId !== first + i) throw new VigilError('INTERNAL', `archived run: chunk ${numbered.chunkId} where ${first + i} was planned`);
      out.push(numbered);
    }
    return out;
  }

  /**
   * Frame gating: a frame at stream time tEnd was not encoded (it barely differed from the newest
   * chunk's frame), so the newest chunk's span now reaches to tEnd. The chunk object (window, or
   * held back by a full disk) carries the new span to a commit still to come; a chunk whose row is
   * committing gets it when the row is in (commit()); a committed chunk's index entry is updated
   * now and its row (one manifest transaction, an fsync under a durable policy: 4.5 ms on this VM)
   * at once, or under an interval fsync policy at most once per interval, the rest by the next
   * append(), settle(), flush() or dispose(): a crash loses at most that much of the span, as it
   * loses that much of uncommitted chunks. A full disk refusing the row update is reported by the
   * next append(), like a refused commit.
   */
  extendLast(tEnd: number): void {
    this.assertOpen();
    this.throwFailure(false);
    const id = this.nextChunkId - 1;
    if (id < 0) throw new VigilError('BAD_INPUT', 'no chunk to extend: the memory is empty');
    if (!Number.isFinite(tEnd) || (this.lastT !== null && tEnd < this.lastT)) {
      throw new VigilError('BAD_INPUT', `frame time ${tEnd} is before the previous frame (${this.lastT})`);
    }
    this.lastT = tEnd;
    const held = this.heldBack.find((c) => c.chunkId === id);
    const chunk = this.window.find(id) ?? held;
    if (chunk && tEnd > chunk.tEnd) chunk.tEnd = tEnd;
    if (held || this.committing.has(id)) return;
    if (this.index.extendChunk(id, tEnd)) this.indexVersion++;
    this.pendingSpan = { chunkId: id, tEnd };
    const fsync = this.store.fsync;
    const intervalMs = typeof fsync === 'object' && 'intervalMs' in fsync ? fsync.intervalMs : 0;
    if (performance.now() - this.spanWrittenAt >= intervalMs) this.writePendingSpan();
  }

  /** Writes the span extendLast() left pending, if any. */
  private writePendingSpan(): void {
    const span = this.pendingSpan;
    if (span === null) return;
    this.pendingSpan = null;
    this.spanWrittenAt = performance.now();
    this.extendRow(span.chunkId, span.tEnd);
  }

  /** A committed row's new span; a full disk refusing it is reported by the next append(). */
  private extendRow(chunkId: number, tEnd: number): void {
    try {
      this.store.extendChunk(chunkId, tEnd);
    } catch (error) {
      if (!(isVigilError(error) && error.code === 'DISK_FULL')) throw error;
      this.diskFull ??= error;
    }
  }

  /**
   * Waits for every appended chunk to be committed and indexed, then throws a pending failure.
   * `diskFull: false` (questions) leaves a frame lost to a full disk for the writer to hear of.
   */
  async settle(options: { diskFull?: boolean } = {}): Promise<void> {
    this.writePendingSpan();
    await Promise.all([...this.pendingCommits]);
    this.throwFailure(options.diskFull ?? true);
  }

  /** Commits what is pending now (one fsync), chunks a full disk held back included, and waits for the index adds. */
  async flush(): Promise<void> {
    this.writePendingSpan();
    this.recommitHeldBack();
    await this.store.flush();
    await this.settle();
  }

  /** r chunks per layer by the question's query vectors (ReKV), never one in `exclude`. */
  select(queries: Float32Array[], r: number, exclude: ReadonlySet<number>, timeRange?: TimeRange): Promise<Selection> {
    const retrieval = this.index.retrieve(queries, r, {
      exclude,
      mode: this.options.retrievalMode ?? 'per-layer',
      ...(timeRange ? { timeRange } : {}),
    });
    const reselect = (without: ReadonlySet<number>) => this.select(queries, r, new Set([...exclude, ...without]), timeRange);
    return Promise.resolve({ chunkIds: retrieval.chunkIds, scores: retrieval.scores, reselect });
  }

  fixed(chunkIds: readonly number[]): Selection {
    return fixedSelection(chunkIds, this.window.shape.numLayers);
  }

  /**
   * Reads and assembles a selection; `recalled` holds chunks already in RAM that the store cannot
   * give as KV (archived chunks the question re-encoded from their stills).
   */
  load(selection: Selection, includeWindow: boolean, recalled: ReadonlyMap<number, FrameChunk> = new Map()): Promise<LoadedContext> {
    // Pinned while they are read: background demotion never moves a chunk this question selected.
    const unpin = this.store.pin(selection.chunkIds.flat());
    return loadContext(this.window, selection, includeWindow, (wanted) => this.readLayers(wanted, recalled), (id) => this.store.readMetas([id])[0]?.tStart ?? null).finally(unpin);
  }

  /**
   * Every stored chunk's times (id order) overlapping `range`: the baselines' candidates (full,
   * uniform, oracle). Read from the manifest's narrow columns when asked, not kept in RAM.
   */
  chunkTimes(range?: TimeRange): ChunkTimes[] {
    const { ids, tStart, tEnd } = this.store.chunkTimes();
    const out: ChunkTimes[] = [];
    for (let i = 0; i < ids.length; i++) {
      if (range && (tEnd[i]! < range.start || tStart[i]! > range.end)) continue;
      out.push({ chunkId: ids[i]!, tStart: tStart[i]!, tEnd: tEnd[i]! });
    }
    return out;
  }

  /** Counters from RAM (no folder walk: ChunkStore.sizes()). */
  stats(): StreamMemoryStats {
    const store = this.store.sizes();
    return {
      nextChunkId: this.nextChunkId,
      contextFrames: this.window.contextChunks.length,
      storedChunks: store.chunkCount,
      storedBytes: store.segmentBytes,
      indexedChunks: this.index.size,
      lastFrameTime: this.lastT,
      heldBackChunks: this.heldBack.length,
      lostChunks: this.lostChunks,
    };
  }

  /**
   * How far back this memory reaches, per fidelity tier, with its outages and what retention
   * forgot (src/engine/memoryHorizon.ts): from the store's segment summaries, plus the chunks still
   * committing and a gated frame's longer span, so `to` is the newest frame the memory covers.
   * `stats`: the store's, when the caller has them already (they measure the folder).
   */
  horizon(stats: StoreStats = this.store.stats()): MemoryHorizon {
    const lastStored = stats.lastChunkId ?? -1;
    return memoryHorizon(stats, (from, to, limit) => this.store.gaps({ from, to, limit }), {
      from: this.window.find(lastStored + 1)?.tStart ?? null,
      to: this.lastT,
      chunks: Math.max(0, this.nextChunkId - 1 - lastStored),
      tier: kvTier(stats.dtype),
    });
  }

  /** Commits what is pending, saves the index, disposes the store. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.shutdown();
    return this.disposing;
  }

  get disposed(): boolean {
    return this.disposing !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private saveInBackground(): void {
    const version = this.indexVersion;
    const seals = this.index.sealsSinceOpen;
    this.backgroundSave = this.index.save(streamIndexDir(this.options.dir)).then(() => {
      this.savedIndexVersion = version;
      this.savedSeals = seals;
    }, (error: unknown) => {
      // Not fatal: the index is whole in RAM and is saved again at shutdown.
      process.emitWarning(`stream memory ${this.options.dir}: saving the reconciled index failed: ${(error as Error).message}`);
    });
  }

  private async shutdown(): Promise<void> {
    try {
      await this.backgroundSave;
      this.writePendingSpan();
      this.recommitHeldBack();
      await this.store.flush();
      await Promise.all([...this.pendingCommits]);
      // A block being sealed is finished first, so the save lists it and nothing writes after dispose.
      await this.index.dispose();
      try {
        // Unchanged since it was loaded or last saved: the saved one is already this index.
        if (this.indexVersion !== this.savedIndexVersion || this.index.sealsSinceOpen !== this.savedSeals) {
          this.index.compact();
          await this.index.save(streamIndexDir(this.options.dir));
        }
      } catch (error) {
        // The saved index is derived data (saved atomically, so the old one stays whole): the next
        // open reconciles it with the manifest. A full disk must not stop the store's clean close.
        process.emitWarning(`stream memory ${this.options.dir}: saving the index failed (it is reconciled at the next open): ${(error as Error).message}`);
      }
    } finally {
      await this.store.dispose();
    }
  }

  private assertOpen(): void {
    if (this.disposing) throw new VigilError('DISPOSED', 'this stream memory has been disposed');
  }

  /**
   * Payload now, manifest row per the fsync policy, then the index (design.md: payload -> manifest
   * -> index). Until it is indexed the chunk is still in the RAM window.
   */
  private commit(chunk: FrameChunk, retry = false): void {
    // The span the row is written with; extendLast() may lengthen the chunk while it commits.
    const rowTEnd = chunk.tEnd;
    // Never rejects: failures land in `failure` / `diskFull`; the promise leaves the set when settled.
    const committed: Promise<void> = this.store
      .append(chunk)
      .then(
        () => {
          // Retention ran in the commit that stored it and already removed it: the index must not gain it.
          if (this.removedWhileCommitting.delete(chunk.chunkId)) return;
          // From here extendLast() writes through to the row; what it added meanwhile goes in now.
          this.committing.delete(chunk.chunkId);
          if (chunk.tEnd > rowTEnd) this.extendRow(chunk.chunkId, chunk.tEnd);
          try {
            // What the manifest stores (int8), so an index rebuilt from it ranks as this one does.
            this.index.addChunk(chunk.chunkId, chunk.tStart, chunk.tEnd, asStoredRepresentatives(chunk.representatives));
            this.indexVersion++;
          } catch (error) {
            throw new VigilError('INTERNAL', `chunk ${chunk.chunkId} is stored but the index refused it: ${(error as Error).message}`, { cause: error });
          }
        },
        (error: unknown) => {
          // A full disk: the store undid the append; the chunk waits to be committed again (the
          // next append or flush), and DISK_FULL is reported once so ingest can pause.
          if (isVigilError(error) && error.code === 'DISK_FULL') {
            this.diskFull ??= error;
            this.holdBack(chunk);
          } else if (retry && isVigilError(error) && error.code === 'BAD_INPUT') {
            // A later chunk was committed meanwhile: this one can no longer go in, in id order.
            this.lostChunks++;
            process.emitWarning(`stream memory ${this.options.dir}: chunk ${chunk.chunkId} (t ${chunk.tStart}) was lost to a full disk: ${error.message}`);
          } else throw error;
        },
      )
      .catch((error: unknown) => {
        this.failure ??= error;
      })
      .finally(() => {
        this.pendingCommits.delete(committed);
        this.committing.delete(chunk.chunkId);
        this.removedWhileCommitting.delete(chunk.chunkId);
      });
    this.pendingCommits.add(committed);
    this.committing.add(chunk.chunkId);
  }

  private holdBack(chunk: FrameChunk): void {
    this.heldBack.push(chunk);
    this.heldBack.sort((a, b) => a.chunkId - b.chunkId);
    while (this.heldBack.length > MAX_HELD_BACK) {
      const lost = this.heldBack.shift()!;
      this.lostChunks++;
      process.emitWarning(`stream memory ${this.options.dir}: chunk ${lost.chunkId} (t ${lost.tStart}) was lost to a full disk (more than ${MAX_HELD_BACK} waiting)`);
    }
  }

  /** Commits again, in id order, the chunks a full disk turned back (before anything newer). */
  private recommitHeldBack(): void {
    if (this.heldBack.length === 0) return;
    const held = this.heldBack;
    this.heldBack = [];
    for (const chunk of held) this.commit(chunk, true);
  }

  private throwFailure(diskFull = true): void {
    if (this.failure !== undefined) throw this.failure;
    const full = this.diskFull;
    if (full && diskFull) {
      this.diskFull = undefined;
      throw full;
    }
  }

  private removed(ids: number[]): void {
    if (this.committing.size > 0) for (const id of ids) if (this.committing.has(id)) this.removedWhileCommitting.add(id);
    for (const listener of this.removalListeners) {
      try {
        listener(ids);
      } catch (error) {
        this.failure ??= error;
      }
    }
  }

  /**
   * Layers of chunks by id: those still in the context window from RAM, the rest from the store,
   * which reads only the wanted layers (into pooled memory, given back by release()).
   */
  private async readLayers(wanted: ReadonlyMap<number, readonly number[]>, recalled: ReadonlyMap<number, FrameChunk>): Promise<ReadLayers> {
    const inRam = (id: number) => this.window.find(id) ?? recalled.get(id);
    const fromDisk = new Map([...wanted].filter(([id]) => !inRam(id)));
    const read = await this.store.readLayers(fromDisk, sharedBufferPool);
    const chunks = new Map<number, ChunkLayers>(read.chunks);
    for (const [id, layers] of wanted) {
      const chunk = inRam(id);
      if (chunk) chunks.set(id, chunkLayers(chunk, layers));
    }
    return { chunks, failed: read.failed, release: read.release };
  }

  /** Position in chunkIds() of the oldest chunk holding KV (archived ones are oldest: demotion goes in stream order). */
  private firstKvIndex(): number {
    const spans = this.store.tierSpans();
    const lastArchive = spans.filter((s) => s.dtype === 'archive').at(-1);
    if (lastArchive === undefined) return 0;
    const ids = this.store.chunkIds();
    // Binary search for the first id past the archive's newest chunk.
    let i = 0;
    let hi = ids.length;
    while (i < hi) {
      const mid = (i + hi) >>> 1;
      if (ids[mid]! <= lastArchive.lastChunkId) i = mid + 1;
      else hi = mid;
    }
    return i;
  }

  /** After a restart: the stored sink frames and the most recent frames back into the window. */
  private async restoreWindow(): Promise<void> {
    if (this.nextChunkId === 0) return;
    const { sinkFrames, windowFrames } = this.window.options;
    // Archived chunks hold no KV: the sinks are the oldest chunks that still do (as after retention
    // deleted the first ones), the recent frames are never archived (keepFullSec).
    const ids = this.store.chunkIds().subarray(this.firstKvIndex());
    const head = Array.from(ids.subarray(0, sinkFrames + SINK_SEARCH_SLACK));
    const archived = this.store.archivedIds(head);
    const sinkIds = head.filter((id) => !archived.has(id)).slice(0, sinkFrames);
    const recentIds = Array.from(ids.subarray(Math.max(sinkFrames, ids.length - windowFrames)));
    const { chunks, failed } = await this.store.readChunks([...sinkIds, ...recentIds]);
    if (failed.length > 0) {
      throw new VigilError('STORE_CORRUPT', `could not restore the context window of ${this.options.dir}: chunks ${failed.map((f) => f.chunkId).join(', ')} are damaged (vigil store repair drops them)`);
    }
    const byId = (list: number[]) => list.map((id) => chunks.get(id)!);
    this.window.restore(byId(sinkIds), byId(recentIds));
  }
}
