/**
 * Bounded queue between ingest and its one consumer, with an explicit policy when it is full:
 * - drop-oldest: evict the oldest waiting frame (live default: the consumer sees the freshest video);
 * - drop-newest: refuse the incoming frame (keeps a contiguous backlog);
 * - block: accept, and tell the producer to stop reading ffmpeg until there is room (files: no
 *   frame is ever lost, ffmpeg simply waits).
 * Drops are counted; lag is the age of the oldest waiting frame.
 */
import type { QueuePolicy } from './types.js';

export interface Timestamped {
  wallTime: number;
}

export type PushResult = 'queued' | 'dropped-oldest' | 'dropped-newest' | 'full';

export class FrameQueue<T extends Timestamped> {
  private readonly items: T[] = [];
  private readonly waiters: Array<{ resolve: (v: T | null) => void; reject: (e: unknown) => void }> = [];
  private closed = false;
  private failure: unknown = null;
  private droppedCount = 0;
  private lastDeliveryLag = 0;
  private spaceListeners: Array<() => void> = [];

  constructor(
    readonly capacity: number,
    private currentPolicy: QueuePolicy,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity must be a positive integer (got ${capacity})`);
  }

  get policy(): QueuePolicy {
    return this.currentPolicy;
  }

  /** Changes the policy (a source learns whether it is live only after probing). */
  setPolicy(policy: QueuePolicy): void {
    this.currentPolicy = policy;
  }

  get length(): number {
    return this.items.length;
  }

  get dropped(): number {
    return this.droppedCount;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Age (ms) of the oldest waiting frame; 0 when empty. */
  lagMs(now = Date.now()): number {
    const head = this.items[0];
    return head ? Math.max(0, now - head.wallTime) : 0;
  }

  /** Age of the last frame handed to the consumer, at the moment it was taken. */
  get deliveryLagMs(): number {
    return this.lastDeliveryLag;
  }

  /** True when a block-policy producer should hold back. */
  get isFull(): boolean {
    return this.items.length >= this.capacity;
  }

  push(item: T): PushResult {
    if (this.closed) return 'dropped-newest';
    const waiter = this.waiters.shift();
    if (waiter) {
      this.lastDeliveryLag = Math.max(0, Date.now() - item.wallTime);
      waiter.resolve(item);
      return 'queued';
    }
    if (this.items.length < this.capacity) {
      this.items.push(item);
      return this.currentPolicy === 'block' && this.isFull ? 'full' : 'queued';
    }
    switch (this.currentPolicy) {
      case 'drop-oldest':
        this.items.shift();
        this.items.push(item);
        this.droppedCount++;
        return 'dropped-oldest';
      case 'drop-newest':
        this.droppedCount++;
        return 'dropped-newest';
      case 'block':
        // The producer should have paused at 'full'; a frame already in flight is still kept.
        this.items.push(item);
        return 'full';
    }
  }

  /** Next frame; null when the queue is closed and empty; rejects when it was failed. */
  shift(): Promise<T | null> {
    const item = this.items.shift();
    if (item !== undefined) {
      this.lastDeliveryLag = Math.max(0, Date.now() - item.wallTime);
      if (!this.isFull) this.notifySpace();
      return Promise.resolve(item);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.resolve(null);
    this.notifySpace();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Called (once per registration) when a block-policy producer may go on. */
  onSpace(listener: () => void): void {
    this.spaceListeners.push(listener);
  }

  /** No more frames: waiting consumers get null after the remaining frames. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.resolve(null);
    this.notifySpace();
  }

  /** The producer failed: remaining frames are still delivered, then shift() rejects with `error`. */
  fail(error: unknown): void {
    this.failure = error;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(error);
    this.notifySpace();
  }

  /** Drops everything waiting (stop). */
  clear(): void {
    this.items.length = 0;
  }

  private notifySpace(): void {
    const listeners = this.spaceListeners;
    this.spaceListeners = [];
    for (const l of listeners) l();
  }
}
