// Group commit under an fsync policy. Appends write their payload synchronously and queue their
// manifest row here; a drain fsyncs (on the libuv thread pool, so the event loop keeps running)
// every segment the batch wrote to, then commits all its rows in one transaction, then resolves
// the appends. Drains and other tasks run one at a time, in order, on one promise chain, so rows
// commit in append order and a segment is never closed under a pending fsync.
import fs from 'node:fs';
import type { ChunkRow } from './manifest.js';
import type { AppendReceipt, FsyncPolicy } from './types.js';

export interface PendingCommit {
  row: ChunkRow;
  /** Write descriptor of the segment holding the payload. */
  fd: number;
  receipt: AppendReceipt;
  resolve: (receipt: AppendReceipt) => void;
  reject: (error: unknown) => void;
}

export interface CommitSink {
  /** Makes a segment's written payloads durable (default: fdatasync on the thread pool). */
  sync?(fd: number): Promise<void>;
  /** Commits the rows in one transaction (throws to fail the batch). */
  commit(rows: ChunkRow[]): void;
  /** After a successful commit (retention, bookkeeping). Must not throw. */
  afterCommit(batch: PendingCommit[]): void;
  /**
   * An fsync or commit failed (`batch` is set for a drain, not for an enqueued task); the batch is
   * rejected with the returned error after this returns.
   */
  onFailure(error: unknown, batch?: { stage: 'fsync' | 'commit'; items: PendingCommit[] }): unknown;
}

export function fdatasyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
}

export class CommitQueue {
  private pending: PendingCommit[] = [];
  /** The batch drain() is fsyncing and committing (its rows are not in the manifest yet). */
  private inFlight: readonly PendingCommit[] = [];
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly policy: FsyncPolicy,
    private readonly sink: CommitSink,
  ) {}

  /** Appended chunks whose rows have not committed yet. */
  get size(): number {
    return this.pending.length;
  }

  /** Highest chunk id waiting to commit, or null. */
  lastPendingId(): number | null {
    return this.pending.at(-1)?.row.chunkId ?? null;
  }

  /** Removes the pending appends matching `pred` (not rejected here: the caller does). */
  take(pred: (p: PendingCommit) => boolean): PendingCommit[] {
    const taken = this.pending.filter(pred);
    if (taken.length > 0) this.pending = this.pending.filter((p) => !pred(p));
    return taken;
  }

  /** Pending appends in a segment (its tail cannot be cut while they wait). */
  hasPendingIn(segment: number): boolean {
    return this.pending.some((p) => p.row.segment === segment);
  }

  /**
   * Segments holding payloads whose rows have not committed: pending, or in the batch being fsynced
   * now (retention must not delete them: a segment whose first rows are in flight has no summary
   * yet, sorts as the oldest, and its rows would then commit into a deleted file).
   */
  pendingSegments(): Set<number> {
    return new Set([...this.pending, ...this.inFlight].map((p) => p.row.segment));
  }

  add(p: PendingCommit): void {
    this.pending.push(p);
    const policy = this.policy;
    if (policy === 'every-chunk' || policy === 'none') this.schedule();
    else if ('everyChunks' in policy) {
      if (this.pending.length >= policy.everyChunks) this.schedule();
    } else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.schedule();
      }, policy.intervalMs);
    }
  }

  /**
   * Commits everything pending now; resolves when that and all earlier tasks are done. Never
   * rejects: failures reach the appends' promises and the sink's onFailure.
   */
  flush(): Promise<void> {
    this.schedule();
    return this.chain;
  }

  /**
   * Runs `task` after everything queued so far. Never rejects: an error thrown by the task goes to
   * the sink's onFailure (the store then refuses further appends), so the chain stays usable.
   */
  enqueue(task: () => Promise<void> | void): Promise<void> {
    this.chain = this.chain.then(task).catch((e: unknown) => {
      this.sink.onFailure(e);
    });
    return this.chain;
  }

  private schedule(): void {
    this.chain = this.chain.then(() => this.drain()).catch((e: unknown) => {
      this.sink.onFailure(e);
    });
  }

  private async drain(): Promise<void> {
    const batch = this.pending.splice(0);
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (batch.length === 0) return;
    this.inFlight = batch;
    let stage: 'fsync' | 'commit' = 'fsync';
    try {
      if (this.policy !== 'none') {
        // Payload before row: the durability order's first arrow.
        const sync = this.sink.sync ?? fdatasyncAsync;
        await Promise.all([...new Set(batch.map((p) => p.fd))].map((fd) => sync(fd)));
      }
      stage = 'commit';
      this.sink.commit(batch.map((p) => p.row));
    } catch (e) {
      const error = this.sink.onFailure(e, { stage, items: batch });
      for (const p of batch) p.reject(error);
      return;
    } finally {
      this.inFlight = [];
    }
    for (const p of batch) p.resolve(p.receipt);
    this.sink.afterCommit(batch);
  }
}
