import type { FrameChunk } from './frameChunk.js';

export interface SlidingWindowOptions {
  /** The first N frames stay in context forever (frame-level attention sinks). */
  sinkFrames: number;
  /** The most recent N frames kept after the sink frames. */
  windowFrames: number;
  /** Also cap the window by tokens (frames of a real model differ in size across models); none by default. */
  windowTokens?: number;
}

/**
 * The in-RAM part of a stream's memory: sink frames plus the last W frames, in time order.
 * Pushing a frame past the window returns the frames that leave it (to be offloaded).
 */
export class SlidingWindow {
  private readonly sinks: FrameChunk[] = [];
  private readonly recent: FrameChunk[] = [];

  constructor(readonly options: SlidingWindowOptions) {
    if (!Number.isInteger(options.sinkFrames) || options.sinkFrames < 0) throw new RangeError('sinkFrames must be an integer >= 0');
    if (!Number.isInteger(options.windowFrames) || options.windowFrames < 1) throw new RangeError('windowFrames must be an integer >= 1');
    if (options.windowTokens !== undefined && (!Number.isInteger(options.windowTokens) || options.windowTokens < 1)) {
      throw new RangeError('windowTokens must be an integer >= 1');
    }
  }

  /** Adds the newest frame; returns the frames evicted from the window (oldest first). */
  push(chunk: FrameChunk): FrameChunk[] {
    const last = this.recent.at(-1) ?? this.sinks.at(-1);
    if (last && chunk.chunkId <= last.chunkId) throw new RangeError(`chunk ids must increase: ${chunk.chunkId} after ${last.chunkId}`);
    if (this.sinks.length < this.options.sinkFrames) {
      this.sinks.push(chunk);
      return [];
    }
    this.recent.push(chunk);
    let overflow = Math.max(0, this.recent.length - this.options.windowFrames);
    if (this.options.windowTokens !== undefined) {
      // The newest frame always stays, even if it alone is larger than the token cap.
      let tokens = this.recent.slice(overflow).reduce((n, c) => n + c.tokenCount, 0);
      while (overflow < this.recent.length - 1 && tokens > this.options.windowTokens) tokens -= this.recent[overflow++]!.tokenCount;
    }
    return overflow > 0 ? this.recent.splice(0, overflow) : [];
  }

  /** Refills an empty window after a restart: the stored sink frames, then the most recent frames. */
  restore(sinks: readonly FrameChunk[], recent: readonly FrameChunk[]): void {
    if (this.sinks.length > 0 || this.recent.length > 0) throw new RangeError('restore needs an empty window');
    if (sinks.length > this.options.sinkFrames) throw new RangeError(`${sinks.length} sink frames, the window keeps ${this.options.sinkFrames}`);
    this.sinks.push(...sinks);
    this.recent.push(...recent.slice(-this.options.windowFrames));
  }

  get sinkChunks(): readonly FrameChunk[] {
    return this.sinks;
  }

  get windowChunks(): readonly FrameChunk[] {
    return this.recent;
  }

  /** Sink frames then window frames, in time order. */
  get contextChunks(): FrameChunk[] {
    return [...this.sinks, ...this.recent];
  }
}
