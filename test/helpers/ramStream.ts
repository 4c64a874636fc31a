import type ort from 'onnxruntime-node';
import type { AssembledContext } from '../../memory/contextAssembler.js';
import type { ContextWindow } from '../../memory/contextWindow.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import type { SlidingWindowOptions } from '../../memory/slidingWindow.js';
import { toKvCache } from '../../src/engine/kvContext.js';
import { type EncodedFrame, StreamEncoder } from '../../src/engine/streamEncoder.js';
import type { KvCache } from '../../src/model/kvCache.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';

export interface RamEncodedFrame extends Omit<EncodedFrame, 'chunk'> {
  chunk: FrameChunk;
}

/**
 * An encoder and a context window with nothing behind them (no store, no index): chunks are
 * numbered and pushed into the window as StreamMemory does, and evicted ones are simply dropped.
 * For tests of the encode path itself (exactness against one full prefill, the needle model).
 */
export class RamStream {
  readonly window: ContextWindow;
  private nextId = 0;

  private constructor(readonly encoder: StreamEncoder, options: SlidingWindowOptions) {
    this.window = encoder.newWindow(options);
  }

  static async create(model: VisionLanguageModel, options: SlidingWindowOptions): Promise<RamStream> {
    return new RamStream(await StreamEncoder.create(model), options);
  }

  get format(): StreamEncoder['format'] {
    return this.encoder.format;
  }

  get prefix(): StreamEncoder['prefix'] {
    return this.encoder.prefix;
  }

  frameTokenIds(seconds: number): number[] {
    return this.encoder.frameTokenIds(seconds);
  }

  async encodeFrame(image: PreprocessedImage, t: number): Promise<RamEncodedFrame> {
    return this.take(await this.encoder.encodeFrame(image, t, this.window));
  }

  async encodeFeatures(features: ort.Tensor, t: number): Promise<RamEncodedFrame> {
    return this.take(await this.encoder.encodeFeatures(features, t, this.window));
  }

  assembleContext(chunks: readonly FrameChunk[]): AssembledContext {
    return this.window.assemble(chunks);
  }

  toCache(context: AssembledContext): KvCache {
    return toKvCache(context, this.encoder.model.decoder.info);
  }

  private take(encoded: EncodedFrame): RamEncodedFrame {
    const chunk: FrameChunk = { ...encoded.chunk, chunkId: this.nextId++ };
    this.window.push(chunk);
    return { ...encoded, chunk };
  }
}
