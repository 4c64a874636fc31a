// RAM LRU of decoded chunks in front of the disk, bounded by bytes (not entries), because the
// bounded-RAM invariant is stated in bytes and chunk sizes vary with their token counts.
import type { FrameChunk } from '../frameChunk.js';

/** Bytes a decoded chunk holds: its float32 K, V and representative vectors. */
export function decodedChunkBytes(chunk: FrameChunk): number {
  let bytes = 0;
  for (const a of chunk.keys) bytes += a.byteLength;
  for (const a of chunk.values) bytes += a.byteLength;
  for (const a of chunk.representatives) bytes += a.byteLength;
  return bytes;
}

export class ChunkCache {
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU.
  private readonly entries = new Map<number, { chunk: FrameChunk; bytes: number }>();
  private used = 0;
  hits = 0;
  misses = 0;

  constructor(readonly budgetBytes: number) {
    if (!Number.isFinite(budgetBytes) || budgetBytes < 0) throw new RangeError(`cache budget ${budgetBytes}`);
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  get(chunkId: number): FrameChunk | undefined {
    const e = this.entries.get(chunkId);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(chunkId);
    this.entries.set(chunkId, e);
    return e.chunk;
  }

  has(chunkId: number): boolean {
    return this.entries.has(chunkId);
  }

  /** Inserts as most recent, evicting least recent entries to fit. A chunk above the budget is not cached. */
  put(chunk: FrameChunk): void {
    const bytes = decodedChunkBytes(chunk);
    this.delete(chunk.chunkId);
    if (bytes > this.budgetBytes) return;
    for (const [id, e] of this.entries) {
      if (this.used + bytes <= this.budgetBytes) break;
      this.entries.delete(id);
      this.used -= e.bytes;
    }
    this.entries.set(chunk.chunkId, { chunk, bytes });
    this.used += bytes;
  }

  delete(chunkId: number): void {
    const e = this.entries.get(chunkId);
    if (e === undefined) return;
    this.entries.delete(chunkId);
    this.used -= e.bytes;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }

  /** Chunk ids from least to most recently used (for tests and diagnostics). */
  keys(): number[] {
    return [...this.entries.keys()];
  }
}
