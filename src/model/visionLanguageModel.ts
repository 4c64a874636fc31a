import path from 'node:path';
import ort from 'onnxruntime-node';
import { VigilError } from '../../common/errors.js';
import { vigilCacheDir } from '../cacheDir.js';
import { Decoder } from './decoder.js';
import { modelFamily } from './families/index.js';
import type { QueryTapStatus } from './onnx/queryTapSurgery.js';
import { type GraphDtype, resolveGraphFile } from './graphFiles.js';
import { loadModelConfig, type ModelConfig, readJsonFile } from './modelConfig.js';
import { OnnxGraph } from './onnxGraph.js';
import { openDecoderWithQueryTaps, type QueryTapMode } from './queryTapLoader.js';
import type { PreprocessedImage } from './preprocess/imagePreprocessor.js';
import { fullPixelMask } from './preprocess/pixelAttentionMask.js';
import { type ImagePreprocessorConfig, parsePreprocessorConfig } from './preprocess/preprocessorConfig.js';
import { asFloatType, castFloat, type FloatType, floatTensor, int64Tensor } from './tensors.js';
import { VlmTokenizer } from './tokenizer.js';

export interface LoadModelOptions {
  /** Weight format of all graphs (file suffix); default: config's transformers.js_config.dtype, else fp32. */
  dtype?: GraphDtype;
  /**
   * 'auto' (default): find each layer's pre-RoPE query from the decoder's structure and, when the
   * graph does not output them, expose them by graph surgery on a cached copy (the stock graph is
   * loaded when that fails, and `model.queryTaps` says why); 'off': never (retrieval then falls back
   * to the question's keys).
   */
  queryTaps?: QueryTapMode;
  /**
   * 'split' (default; VIGIL_DECODE_ATTENTION): a GroupQueryAttention decoder's attention is rewritten
   * to read the past in place (src/model/onnx/splitAttention.ts, on the query-tap surgery's copy);
   * 'gqa': the export's GroupQueryAttention as it is.
   */
  decodeAttention?: DecodeAttention;
}

export type DecodeAttention = 'split' | 'gqa';

function decodeAttentionDefault(): DecodeAttention {
  const value = process.env.VIGIL_DECODE_ATTENTION ?? 'split';
  if (value !== 'split' && value !== 'gqa') throw new VigilError('BAD_CONFIG', `VIGIL_DECODE_ATTENTION must be 'split' or 'gqa', got '${value}'`);
  return value;
}

/**
 * A vision-language model folder in the Hugging Face ONNX layout: config, tokenizer, image
 * preprocessing and the three onnxruntime sessions (vision_encoder, embed_tokens, decoder).
 */
export class VisionLanguageModel {
  private disposing: Promise<void> | null = null;
  /** Objects that use this model (stream sessions), disposed before it. */
  private readonly children = new Set<AsyncDisposable>();

  private constructor(
    readonly config: ModelConfig,
    readonly tokenizer: VlmTokenizer,
    readonly imageConfig: ImagePreprocessorConfig,
    readonly vision: OnnxGraph,
    readonly embedder: OnnxGraph,
    readonly decoder: Decoder,
    /** Union of every eos id the folder declares and the family's end-of-turn token. */
    readonly eosTokenIds: ReadonlySet<number>,
    /** Whether the decoder has query taps and how (exposed, surgery), or why not (fallback, off). */
    readonly queryTaps: QueryTapStatus,
  ) {}

  static async load(modelDir: string, options: LoadModelOptions = {}): Promise<VisionLanguageModel> {
    const config = loadModelConfig(modelDir);
    const tokenizer = await VlmTokenizer.load(config.dir);
    const preprocessorFile = path.join(config.dir, 'preprocessor_config.json');
    const imageConfig = parsePreprocessorConfig(readJsonFile(preprocessorFile, 'preprocessor_config.json'), config.family, preprocessorFile);
    const file = (graph: 'vision_encoder' | 'embed_tokens' | 'decoder_model_merged') =>
      resolveGraphFile(config.dir, graph, options.dtype, config.transformersJsConfig);
    const files = [file('vision_encoder'), file('embed_tokens'), file('decoder_model_merged')] as const;
    const opened: OnnxGraph[] = [];
    let decoder: Decoder;
    let queryTaps: QueryTapStatus;
    try {
      for (const f of files.slice(0, 2)) opened.push(await OnnxGraph.open(f));
      const split = (options.decodeAttention ?? decodeAttentionDefault()) === 'split';
      const loaded = await openDecoderWithQueryTaps(files[2], options.queryTaps ?? 'auto', vigilCacheDir(), undefined, split);
      opened.push(loaded.graph);
      decoder = new Decoder(loaded.graph, config, loaded.tapNames, loaded.kvTaps);
      queryTaps = loaded.status;
      // A graph that applies RoPE itself (no position_ids) must rotate as the config says, or streamed keys go wrong.
      await decoder.verifyImplicitRope();
    } catch (error) {
      await Promise.all(opened.map((g) => g.dispose()));
      throw error;
    }
    const [vision, embedder] = opened as [OnnxGraph, OnnxGraph];
    if (queryTaps.state === 'fallback') {
      process.emitWarning(`${files[2]}: no query taps, retrieval scores with the question's keys instead: ${queryTaps.reason}`, { code: 'VIGIL_QUERY_TAPS' });
    }
    const eos = new Set(config.eosTokenIds);
    // The end-of-turn token the family's chat template emits: generation stops on it too.
    const turnEnd = tokenizer.tokenToId(modelFamily(config.family).turnEndToken);
    if (turnEnd !== undefined) eos.add(turnEnd);
    if (eos.size === 0) throw new VigilError('BAD_CONFIG', `${config.dir}: no eos_token_id in config.json or generation_config.json`);
    return new VisionLanguageModel(config, tokenizer, imageConfig, vision, embedder, decoder, eos, queryTaps);
  }

  /** The float type of inputs_embeds (image features are converted to it before merging). */
  get embedType(): FloatType {
    return this.decoder.info.embedType;
  }

  /**
   * Image feature rows per image (SmolVLM: per tile), from the config (SmolVLM's image_seq_len),
   * else the vision graph's static token dim (LLaVA-OV: 729, or 730 with image_newline), else
   * LLaVA-OV's num_image_tokens. Stream frames may take fewer: see videoFrames.ts streamTokensPerFrame.
   */
  get tokensPerImage(): number {
    const fromGraph = this.vision.output('image_features').shape;
    const rows = fromGraph.length === 3 ? fromGraph[1] : undefined;
    const value = this.config.imageSeqLen ?? (typeof rows === 'number' ? rows : undefined) ?? this.config.numImageTokens;
    if (value === undefined) throw new VigilError('BAD_CONFIG', `${this.config.dir}: cannot tell how many tokens an image takes`);
    return value;
  }

  /** Runs the vision encoder; returns features [rows, hidden] in the embedding type. */
  async encodeImages(images: PreprocessedImage): Promise<ort.Tensor> {
    this.assertOpen();
    const pixelInput = this.vision.input('pixel_values');
    const pixelType = asFloatType(pixelInput.type, `${this.vision.name} pixel_values`);
    const imageDims = [3, images.height, images.width];
    const dims = pixelInput.shape.length === 5 ? [1, images.count, ...imageDims] : [images.count, ...imageDims];
    const feeds: Record<string, ort.Tensor> = { pixel_values: floatTensor(pixelType, images.pixelValues, dims) };
    if (this.vision.hasInput('pixel_attention_mask')) {
      feeds.pixel_attention_mask = new ort.Tensor('bool', fullPixelMask(images.count, images.height, images.width), [1, images.count, images.height, images.width]);
    }
    const out = await this.vision.run(feeds);
    const features = out.image_features;
    if (!features) throw new VigilError('NOT_A_MODEL', `${this.vision.file} has no image_features output`);
    const hidden = features.dims[features.dims.length - 1]!;
    const rows = features.size / hidden;
    const typed = castFloat(features, this.embedType);
    return new ort.Tensor(typed.type as 'float32', typed.data as Float32Array, [rows, hidden]);
  }

  /** Token embeddings [1, S, hidden]. */
  async embed(ids: readonly number[]): Promise<ort.Tensor> {
    this.assertOpen();
    const out = await this.embedder.run({ input_ids: int64Tensor(ids, [1, ids.length]) });
    return castFloat(out.inputs_embeds!, this.embedType);
  }

  /**
   * Embeds a prompt and overwrites, in order, every image-token row with the next feature row.
   * The counts must match exactly (contract §3.2): a mismatch means the prompt expansion is wrong.
   */
  async embedWithImages(ids: readonly number[], features: ort.Tensor | undefined): Promise<ort.Tensor> {
    const embeds = await this.embed(ids);
    const imageRows = ids.reduce((n, id) => n + (id === this.config.imageTokenId ? 1 : 0), 0);
    const featureRows = features ? features.dims[0]! : 0;
    if (imageRows !== featureRows) {
      throw new VigilError('SHAPE_MISMATCH', `prompt has ${imageRows} image tokens but the vision encoder returned ${featureRows} feature rows`);
    }
    if (!features || featureRows === 0) return embeds;
    const hidden = embeds.dims[2]!;
    if (features.dims[1] !== hidden) {
      throw new VigilError('SHAPE_MISMATCH', `image features have width ${features.dims[1]}, embeddings ${hidden}`);
    }
    const target = embeds.data as Float32Array | Uint16Array;
    const source = features.data as Float32Array | Uint16Array;
    let row = 0;
    ids.forEach((id, position) => {
      if (id !== this.config.imageTokenId) return;
      target.set(source.subarray(row * hidden, (row + 1) * hidden), position * hidden);
      row++;
    });
    return embeds;
  }

  /**
   * Registers an object that uses this model (a stream session registers itself when it opens);
   * returns the function that unregisters it (its own dispose calls that). A disposed model takes no
   * new children (DISPOSED).
   */
  adopt(child: AsyncDisposable): () => void {
    this.assertOpen();
    this.children.add(child);
    return () => {
      this.children.delete(child);
    };
  }

  /** Objects using this model that are not disposed yet. */
  get liveChildren(): number {
    return this.children.size;
  }

  /**
   * Disposes every live child first (a session commits its pending frames and saves its index), then
   * releases the onnxruntime sessions. Idempotent: every call returns the same promise. If a child
   * fails to dispose, the model is still released and the first such error is thrown.
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      const children = await Promise.allSettled([...this.children].map((c) => c[Symbol.asyncDispose]()));
      this.children.clear();
      await Promise.all([this.vision.dispose(), this.embedder.dispose(), this.decoder.graph.dispose()]);
      const failed = children.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    })();
    return this.disposing;
  }

  get disposed(): boolean {
    return this.disposing !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private assertOpen(): void {
    if (this.disposing) throw new VigilError('DISPOSED', 'this model has been disposed');
  }
}
