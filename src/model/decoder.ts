import ort from 'onnxruntime-node';
import { VigilError } from '../../common/errors.js';
import { ropeInvFreq, rotateHeads } from '../../kernels/rope.js';
import { concatKvInto } from './kvBuffer.js';
import { emptyKvCache, KvCache, type KvSpec } from './kvCache.js';
import type { ModelConfig } from './modelConfig.js';
import { newRowsAsCache } from './newKvRows.js';
import type { KvTaps } from './onnx/kvTapPlan.js';
import type { OnnxGraph } from './onnxGraph.js';
import { asFloatType, type FloatType, floatTensor, int64Tensor, toFloat32 } from './tensors.js';

/** Past length of the RoPE self-check of graphs without position_ids (odd, so no angle is a round number). */
const ROPE_CHECK_PAST = 255;

export interface DecoderInfo extends KvSpec {
  hiddenSize: number;
  vocabSize: number;
  numHeads: number;
  embedType: FloatType;
  /** Per-layer output names of the pre-RoPE queries (found by structure, src/model/onnx/attentionStructure.ts), when the graph outputs them. */
  queryTapNames: string[] | undefined;
  hasPositionIds: boolean;
  hasUseCacheBranch: boolean;
  hasNumLogitsToKeep: boolean;
  /** Outputs holding each layer's new key/value rows (src/model/onnx/kvTapPlan.ts), when the graph has them. */
  kvTaps: KvTaps | undefined;
}

export interface DecoderStepInput {
  /** [1, S, hidden] in the decoder's embedding type. */
  inputsEmbeds: ort.Tensor;
  /** The KV context this call attends to (its length is P). */
  past: KvCache;
  /**
   * Position of each new token; default P..P+S-1 (compact positions). A graph without position_ids
   * (fused exports) places them itself at P..P+S-1: other positions are refused there (BAD_INPUT).
   */
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

/** A call that fetches no `present`: only this call's new key/value rows ('new'), or no KV at all ('none'). */
export interface DecoderRowsInput extends Omit<DecoderStepInput, 'presentInto'> {
  kv: 'new' | 'none';
  /**
   * The valid rows of `past` when its tensors are a longer buffer ([1, KV, capacity, D], rows after
   * pastLength unused): only for graphs that read lengths from the mask (kvTaps.lengthsFromMask).
   * Default: the whole past.
   */
  pastLength?: number;
}

export interface DecoderRowsOutput extends Omit<DecoderStepOutput, 'present'> {
  /** [1, KV, S, D] this call's rows (post-RoPE keys), for kv 'new'. */
  newRows: KvCache | undefined;
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
  /** False for split-attention graphs (src/model/onnx/splitAttention.ts): `present` is then the past plus the fetched new rows. */
  private readonly hasPresent: boolean;

  /** `tapNames`: per-layer outputs to use as query taps (src/model/queryTapLoader.ts); default: none. */
  constructor(
    readonly graph: OnnxGraph,
    private readonly config: ModelConfig,
    tapNames?: string[],
    kvTaps?: KvTaps,
  ) {
    this.info = readDecoderInfo(graph, config);
    if (kvTaps) {
      const missing = kvTaps.layers.flatMap((l) => [l.key, l.value]).find((n) => !graph.outputNames.includes(n));
      if (kvTaps.layers.length !== this.info.numLayers || missing !== undefined) {
        throw new VigilError('INTERNAL', `${graph.file}: kv taps for ${kvTaps.layers.length} of ${this.info.numLayers} layers${missing ? `, '${missing}' is not an output` : ''}`);
      }
      this.info.kvTaps = kvTaps;
    }
    this.hasPresent = graph.outputNames.includes('present.0.key');
    if (!this.hasPresent && !this.info.kvTaps) throw new VigilError('INTERNAL', `${graph.file} outputs neither present.N.* nor kv taps: no KV can be read from it`);
    if (tapNames) {
      const missing = tapNames.find((n) => !graph.outputNames.includes(n));
      if (tapNames.length !== this.info.numLayers || missing !== undefined) {
        throw new VigilError('INTERNAL', `${graph.file}: ${tapNames.length} query taps for ${this.info.numLayers} layers${missing ? `, '${missing}' is not an output` : ''}`);
      }
      this.info.queryTapNames = tapNames;
    }
  }

  /** The graph's attention is Vigil's split decode attention (src/model/onnx/splitAttention.ts): it has no present outputs. */
  get splitAttention(): boolean {
    return !this.hasPresent;
  }

  emptyCache(): KvCache {
    return KvCache.empty(this.info);
  }

  /** Decoder calls (step()) since the model loaded: prefills of frames and questions, decode steps. */
  get stepsRun(): number {
    return this.steps;
  }

  /**
   * For a graph without position_ids (it rotates keys itself: GroupQueryAttention do_rotary with
   * cos/sin caches): checks that its RoPE is the one Vigil's kernels apply (config rope_theta and
   * partial_rotary_factor, rotate-half layout). Vigil's streaming memory un-rotates `present` keys
   * with kernels/rope to store them pre-RoPE and re-rotates them to compact positions; a graph whose
   * rotation differs (rope scaling, interleaved pairs, another theta) would make every stored key
   * wrong without any error, so such a graph is refused (UNSUPPORTED_MODEL). Layer 0's key of a token
   * depends on that token only, so its key after a zero past of ROPE_CHECK_PAST tokens must be the
   * kernel's rotation of its key at position 0. Runs once (step() runs it first too); returns the
   * measured max |difference| relative to the key's largest entry, undefined for graphs with position_ids.
   */
  verifyImplicitRope(): Promise<number | undefined> {
    this.ropeCheck ??= this.info.hasPositionIds ? Promise.resolve(undefined) : this.measureImplicitRope();
    return this.ropeCheck;
  }

  private ropeCheck: Promise<number | undefined> | undefined;

  private async measureImplicitRope(): Promise<number> {
    const { info } = this;
    const { numKvHeads, headDim } = info;
    const probe = new Float32Array(info.hiddenSize);
    for (let i = 0; i < probe.length; i++) probe[i] = Math.sin(0.37 * i + 0.1);
    const embeds = floatTensor(info.embedType, probe, [1, 1, info.hiddenSize]);
    const keyAt = async (pastLen: number): Promise<Float32Array> => {
      const out = await this.run({ inputsEmbeds: embeds, past: emptyKvCache(info, pastLen), logits: 'none', kv: 'present' });
      const key = toFloat32(out.present!.layers[0]!.key);
      const total = pastLen + 1;
      return Float32Array.from({ length: numKvHeads * headDim }, (_, j) => key[(Math.floor(j / headDim) * total + pastLen) * headDim + (j % headDim)]!);
    };
    const at0 = await keyAt(0);
    const atP = await keyAt(ROPE_CHECK_PAST);
    const invFreq = ropeInvFreq(this.config.text.rotaryDim, this.config.text.ropeTheta);
    const expected = rotateHeads(at0, numKvHeads, 1, headDim, [ROPE_CHECK_PAST], invFreq, 1);
    let scale = 0;
    let worst = 0;
    for (let j = 0; j < at0.length; j++) {
      scale = Math.max(scale, Math.abs(at0[j]!));
      const d = Math.abs(atP[j]! - expected[j]!);
      worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
    }
    const relative = scale > 0 ? worst / scale : Infinity;
    const tolerance = info.type === 'float16' ? 4e-3 : 1e-4;
    if (!(relative <= tolerance)) {
      throw new VigilError(
        'UNSUPPORTED_MODEL',
        `${this.graph.name} applies RoPE inside the graph (no position_ids) and its rotation is not the one config.json describes ` +
          `(rope_theta ${this.config.text.ropeTheta}, ${this.config.text.rotaryDim} rotary dims, rotate-half): a key at position ${ROPE_CHECK_PAST} ` +
          `differs by ${relative.toExponential(2)} (relative) from Vigil's rotation. Vigil stores keys pre-RoPE and re-rotates them, so it cannot stream this graph ` +
          '(rope scaling or interleaved rotary are not implemented)',
      );
    }
    return relative;
  }

  async step(input: DecoderStepInput): Promise<DecoderStepOutput> {
    this.steps++;
    if (!this.info.hasPositionIds) await this.verifyImplicitRope();
    const out = await this.run({ ...input, kv: 'present' });
    return { logits: out.logits, logitRows: out.logitRows, present: out.present!, queries: out.queries };
  }

  /**
   * A step that fetches only this call's new key/value rows (or none) instead of `present`:
   * onnxruntime-node copies every fetched output into fresh JavaScript memory, so fetching `present`
   * costs a copy of the whole context per call (docs/PERFORMANCE.md "Decode in place"). Needs kv
   * taps for 'new' (the decoder loaded with query taps 'auto' and a graph whose structure shows them).
   */
  async stepRows(input: DecoderRowsInput): Promise<DecoderRowsOutput> {
    if (input.kv === 'new' && !this.info.kvTaps) throw new VigilError('INTERNAL', `${this.graph.file} has no kv taps: fetch present instead`);
    this.steps++;
    if (!this.info.hasPositionIds) await this.verifyImplicitRope();
    const out = await this.run(input);
    return { logits: out.logits, logitRows: out.logitRows, newRows: out.newRows, queries: out.queries };
  }

  private invFreqTable: Float32Array | undefined;

  private get invFreq(): Float32Array {
    this.invFreqTable ??= ropeInvFreq(this.config.text.rotaryDim, this.config.text.ropeTheta);
    return this.invFreqTable;
  }

  private async run(
    input: DecoderStepInput & { kv: 'present' | 'new' | 'none'; pastLength?: number },
  ): Promise<Omit<DecoderStepOutput, 'present'> & { present: KvCache | undefined; newRows: KvCache | undefined }> {
    const { info } = this;
    const dims = input.inputsEmbeds.dims;
    if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== info.hiddenSize) {
      throw new VigilError('SHAPE_MISMATCH', `decoder inputs_embeds must be [1, S, ${info.hiddenSize}], got [${dims.join(', ')}]`);
    }
    if (input.past.layers.length !== info.numLayers) {
      throw new VigilError('SHAPE_MISMATCH', `KV context has ${input.past.layers.length} layers, the decoder has ${info.numLayers}`);
    }
    const seqLen = dims[1]!;
    const pastLen = input.pastLength ?? input.past.length;
    if (!Number.isInteger(pastLen) || pastLen < 0 || pastLen > input.past.length) {
      throw new VigilError('INTERNAL', `past length ${pastLen} outside the ${input.past.length} rows given`);
    }
    if (pastLen !== input.past.length && !info.kvTaps?.lengthsFromMask) {
      throw new VigilError('INTERNAL', `${this.graph.name} reads its whole past input (its attention is not GroupQueryAttention): a past buffer longer than the context cannot be fed`);
    }
    const total = pastLen + seqLen;
    const feeds: Record<string, ort.Tensor> = { inputs_embeds: input.inputsEmbeds };

    const mask = input.attentionMask ?? new Array<number>(total).fill(1);
    if (mask.length !== total) {
      throw new VigilError('SHAPE_MISMATCH', `attention mask has length ${mask.length}, expected past ${pastLen} + new ${seqLen} = ${total}`);
    }
    feeds.attention_mask = int64Tensor(mask, [1, total]);
    if (input.positions && input.positions.length !== seqLen) {
      throw new VigilError('SHAPE_MISMATCH', `${input.positions.length} positions for ${seqLen} new tokens`);
    }
    if (info.hasPositionIds) {
      const positions = input.positions ?? Array.from({ length: seqLen }, (_, i) => pastLen + i);
      feeds.position_ids = int64Tensor(positions, [1, seqLen]);
    } else {
      checkImplicitPositions(this.graph.name, mask, pastLen, input.positions);
    }
    if (info.hasUseCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(pastLen > 0 ? 1 : 0), [1]);
    if (info.hasNumLogitsToKeep) {
      // 0 = every row. 'none' keeps 1 row (discarded): 0 would compute the lm_head over all S rows.
      feeds.num_logits_to_keep = int64Tensor([(input.logits ?? 'all') === 'all' ? 0 : 1], []);
    }
    input.past.layers.forEach((layer, i) => {
      feeds[`past_key_values.${i}.key`] = layer.key;
      feeds[`past_key_values.${i}.value`] = layer.value;
    });

    const wantQueries = input.queries === true;
    if (wantQueries && !info.queryTapNames) {
      throw new VigilError('NOT_A_MODEL', `${this.graph.file} exposes no query taps (load it with queryTaps 'auto'; model.queryTaps says why there are none)`);
    }
    // A graph without present outputs gives its new rows, laid after the past here (the same values).
    const assemblePresent = input.kv === 'present' && !this.hasPresent;
    const kvFetch = assemblePresent ? 'new' : input.kv;
    const fetches = input.logits === 'none' ? [] : ['logits'];
    if (kvFetch === 'present') for (let i = 0; i < info.numLayers; i++) fetches.push(`present.${i}.key`, `present.${i}.value`);
    if (kvFetch === 'new') for (const l of info.kvTaps!.layers) fetches.push(l.key, l.value);
    if (wantQueries) fetches.push(...info.queryTapNames!);
    if (fetches.length === 0) throw new VigilError('INTERNAL', 'a decoder call must fetch something (logits, KV or query taps)');
    let into: Record<string, ort.Tensor> | undefined;
    if (input.presentInto && input.kv === 'present') {
      const target = input.presentInto;
      const wrongType = target.layers.some((l) => l.key.type !== info.type || l.value.type !== info.type);
      if (target.length !== total || target.layers.length !== info.numLayers || wrongType) {
        throw new VigilError('SHAPE_MISMATCH', `presentInto must be ${info.numLayers} layers of ${total} tokens in ${info.type}`);
      }
    }
    if (input.presentInto && kvFetch === 'present') {
      const target = input.presentInto;
      into = {};
      target.layers.forEach((layer, i) => {
        into![`present.${i}.key`] = layer.key;
        into![`present.${i}.value`] = layer.value;
      });
    }
    let out: Record<string, ort.Tensor>;
    try {
      out = await this.graph.run(feeds, fetches, into);
    } catch (error) {
      // GroupQueryAttention do_rotary reads its cos/sin caches by position: a context longer than their
      // rows (the export's max_position_embeddings) cannot be placed. Say so in Vigil's words.
      const message = (error as Error).message ?? '';
      if (!info.hasPositionIds && /cos_cache dimension 0 shall not be less than total_sequence_length/.test(message)) {
        throw new VigilError(
          'BAD_INPUT',
          `${this.graph.name} applies RoPE from a table of positions (cos_cache) shorter than this call's ${total} tokens of context; ` +
            `keep contexts within the model's max_position_embeddings (${this.config.text.maxPositionEmbeddings ?? 'not in config.json'})`,
          { cause: error },
        );
      }
      throw error;
    }

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
    const newRows =
      kvFetch === 'new'
        ? newRowsAsCache(out, info.kvTaps!, info, seqLen, input.positions ?? Array.from({ length: seqLen }, (_, i) => pastLen + i), this.invFreq)
        : undefined;
    let present: KvCache | undefined;
    if (kvFetch === 'present') present = new KvCache(Array.from({ length: info.numLayers }, (_, i) => ({ key: out[`present.${i}.key`]!, value: out[`present.${i}.value`]! })));
    if (assemblePresent) {
      present = input.presentInto ?? emptyKvCache(info, total);
      concatKvInto(input.past, newRows!, present);
    }
    const queries = wantQueries ? info.queryTapNames!.map((name) => toFloat32(out[name]!)) : undefined;
    return { logits, logitRows, present, newRows: input.kv === 'new' ? newRows : undefined, queries };
  }
}

/**
 * A graph without `position_ids` places the new tokens itself: fused exports (GroupQueryAttention
 * with do_rotary) derive the positions from the attention mask (seqlens_k = sum(mask) - 1), so with an
 * all-ones mask they are P..P+S-1. Positions a caller asks for must be exactly those, and a mask with
 * padding is refused (where its positions land depends on how the export derives them): anything
 * else would be silently ignored and give wrong answers.
 */
function checkImplicitPositions(graphName: string, mask: ArrayLike<number>, pastLen: number, positions: ArrayLike<number> | undefined): void {
  for (let j = 0; j < mask.length; j++) {
    if (mask[j] !== 1) {
      throw new VigilError(
        'BAD_INPUT',
        `${graphName} has no position_ids input (it derives positions from the attention mask), so it cannot take a mask with padding (slot ${j} is ${mask[j]})`,
      );
    }
  }
  if (!positions) return;
  for (let i = 0; i < positions.length; i++) {
    if (positions[i] !== pastLen + i) {
      throw new VigilError(
        'BAD_INPUT',
        `${graphName} has no position_ids input: its new tokens sit at positions ${pastLen}..${pastLen + positions.length - 1} (after the ${pastLen}-token past), ` +
          `but position ${positions[i]} was asked for token ${i}; lay the context out at compact positions or use an export with position_ids`,
      );
    }
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
  return {
    numLayers,
    numKvHeads,
    headDim,
    numHeads: config.text.numHeads,
    hiddenSize,
    vocabSize: config.text.vocabSize,
    type: asFloatType(key.type, `${graph.name} past_key_values.0.key`),
    embedType: asFloatType(embeds.type, `${graph.name} inputs_embeds`),
    queryTapNames: undefined,
    hasPositionIds: graph.hasInput('position_ids'),
    hasUseCacheBranch: graph.hasInput('use_cache_branch'),
    hasNumLogitsToKeep: graph.hasInput('num_logits_to_keep'),
    kvTaps: undefined,
  };
}
