import type ort from 'onnxruntime-node';
import { argmax } from '../../kernels/topk.js';
import { mulberry32, sampleTopP } from '../../kernels/sampling.js';
import { VigilError } from '../../common/errors.js';
import { type BufferPool, sharedBufferPool } from './bufferPool.js';
import { concatKvInto, KvBuffer } from './kvBuffer.js';
import type { KvCache } from './kvCache.js';
import { PresentBuffers } from './presentBuffers.js';
import type { VisionLanguageModel } from './visionLanguageModel.js';

export interface SamplingOptions {
  /** 0 (default) = greedy argmax; > 0 = temperature sampling with top-p. */
  temperature?: number;
  /** Nucleus mass kept when sampling; default 1 (all tokens). */
  topP?: number;
  /** Seed of the sampling random stream, for reproducible samples. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Where the decoder's KV of each step goes (reused memory); default the process's shared pool. */
  buffers?: BufferPool;
  /**
   * Decode in place (default: where the decoder allows it, GroupQueryAttention graphs with kv taps):
   * the context is one growing buffer and each call fetches only its new rows. false: every call
   * fetches `present` (the whole context, copied by onnxruntime-node): kept to measure against.
   */
  inPlace?: boolean;
  /** Called with each new piece of text as soon as it decodes to whole characters. */
  onText?: (piece: string) => void;
}

export interface GenerationResult {
  tokenIds: number[];
  text: string;
  stopReason: 'eos' | 'max_new_tokens';
  promptTokens: number;
  /** Time of the prompt prefill call (time to first token). */
  prefillMs: number;
  /** Time of all later decoder steps together. */
  decodeMs: number;
  /** Generated tokens per second of decode time (excluding the prefill). */
  decodeTokensPerSecond: number;
}

export function validateSampling(options: SamplingOptions & { maxNewTokens?: number }): void {
  const { temperature = 0, topP = 1, maxNewTokens } = options;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new VigilError('BAD_INPUT', `temperature must be >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new VigilError('BAD_INPUT', `top-p must be in (0, 1], got ${topP}`);
  if (maxNewTokens !== undefined && (!Number.isInteger(maxNewTokens) || maxNewTokens < 1)) {
    throw new VigilError('BAD_INPUT', `max new tokens must be a positive integer, got ${maxNewTokens}`);
  }
}

/**
 * Prefills `inputsEmbeds` on top of `past` (empty by default), then decodes token by token until an
 * eos id or maxNewTokens. Every token comes from the decoder's logits: greedy or top-p sampled.
 */
export async function generate(
  model: VisionLanguageModel,
  prompt: { inputsEmbeds: ort.Tensor; past?: KvCache },
  options: GenerateOptions,
): Promise<GenerationResult> {
  validateSampling(options);
  const temperature = options.temperature ?? 0;
  const random = mulberry32(options.seed ?? 0);
  const pick = (logits: Float32Array) =>
    temperature > 0 ? sampleTopP(logits, temperature, options.topP ?? 1, random) : argmax(logits);

  const started = performance.now();
  const past = prompt.past ?? model.decoder.emptyCache();
  const promptLength = past.length + prompt.inputsEmbeds.dims[1]!;
  const capacity = promptLength + options.maxNewTokens;
  const pool = options.buffers ?? sharedBufferPool;
  const decoder = model.decoder;
  const inPlace = (options.inPlace ?? decodeInPlaceByDefault()) && decoder.info.kvTaps !== undefined;
  if (inPlace && decoder.info.kvTaps!.lengthsFromMask) {
    // One buffer of prompt + answer rows; each call appends its new rows to it.
    const kv = new KvBuffer(decoder.info, capacity, pool);
    try {
      kv.append(past);
      const next: NextLogits = async (inputsEmbeds) => {
        const out = await decoder.stepRows({ inputsEmbeds, past: kv.cache, pastLength: kv.length, kv: 'new', logits: 'last' });
        kv.append(out.newRows!);
        return out.logits;
      };
      return await decodeLoop(model, prompt.inputsEmbeds, next, options, pick, started);
    } finally {
      kv.dispose();
    }
  }
  // Every step's present (past + 1 token) goes into pooled memory, alternating between two sets.
  const presents = new PresentBuffers(decoder.info, capacity, pool);
  try {
    let context = past;
    if (inPlace) {
      // A graph that reads its whole past (Concat): fetch the new rows, lay the next context out here.
      const next: NextLogits = async (inputsEmbeds) => {
        const out = await decoder.stepRows({ inputsEmbeds, past: context, kv: 'new', logits: 'last' });
        const into = presents.take(context.length + out.newRows!.length);
        concatKvInto(context, out.newRows!, into);
        context = into;
        return out.logits;
      };
      return await decodeLoop(model, prompt.inputsEmbeds, next, options, pick, started);
    }
    const next: NextLogits = async (inputsEmbeds) => {
      const step = await decoder.step({ inputsEmbeds, past: context, logits: 'last', presentInto: presents.take(context.length + inputsEmbeds.dims[1]!) });
      context = step.present;
      return step.logits;
    };
    return await decodeLoop(model, prompt.inputsEmbeds, next, options, pick, started);
  } finally {
    presents.release();
  }
}

/**
 * VIGIL_DECODE: 'in-place' (default) or 'present' (every call fetches `present`, as before kv
 * taps: the escape hatch should an export's new rows ever disagree with its present, and the
 * baseline benches measure against). Read at every generation, so a bench can switch it per round.
 */
function decodeInPlaceByDefault(): boolean {
  const mode = process.env.VIGIL_DECODE ?? 'in-place';
  if (mode !== 'in-place' && mode !== 'present') throw new VigilError('BAD_CONFIG', `VIGIL_DECODE must be 'in-place' or 'present', got '${mode}'`);
  return mode === 'in-place';
}

/** One decoder call on top of everything before it: the last row's logits. */
type NextLogits = (inputsEmbeds: ort.Tensor) => Promise<Float32Array>;

async function decodeLoop(
  model: VisionLanguageModel,
  inputsEmbeds: ort.Tensor,
  next: NextLogits,
  options: GenerateOptions,
  pick: (logits: Float32Array) => number,
  started: number,
): Promise<GenerationResult> {
  let logits = await next(inputsEmbeds);
  const prefillMs = performance.now() - started;

  const tokenIds: number[] = [];
  let emitted = '';
  let stopReason: GenerationResult['stopReason'] = 'max_new_tokens';
  const decodeStarted = performance.now();
  for (;;) {
    const token = pick(logits);
    if (model.eosTokenIds.has(token)) {
      stopReason = 'eos';
      break;
    }
    tokenIds.push(token);
    const text = model.tokenizer.decode(tokenIds, { skipSpecialTokens: true });
    // Hold back a trailing partial UTF-8 sequence until the next token completes it.
    if (!text.endsWith('\uFFFD') && text.length > emitted.length && text.startsWith(emitted)) {
      options.onText?.(text.slice(emitted.length));
      emitted = text;
    }
    if (tokenIds.length >= options.maxNewTokens) break;
    logits = await next(await model.embed([token]));
  }
  const decodeMs = performance.now() - decodeStarted;
  const text = model.tokenizer.decode(tokenIds, { skipSpecialTokens: true });
  if (text.length > emitted.length && text.startsWith(emitted)) options.onText?.(text.slice(emitted.length));
  return {
    tokenIds,
    text,
    stopReason,
    promptTokens: inputsEmbeds.dims[1]!,
    prefillMs,
    decodeMs,
    decodeTokensPerSecond: decodeMs > 0 ? (tokenIds.length / decodeMs) * 1000 : 0,
  };
}
