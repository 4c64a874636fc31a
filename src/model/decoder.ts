import ort from 'onnxruntime-node';
import { VigilError } from '../../common/errors.js';
import { KvCache, type KvSpec } from './kvCache.js';
import type { ModelConfig } from './modelConfig.js';
import type { OnnxGraph } from './onnxGraph.js';
import { asFloatType, type FloatType, int64Tensor, toFloat32 } from './tensors.js';

/** Output names a torch.onnx export gives the q projection of layer i (bias models end in Add). */
const QUERY_TAP = /^\/model\/layers\.(\d+)\/self_attn\/q_proj\/(MatMul|Add)_output_0$/;

export interface DecoderInfo extends KvSpec {
  hiddenSize: number;
  vocabSize: number;
  numHeads: number;
  embedType: FloatType;
  /** Per-layer output names of the pre-RoPE query projections, when the graph exposes them. */
  queryTapNames: string[] | undefined;
  hasPositionIds: boolean;
  hasUseCacheBranch: boolean;
  hasNumLogitsToKeep: boolean;
}

export interface DecoderStepInput {
  /** [1, S, hidden] in the decoder's embedding type. */
  inputsEmbeds: ort.Tensor;
  /** The KV context this call attends to (its length is P). */
  past: KvCache;
  /** Position of each new token; default P..P+S-1 (compact positions). */
  positions?: ArrayLike<number>;
  /** 1 = attend, 0 = padding, length P+S; default all ones. */
  attentionMask?: ArrayLike<number>;
  /**
   * 'all' (default) every row; 'last' only the last row (generation); 'none' skips them, and
   * onnxruntime then skips the lm_head too (encoding frames needs only `present`).
   */
  logits?: 'all' | 'last' | 'none';
  /** Also return the pre-RoPE query taps (needs a graph that exposes them). */
  queries?: boolean;
  /** A cache of length P + S in the KV type that onnxruntime writes `present` into (reused between calls). */
  presentInto?: KvCache;
}

export interface DecoderStepOutput {
  /** float32 [rows, vocab]; rows = S for 'all', 1 for 'last', 0 for 'none'. */
  logits: Float32Array;
  logitRows: number;
  /** The past plus this call's tokens (post-RoPE keys), ready to pass as the next call's past. */
  present: KvCache;
  /** Per layer float32 [S, numHeads * headDim] pre-RoPE queries, when asked for. */
  queries: Float32Array[] | undefined;
}

/** The decoder_model_merged graph behind a step API that takes an explicit KV context. */
export class Decoder {
  readonly info: DecoderInfo;
  private steps = 0;

  /** `tapNames`: per-layer outputs to use as query taps (from graph surgery); default: found by name. */
  constructor(
    readonly graph: OnnxGraph,
    config: ModelConfig,
    tapNames?: string[],
  ) {
    this.info = readDecoderInfo(graph, config);
    if (tapNames) this.info.queryTapNames = tapNames;
  }

  emptyCache(): KvCache {
    return KvCache.empty(this.info);
  }

  /** Decoder calls (step()) since the model loaded: prefills of frames and questions, decode steps. */
  get stepsRun(): number {
    return this.steps;
  }

  async step(input: DecoderStepInput): Promise<DecoderStepOutput> {
    this.steps++;
    const { info } = this;
    const dims = input.inputsEmbeds.dims;
    if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== info.hiddenSize) {
      throw new VigilError('SHAPE_MISMATCH', `decoder inputs_embeds must be [1, S, ${info.hiddenSize}], got [${dims.join(', ')}]`);
    }
    if (input.past.layers.length !== info.numLayers) {
      throw new VigilError('SHAPE_MISMATCH', `KV context has ${input.past.layers.length} layers, the decoder has ${info.numLayers}`);
    }
    const seqLen = dims[1]!;
    const pastLen = input.past.length;
    const total = pastLen + seqLen;
    const feeds: Record<string, ort.Tensor> = { inputs_embeds: input.inputsEmbeds };

    const mask = input.attentionMask ?? new Array<number>(total).fill(1);
    if (mask.length !== total) {
      throw new VigilError('SHAPE_MISMATCH', `attention mask has length ${mask.length}, expected past ${pastLen} + new ${seqLen} = ${total}`);
    }
    feeds.attention_mask = int64Tensor(mask, [1, total]);
    if (info.hasPositionIds) {
      const positions = input.positions ?? Array.from({ length: seqLen }, (_, i) => pastLen + i);
      if (positions.length !== seqLen) {
        throw new VigilError('SHAPE_MISMATCH', `${positions.length} positions for ${seqLen} new tokens`);
      }
      feeds.position_ids = int64Tensor(positions, [1, seqLen]);
    }
    if (info.hasUseCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(pastLen > 0 ? 1 : 0), [1]);
    if (info.hasNumLogitsToKeep) {
      feeds.num_logits_to_keep = int64Tensor([input.logits === 'last' ? 1 : 0], []);
    }
    input.past.layers.forEach((layer, i) => {
      feeds[`past_key_values.${i}.key`] = layer.key;
      feeds[`past_key_values.${i}.value`] = layer.value;
    });

    const wantQueries = input.queries === true;
    if (wantQueries && !info.queryTapNames) {
      throw new VigilError('NOT_A_MODEL', `${this.graph.file} exposes no query taps (/model/layers.{i}/self_attn/q_proj outputs)`);
    }
    const fetches = input.logits === 'none' ? [] : ['logits'];
    for (let i = 0; i < info.numLayers; i++) fetches.push(`present.${i}.key`, `present.${i}.value`);
    if (wantQueries) fetches.push(...info.queryTapNames!);
    let into: Record<string, ort.Tensor> | undefined;
    if (input.presentInto) {
      const target = input.presentInto;
      const wrongType = target.layers.some((l) => l.key.type !== info.type || l.value.type !== info.type);
      if (target.length !== total || target.layers.length !== info.numLayers || wrongType) {
        throw new VigilError('SHAPE_MISMATCH', `presentInto must be ${info.numLayers} layers of ${total} tokens in ${info.type}`);
      }
      into = {};
      target.layers.forEach((layer, i) => {
        into![`present.${i}.key`] = layer.key;
        into![`present.${i}.value`] = layer.value;
      });
    }
    const out = await this.graph.run(feeds, fetches, into);

    let logits: Float32Array = new Float32Array(0);
    let logitRows = 0;
    const logitsTensor = out.logits;
    if (logitsTensor) {
      const vocab = logitsTensor.dims[2]!;
      logitRows = logitsTensor.dims[1]!;
      logits = toFloat32(logitsTensor);
      if (input.logits === 'last' && logitRows > 1) {
        logits = logits.slice((logitRows - 1) * vocab, logitRows * vocab);
        logitRows = 1;
      }
    }
    const present = new KvCache(
      Array.from({ length: info.numLayers }, (_, i) => ({ key: out[`present.${i}.key`]!, value: out[`present.${i}.value`]! })),
    );
    const queries = wantQueries ? info.queryTapNames!.map((name) => toFloat32(out[name]!)) : undefined;
    return { logits, logitRows, present, queries };
  }
}

function readDecoderInfo(graph: OnnxGraph, config: ModelConfig): DecoderInfo {
  const required = ['inputs_embeds', 'attention_mask', 'past_key_values.0.key', 'past_key_values.0.value'];
  const missing = required.filter((n) => !graph.hasInput(n));
  if (missing.length > 0) {
    throw new VigilError('NOT_A_MODEL', `${graph.file} is not a decoder with KV cache: missing inputs ${missing.join(', ')}`);
  }
  const numLayers = graph.inputNames.filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  const key = graph.input('past_key_values.0.key');
  const numKvHeads = typeof key.shape[1] === 'number' ? key.shape[1] : config.text.numKvHeads;
  const headDim = typeof key.shape[3] === 'number' ? key.shape[3] : config.text.headDim;
  const embeds = graph.input('inputs_embeds');
  const hiddenSize = typeof embeds.shape[2] === 'number' ? embeds.shape[2] : config.text.hiddenSize;
  // Graph metadata wins; config is the cross-check that catches a folder with mismatched files.
  const checks: Array<[string, number, number]> = [
    ['num_hidden_layers', numLayers, config.text.numLayers],
    ['num_key_value_heads', numKvHeads, config.text.numKvHeads],
    ['head_dim', headDim, config.text.headDim],
    ['hidden_size', hiddenSize, config.text.hiddenSize],
  ];
  for (const [field, fromGraph, fromConfig] of checks) {
    if (fromGraph !== fromConfig) {
      throw new VigilError('SHAPE_MISMATCH', `${graph.file} has ${field} = ${fromGraph} but config.json says ${fromConfig}`);
    }
  }
  if (graph.hasInput('position_ids') && graph.input('position_ids').shape.length === 3) {
    throw new VigilError('UNSUPPORTED_MODEL', `${graph.file} takes 3-row (M-RoPE) position_ids, which Vigil does not implement yet`);
  }
  const taps = new Map<number, string>();
  for (const name of graph.outputNames) {
    const match = QUERY_TAP.exec(name);
    if (!match) continue;
    const layer = Number(match[1]);
    // With a q bias the Add output is the projection; prefer it over the MatMul before the bias.
    if (!taps.has(layer) || match[2] === 'Add') taps.set(layer, name);
  }
  const queryTapNames = taps.size === numLayers ? Array.from({ length: numLayers }, (_, i) => taps.get(i)!) : undefined;
  return {
    numLayers,
    numKvHeads,
    headDim,
    numHeads: config.text.numHeads,
    hiddenSize,
    vocabSize: config.text.vocabSize,
    type: asFloatType(key.type, `${graph.name} past_key_values.0.key`),
    embedType: asFloatType(embeds.type, `${graph.name} inputs_embeds`),
    queryTapNames,
    hasPositionIds: graph.hasInput('position_ids'),
    hasUseCacheBranch: graph.hasInput('use_cache_branch'),
    hasNumLogitsToKeep: graph.hasInput('num_logits_to_keep'),
  };
}
