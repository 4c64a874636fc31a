import type ort from 'onnxruntime-node';
import { float16ToFloat32 } from '../../kernels/fp16.js';
import { meanOverTokens } from '../../kernels/pool.js';
import { ropeInvFreq, rotateHeads } from '../../kernels/rope.js';
import { type AssembledContext, assembleContext, type KvGeometry, type PrefixBlock } from '../../memory/contextAssembler.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { sliceTokens } from '../../memory/kvLayout.js';
import { SlidingWindow } from '../../memory/slidingWindow.js';
import { type LaidOutContext, WindowLayout } from '../../memory/windowLayout.js';
import { invariant, VigilError } from '../../common/errors.js';
import { LIMITS } from '../../common/settings.js';
import { emptyKvCache, type KvCache } from '../model/kvCache.js';
import type { PreprocessedImage } from '../model/preprocess/imagePreprocessor.js';
import { toFloat32 } from '../model/tensors.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { toKvCache } from './kvContext.js';
import { type StreamPromptFormat, streamPromptFormat } from './streamPromptFormat.js';

export interface StreamEncoderOptions {
  /** First frames kept in context forever (frame-level sinks); default 1. */
  sinkFrames?: number;
  /** Recent frames kept in context after the sinks; default 16. */
  windowFrames?: number;
  /** Also cap the window by tokens; none by default. */
  windowTokens?: number;
}

/** Milliseconds per phase of one frame's encode (onnxruntime calls: vision, embed, decoder). */
export interface EncodePhases {
  visionMs: number;
  /** Frame prompt tokens, embed_tokens and the feature merge. */
  embedMs: number;
  /** Laying out [prefix | sinks | window] at compact positions (RoPE) as the decoder's past. */
  assembleMs: number;
  decoderMs: number;
  /** Slicing the new tokens out of `present`, un-rotating keys, representative vectors. */
  extractMs: number;
}

export interface EncodedFrame {
  chunk: FrameChunk;
  phases: EncodePhases;
  /** Frames that left the window because of this one (oldest first): offload them. */
  evicted: FrameChunk[];
  /** Compact position of the frame's first token when it was encoded. */
  position: number;
}

/**
 * The streaming encode loop of one stream: each frame is prefilled over [prefix | sink frames |
 * window] at compact positions, and the new part of `present` becomes a pre-RoPE FrameChunk. The
 * context never grows past prefix + sinks + window, so per-frame cost is flat in stream length.
 */
export class StreamEncoder {
  readonly window: SlidingWindow;
  readonly geometry: KvGeometry;
  readonly format: StreamPromptFormat;
  private nextChunkId = 0;
  /** [prefix | sinks | window] kept laid out between frames (and reused by questions' pass 1). */
  private readonly layout: WindowLayout;
  private present: KvCache | undefined;

  private constructor(
    readonly model: VisionLanguageModel,
    readonly prefix: PrefixBlock,
    format: StreamPromptFormat,
    geometry: KvGeometry,
    options: { sinkFrames: number; windowFrames: number; windowTokens?: number },
  ) {
    this.format = format;
    this.geometry = geometry;
    this.layout = new WindowLayout(prefix, geometry, model.decoder.info.type === 'float16');
    this.window = new SlidingWindow({
      sinkFrames: options.sinkFrames,
      windowFrames: options.windowFrames,
      ...(options.windowTokens !== undefined ? { windowTokens: options.windowTokens } : {}),
    });
  }

  /** Encodes the stream's text prefix (the token sinks) and returns a ready encoder. */
  static async create(model: VisionLanguageModel, options: StreamEncoderOptions = {}): Promise<StreamEncoder> {
    const info = model.decoder.info;
    const geometry: KvGeometry = {
      numLayers: info.numLayers,
      numKvHeads: info.numKvHeads,
      headDim: info.headDim,
      invFreq: ropeInvFreq(model.config.text.rotaryDim, model.config.text.ropeTheta),
    };
    const format = streamPromptFormat(model.config.family, model.tokensPerImage);
    const ids = model.tokenizer.encode(format.prefix);
    const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache(), logits: 'none' });
    const { keys, values } = newTokensPreRope(out.present, 0, ids.length, geometry);
    const prefix: PrefixBlock = { tokenCount: ids.length, keys, values };
    return new StreamEncoder(model, prefix, format, geometry, {
      sinkFrames: options.sinkFrames ?? LIMITS.sinks.default,
      windowFrames: options.windowFrames ?? LIMITS.window.default,
      ...(options.windowTokens !== undefined ? { windowTokens: options.windowTokens } : {}),
    });
  }

  /** Id the next encoded frame gets. */
  get nextId(): number {
    return this.nextChunkId;
  }

  /**
   * Continues a stream after a restart: sink and recent frames read back from the store go back
   * into the window, and chunk ids continue after the last stored one.
   */
  restore(sinks: readonly FrameChunk[], recent: readonly FrameChunk[], nextChunkId: number): void {
    this.window.restore(sinks, recent);
    this.nextChunkId = nextChunkId;
  }

  /**
   * Takes a frame chunk encoded elsewhere (an import, a benchmark's fast-forward) as the next
   * frame: it gets the next chunk id and enters the window like an encoded frame.
   */
  adopt(chunk: Omit<FrameChunk, 'chunkId'>): { chunk: FrameChunk; evicted: FrameChunk[] } {
    const { numLayers, numKvHeads, headDim } = this.geometry;
    if (chunk.numLayers !== numLayers || chunk.numKvHeads !== numKvHeads || chunk.headDim !== headDim) {
      throw new VigilError('SHAPE_MISMATCH', `chunk geometry ${chunk.numLayers}x${chunk.numKvHeads}x${chunk.headDim} is not the decoder's ${numLayers}x${numKvHeads}x${headDim}`);
    }
    const adopted: FrameChunk = { ...chunk, chunkId: this.nextChunkId };
    const evicted = this.window.push(adopted);
    this.nextChunkId++;
    return { chunk: adopted, evicted };
  }

  /** Token ids of one frame's block (timestamp prompt + image placeholders). */
  frameTokenIds(seconds: number): number[] {
    return this.model.tokenizer.encode(this.format.frame(seconds));
  }

  /** Encodes one preprocessed frame captured at stream time `t` (seconds). */
  async encodeFrame(image: PreprocessedImage, t: number, wallTime = Date.now()): Promise<EncodedFrame> {
    invariant(image.count === 1, () => `a stream frame must be one image, got ${image.count}`);
    const started = performance.now();
    const features = await this.model.encodeImages(image);
    const visionMs = performance.now() - started;
    const encoded = await this.encodeFeatures(features, t, wallTime);
    encoded.phases.visionMs = visionMs;
    return encoded;
  }

  /** Encodes a frame whose image features are already computed ([rows, hidden] in the embedding type). */
  async encodeFeatures(features: ort.Tensor, t: number, wallTime = Date.now()): Promise<EncodedFrame> {
    const t0 = performance.now();
    const ids = this.frameTokenIds(t);
    const embeds = await this.model.embedWithImages(ids, features);
    const t1 = performance.now();
    const { context, past } = this.currentContext();
    const t2 = performance.now();
    const out = await this.model.decoder.step({ inputsEmbeds: embeds, past, logits: 'none', presentInto: this.presentBuffer(context.length + ids.length) });
    const t3 = performance.now();
    const { keys, values } = newTokensPreRope(out.present, context.length, ids.length, this.geometry);
    const { numKvHeads, headDim } = this.geometry;
    const chunk: FrameChunk = {
      chunkId: this.nextChunkId++,
      tStart: t,
      tEnd: t,
      wallTime,
      tokenCount: ids.length,
      numLayers: this.geometry.numLayers,
      numKvHeads,
      headDim,
      keys,
      values,
      representatives: keys.map((k) => meanOverTokens(k, numKvHeads, ids.length, headDim)),
    };
    const evicted = this.window.push(chunk);
    const phases: EncodePhases = { visionMs: 0, embedMs: t1 - t0, assembleMs: t2 - t1, decoderMs: t3 - t2, extractMs: performance.now() - t3 };
    return { chunk, evicted, position: context.length, phases };
  }

  /** The decoder's `present` for a frame: reused while the context length stays the same (always, once the window is full). */
  private presentBuffer(length: number): KvCache {
    if (this.present?.length !== length) this.present = emptyKvCache(this.model.decoder.info, length);
    return this.present;
  }

  /**
   * [prefix | sinks | window] as the decoder's past, from the reused layout: valid until the next
   * call (the next frame or question of this stream; a stream's calls are serialized).
   */
  currentContext(): { context: LaidOutContext; past: KvCache } {
    const context = this.layout.layout(this.window.contextChunks);
    return { context, past: this.toCache(context) };
  }

  /** [prefix | chunks in time order] at compact positions, as float32 per layer (fresh arrays). */
  assembleContext(chunks: readonly FrameChunk[]): AssembledContext {
    return assembleContext(this.prefix, chunks, this.geometry);
  }

  toCache(context: AssembledContext): KvCache {
    return toKvCache(context, this.model.decoder.info);
  }
}

/** The last `count` tokens of every layer of `present` (starting at `start`), keys un-rotated to pre-RoPE. */
function newTokensPreRope(present: KvCache, start: number, count: number, geo: KvGeometry): { keys: Float32Array[]; values: Float32Array[] } {
  const { numKvHeads: heads, headDim } = geo;
  const total = present.length;
  const positions = Array.from({ length: count }, (_, i) => start + i);
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  const newTokens = (tensor: ort.Tensor): Float32Array =>
    tensor.type === 'float16'
      ? float16ToFloat32(sliceTokens(tensor.data as Uint16Array, heads, total, headDim, start, count))
      : sliceTokens(toFloat32(tensor), heads, total, headDim, start, count);
  for (const layer of present.layers) {
    const postRope = newTokens(layer.key);
    keys.push(rotateHeads(postRope, heads, count, headDim, positions, geo.invFreq, -1, postRope));
    values.push(newTokens(layer.value));
  }
  return { keys, values };
}
