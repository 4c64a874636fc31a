import type ort from 'onnxruntime-node';
import { ropeInvFreq } from '../../kernels/rope.js';
import type { PrefixBlock } from '../../memory/contextAssembler.js';
import { ContextWindow } from '../../memory/contextWindow.js';
import type { UnnumberedChunk } from '../../memory/frameChunk.js';
import { type KvShape, kvShape } from '../../memory/kvShape.js';
import { meanKeys, newTokensPreRope } from '../../memory/kvSurgery.js';
import type { SlidingWindowOptions } from '../../memory/slidingWindow.js';
import { invariant } from '../../common/errors.js';
import { emptyKvCache, type KvCache } from '../model/kvCache.js';
import type { PreprocessedImage } from '../model/preprocess/imagePreprocessor.js';
import { encodeStreamFrames, streamTokensPerFrame } from '../model/videoFrames.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { layerArrays, toKvCache } from './kvContext.js';
import { type StreamPromptFormat, streamPromptFormat } from './streamPromptFormat.js';

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
  /** The frame's pre-RoPE KV; the stream's memory numbers it when it takes it. */
  chunk: UnnumberedChunk;
  phases: EncodePhases;
  /** Compact position of the frame's first token when it was encoded. */
  position: number;
}

/**
 * The model calls of one stream: the text prefix once, then each frame prefilled over the
 * context window it is given ([prefix | sink frames | window] at compact positions); the new part
 * of `present` becomes a pre-RoPE chunk. It holds no memory: the window and everything after it
 * belong to the stream's memory (StreamMemory).
 */
export class StreamEncoder {
  /** The decoder's `present` for a frame: reused while the context length stays the same (always, once the window is full). */
  private present: KvCache | undefined;

  private constructor(
    readonly model: VisionLanguageModel,
    readonly prefix: PrefixBlock,
    readonly format: StreamPromptFormat,
    readonly shape: KvShape,
  ) {}

  /** Encodes the stream's text prefix (the token sinks) and returns a ready encoder. */
  static async create(model: VisionLanguageModel): Promise<StreamEncoder> {
    const info = model.decoder.info;
    const shape = kvShape({
      numLayers: info.numLayers,
      numKvHeads: info.numKvHeads,
      headDim: info.headDim,
      invFreq: ropeInvFreq(model.config.text.rotaryDim, model.config.text.ropeTheta),
    });
    const format = streamPromptFormat(model.config.family, streamTokensPerFrame(model));
    const ids = model.tokenizer.encode(format.prefix);
    const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache(), logits: 'none' });
    const { keys, values } = newTokensPreRope(layerArrays(out.present), shape, out.present.length, 0, ids.length);
    return new StreamEncoder(model, { tokenCount: ids.length, keys, values }, format, shape);
  }

  /** An empty context window over this encoder's prefix (a stream's memory owns it). */
  newWindow(options: SlidingWindowOptions): ContextWindow {
    return new ContextWindow(this.prefix, this.shape, options, this.model.decoder.info.type === 'float16');
  }

  /** Token ids of one frame's block (timestamp prompt + image placeholders). */
  frameTokenIds(seconds: number): number[] {
    return this.model.tokenizer.encode(this.format.frame(seconds));
  }

  /** Encodes one preprocessed frame captured at stream time `t` (seconds) over `window`. */
  async encodeFrame(image: PreprocessedImage, t: number, window: ContextWindow, wallTime = Date.now()): Promise<EncodedFrame> {
    invariant(image.count === 1, () => `a stream frame must be one image, got ${image.count}`);
    const started = performance.now();
    const features = await encodeStreamFrames(this.model, image);
    const visionMs = performance.now() - started;
    const encoded = await this.encodeFeatures(features, t, window, wallTime);
    encoded.phases.visionMs = visionMs;
    return encoded;
  }

  /** Encodes a frame whose image features are already computed ([rows, hidden] in the embedding type). */
  async encodeFeatures(features: ort.Tensor, t: number, window: ContextWindow, wallTime = Date.now()): Promise<EncodedFrame> {
    const t0 = performance.now();
    const ids = this.frameTokenIds(t);
    const embeds = await this.model.embedWithImages(ids, features);
    const t1 = performance.now();
    const context = window.layout();
    const past = toKvCache(context, this.model.decoder.info);
    const t2 = performance.now();
    const { decoder } = this.model;
    // Only the frame's own rows are needed: fetched alone where the decoder has kv taps (fetching
    // `present` makes onnxruntime-node copy the whole context out).
    const rows = decoder.info.kvTaps
      ? { kv: (await decoder.stepRows({ inputsEmbeds: embeds, past, logits: 'none', kv: 'new' })).newRows!, start: 0 }
      : { kv: (await decoder.step({ inputsEmbeds: embeds, past, logits: 'none', presentInto: this.presentBuffer(context.length + ids.length) })).present, start: context.length };
    const t3 = performance.now();
    const { keys, values } = newTokensPreRope(layerArrays(rows.kv), this.shape, rows.kv.length, rows.start, ids.length, context.length);
    const { numLayers, numKvHeads, headDim } = this.shape;
    const chunk: UnnumberedChunk = {
      tStart: t,
      tEnd: t,
      wallTime,
      tokenCount: ids.length,
      numLayers,
      numKvHeads,
      headDim,
      keys,
      values,
      representatives: meanKeys(keys, this.shape, ids.length),
    };
    const phases: EncodePhases = { visionMs: 0, embedMs: t1 - t0, assembleMs: t2 - t1, decoderMs: t3 - t2, extractMs: performance.now() - t3 };
    return { chunk, position: context.length, phases };
  }

  private presentBuffer(length: number): KvCache {
    if (this.present?.length !== length) this.present = emptyKvCache(this.model.decoder.info, length);
    return this.present;
  }
}
