import { type AssembledContext, assembleContext, type PrefixBlock } from './contextAssembler.js';
import type { FrameChunk } from './frameChunk.js';
import type { KvShape } from './kvShape.js';
import { SlidingWindow, type SlidingWindowOptions } from './slidingWindow.js';
import { type LaidOutContext, WindowLayout } from './windowLayout.js';

/**
 * What the decoder attends to while a stream is encoded: the text prefix (token sinks), the sink
 * frames and the recent window, kept laid out at compact positions between frames. Frames pushed
 * past the window are returned to the caller (the stream's memory) to be offloaded.
 */
export class ContextWindow {
  private readonly frames: SlidingWindow;
  private readonly laidOut: WindowLayout;

  constructor(
    readonly prefix: PrefixBlock,
    readonly shape: KvShape,
    readonly options: SlidingWindowOptions,
    /** Keep float16 bits of the layout in step (a float16 decoder). */
    float16: boolean,
  ) {
    this.frames = new SlidingWindow(options);
    this.laidOut = new WindowLayout(prefix, shape, float16);
  }

  /** Adds the newest frame; returns the frames that left the window (oldest first). */
  push(chunk: FrameChunk): FrameChunk[] {
    return this.frames.push(chunk);
  }

  /** Refills an empty window after a restart (sink frames, then the most recent frames). */
  restore(sinks: readonly FrameChunk[], recent: readonly FrameChunk[]): void {
    this.frames.restore(sinks, recent);
  }

  get sinkChunks(): readonly FrameChunk[] {
    return this.frames.sinkChunks;
  }

  get windowChunks(): readonly FrameChunk[] {
    return this.frames.windowChunks;
  }

  /** Sink frames then window frames, in time order. */
  get contextChunks(): FrameChunk[] {
    return this.frames.contextChunks;
  }

  /** A chunk still held in RAM (a sink or a window frame), by id. */
  find(chunkId: number): FrameChunk | undefined {
    return this.frames.sinkChunks.find((c) => c.chunkId === chunkId) ?? this.frames.windowChunks.find((c) => c.chunkId === chunkId);
  }

  /**
   * [prefix | sinks | window] at compact positions, from reused buffers: valid until the next call
   * (the next frame or question of this stream; a stream's calls are serialized).
   */
  layout(): LaidOutContext {
    return this.laidOut.layout(this.frames.contextChunks);
  }

  /** [prefix | chunks in time order] at compact positions, as float32 per layer (fresh arrays). */
  assemble(chunks: readonly FrameChunk[]): AssembledContext {
    return assembleContext(this.prefix, chunks, this.shape);
  }
}
