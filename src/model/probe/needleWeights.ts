import type { TextGeometry } from './geometry.js';
import { CONST_VALUE, NEEDLE_COLORS, NEEDLE_DIMS, NUM_COLORS, UNKNOWN_SLOT } from './needleLayout.js';
import { SMOLVLM_TOKEN_IDS } from './probeConfigFiles.js';
import { mulberry32 } from '../../../kernels/sampling.js';
import { randomWeightSource } from './randomWeights.js';
import type { WeightSource } from './weightSource.js';

/**
 * Hand-set weights of the probe-needle decoder (docs/needle-model.md), for the unmodified probe
 * decoder graph. Only head 0 (and so KV head 0) of layers 0 and 1 does anything; every q/k weight
 * writes the position-free dims of the head (from rotaryDim on), so no score depends on positions.
 *
 * Layer 0 (copy): every query (from the constant dim) matches color-word keys with score
 * LAYER0_SCORE; values are the asked-color one-hot, written to slot A. The last prompt token thus
 * holds the color the question names.
 * Layer 1 (lookup): the query is slot A plus the token's own asked-color one-hot; keys of image
 * tokens are their background one-hot (MATCH_SCORE when the colors agree, else 0); every query also
 * meets the sink (`<|im_start|>`) with SINK_SCORE. Values: the square one-hot of image tokens, the
 * "unknown" unit of the sink; written to slot B, which the lm_head reads as the answer word.
 * Answer words carry the "answered" flag, which the lm_head maps to end-of-utterance.
 * Every norm weight is 1, every MLP weight 0.
 */

/** Bump when the construction (weights, vision graph, layout) changes, so cached folders are rebuilt. */
export const NEEDLE_CONSTRUCTION_VERSION = 1;

/** Raw attention scores (after the 1/sqrt(headDim) scaling) the construction is set for. */
export const NEEDLE_SCORES = {
  /** Layer 0: a text token's query against a color word's key. */
  layer0ColorWord: 20,
  /** Layer 1: asked color against an image token whose background has that color. */
  match: 26,
  /** Layer 1: any query against the sink: wins when nothing matches. */
  sink: 12,
} as const;

/** The answer logit when the answer attention is pure (slot B holds exactly 1). */
export const NEEDLE_ANSWER_LOGIT = 30;
/** The end-of-utterance logit of a token carrying the "answered" flag (and minus this on answer words). */
export const NEEDLE_EOS_LOGIT = 60;

/** The token ids the construction reads or writes. */
export interface NeedleTokenIds {
  /** Per palette class: ids that name the color (' red' and 'red'). */
  colorWords: number[][];
  /** Per palette class: the answer token (' red': the answer follows "Assistant:" after a space). */
  answers: number[];
  unknown: number;
  sink: number;
  eos: number;
}

/** Reads the needle's token ids from a probe tokenizer.json (byte-level BPE: ' ' is 'Ġ'). */
export function needleTokenIds(tokenizerJson: unknown): NeedleTokenIds {
  const vocab = (tokenizerJson as { model?: { vocab?: Record<string, number> } }).model?.vocab;
  if (!vocab) throw new Error('probe-needle: tokenizer.json has no model.vocab');
  const id = (token: string): number => {
    const value = vocab[token];
    if (value === undefined) throw new Error(`probe-needle: '${token}' is not a single token of the probe tokenizer`);
    return value;
  };
  return {
    colorWords: NEEDLE_COLORS.map((c) => [id(`Ġ${c}`), id(c)]),
    answers: NEEDLE_COLORS.map((c) => id(`Ġ${c}`)),
    unknown: id('Ġunknown'),
    sink: SMOLVLM_TOKEN_IDS.imStart,
    eos: SMOLVLM_TOKEN_IDS.endOfUtterance,
  };
}

export function validateNeedleGeometry(text: TextGeometry): void {
  const problems: string[] = [];
  if (text.hiddenSize < NEEDLE_DIMS.used) problems.push(`hiddenSize must be >= ${NEEDLE_DIMS.used}`);
  if (text.headDim - text.rotaryDim < NUM_COLORS + 1) problems.push(`headDim - rotaryDim must be >= ${NUM_COLORS + 1} position-free dims`);
  if (text.headDim < NUM_COLORS + 1) problems.push(`headDim must be >= ${NUM_COLORS + 1}`);
  if (text.numLayers < 2) problems.push('the construction needs 2 layers');
  if (problems.length > 0) throw new Error(`invalid probe-needle geometry: ${problems.join('; ')}`);
}

/** The circuit's layers; any layer from this one on is outside it (zero, or random when asked for). */
export const NEEDLE_CIRCUIT_LAYERS = 2;

export interface NeedleRandomLayers {
  seed: number;
  /** Multiplies the random o_proj and down_proj weights: the size of what each random layer adds. */
  outputScale: number;
  /**
   * Let the random layers write into the circuit's residual dims (0..NEEDLE_DIMS.used-1) too. Off by
   * default: the lm_head multiplies slot B by 30 and the answered flag by 60, so small scales already
   * move the margin a lot and 0.1 flips answers (docs/needle-model.md); kept for measuring that.
   */
  writeCircuitDims?: boolean;
  /**
   * Every token embedding (and, via the vision graph, every image token) also carries a seeded
   * random vector of exactly this squared norm in the dims the circuit does not use. Without it
   * all plain text tokens enter the random layers identical (the constant alone); with it each token
   * id (and each of a frame's image tokens) is distinct, as in a real model. The circuit never reads
   * those dims, and every token's rms includes the same energy, so its weights stay exact.
   */
  tokenEnergy?: number;
}

/**
 * `rows` x `width` float32 rows, zero in dims 0..first-1, seeded uniform values in dims first.., each
 * row scaled to squared norm `energy` exactly (so RMSNorm sees the same extra energy on every token).
 */
export function fixedEnergyRows(rows: number, width: number, first: number, energy: number, seed: number): Float32Array {
  const table = new Float32Array(rows * width);
  const random = mulberry32(seed >>> 0);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c = first; c < width; c++) {
      const v = 2 * random() - 1;
      table[r * width + c] = v;
      sum += v * v;
    }
    const scale = Math.sqrt(energy / sum);
    for (let c = first; c < width; c++) table[r * width + c]! *= scale;
  }
  return table;
}

/** Seeds of the token-energy rows: the embedding table and the vision graph's per-token rows. */
export const TOKEN_ENERGY_SEEDS = { embedding: 0x6e65656d, image: 0x6e656969 } as const;

/**
 * Layers from NEEDLE_CIRCUIT_LAYERS on, when `randomLayers` is given: seeded random weights (as the
 * probe-random models), the output projections scaled by `outputScale`. They come after the circuit,
 * so the circuit's KV (and layer 1's retrieval keys) is exactly the hand-set one; what the random
 * layers add to the residual goes to the dims the circuit does not use (unless `writeCircuitDims`),
 * so it reaches the answer only through the final RMSNorm: a larger rms shrinks every logit, by the
 * factor docs/needle-model.md measures against the scale.
 */
export function needleWeightSource(text: TextGeometry, ids: NeedleTokenIds, randomLayers?: NeedleRandomLayers): WeightSource {
  validateNeedleGeometry(text);
  const random = randomLayers ? randomWeightSource(randomLayers.seed) : undefined;
  const H = text.hiddenSize;
  const D = text.headDim;
  const free = text.rotaryDim; // first position-free dim of head 0
  const scale = Math.sqrt(D); // the decoder multiplies q.k by 1/sqrt(D)
  const tokenEnergy = randomLayers?.tokenEnergy ?? 0;
  /** RMSNorm's divisor for a token holding the constant, `units` features of value 1 and the token energy. */
  const rms = (units: number) => Math.sqrt((CONST_VALUE * CONST_VALUE + units + tokenEnergy) / H);
  /** Query and key amplitudes whose product over sqrt(D) is `score`. */
  const amplitude = (score: number) => Math.sqrt(score * scale);
  const d = NEEDLE_DIMS;

  const matrix = (rows: number, cols: number, set: (put: (r: number, c: number, v: number) => void) => void) => {
    const m = new Float32Array(rows * cols);
    set((r, c, v) => {
      m[r * cols + c] = v;
    });
    return m;
  };
  const colors = Array.from({ length: NUM_COLORS }, (_, c) => c);

  // Rms of the tokens each weight is tuned for (unit features besides the constant):
  const textToken = rms(0); // any plain text token (a query in layer 0)
  const colorWord = rms(3); // asked one-hot + colorWord + answered
  const answerPosition = rms(1); // plain token + slot A after layer 0
  const imageToken = rms(2); // background + square one-hots
  const sinkToken = rms(1); // sink flag
  const finalAnswer = rms(2); // answer position + slot B after layer 1

  const layer0: Record<string, (rows: number, cols: number) => Float32Array> = {
    q_proj: (r, c) => matrix(r, c, (put) => put(d.const, free, (amplitude(NEEDLE_SCORES.layer0ColorWord) * textToken) / CONST_VALUE)),
    k_proj: (r, c) => matrix(r, c, (put) => put(d.colorWord, free, amplitude(NEEDLE_SCORES.layer0ColorWord) * colorWord)),
    v_proj: (r, c) => matrix(r, c, (put) => colors.forEach((k) => put(d.asked + k, k, colorWord))),
    o_proj: (r, c) => matrix(r, c, (put) => colors.forEach((k) => put(k, d.slotAsked + k, 1))),
  };
  const layer1: Record<string, (rows: number, cols: number) => Float32Array> = {
    q_proj: (r, c) =>
      matrix(r, c, (put) => {
        for (const k of colors) {
          put(d.slotAsked + k, free + k, amplitude(NEEDLE_SCORES.match) * answerPosition);
          put(d.asked + k, free + k, amplitude(NEEDLE_SCORES.match) * answerPosition);
        }
        put(d.const, free + NUM_COLORS, (amplitude(NEEDLE_SCORES.sink) * answerPosition) / CONST_VALUE);
      }),
    k_proj: (r, c) =>
      matrix(r, c, (put) => {
        for (const k of colors) put(d.background + k, free + k, amplitude(NEEDLE_SCORES.match) * imageToken);
        put(d.sink, free + NUM_COLORS, amplitude(NEEDLE_SCORES.sink) * sinkToken);
      }),
    v_proj: (r, c) =>
      matrix(r, c, (put) => {
        for (const k of colors) put(d.square + k, k, imageToken);
        put(d.sink, UNKNOWN_SLOT, sinkToken);
      }),
    o_proj: (r, c) => matrix(r, c, (put) => colors.concat(UNKNOWN_SLOT).forEach((k) => put(k, d.slotAnswer + k, 1))),
  };

  return (name, dims, role) => {
    const count = dims.reduce((a, b) => a * b, 1);
    if (name === 'model.embed_tokens.weight') {
      const table = embedding(dims[0]!, H, ids);
      if (randomLayers && tokenEnergy > 0) {
        const noise = fixedEnergyRows(dims[0]!, H, d.used, tokenEnergy, randomLayers.seed ^ TOKEN_ENERGY_SEEDS.embedding);
        for (let i = 0; i < table.length; i++) table[i]! += noise[i]!;
      }
      return table;
    }
    if (name === 'lm_head.weight') {
      const V = dims[1]!;
      return matrix(H, V, (put) => {
        for (const k of colors) put(d.slotAnswer + k, ids.answers[k]!, NEEDLE_ANSWER_LOGIT * finalAnswer);
        put(d.slotAnswer + UNKNOWN_SLOT, ids.unknown, NEEDLE_ANSWER_LOGIT * finalAnswer);
        put(d.answered, ids.eos, NEEDLE_EOS_LOGIT);
        for (const answer of [...ids.answers, ids.unknown]) put(d.answered, answer, -NEEDLE_EOS_LOGIT);
      });
    }
    const layerIndex = /^model\.layers\.(\d+)\./.exec(name);
    if (random && randomLayers && layerIndex && Number(layerIndex[1]) >= NEEDLE_CIRCUIT_LAYERS) {
      const values = random(name, dims, role);
      if (/\.(o_proj|down_proj)\.weight$/.test(name)) {
        // [in, out]: column c writes residual dim c; the circuit's dims are left to the circuit.
        const out = dims[1]!;
        for (let i = 0; i < values.length; i++) {
          values[i] = !randomLayers.writeCircuitDims && i % out < d.used ? 0 : values[i]! * randomLayers.outputScale;
        }
      }
      return values;
    }
    if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return new Float32Array(count).fill(1);
    const match = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.weight$/.exec(name);
    if (match) {
      const [, layer, block, proj] = match;
      const table = block === 'self_attn' ? (layer === '0' ? layer0 : layer === '1' ? layer1 : undefined) : undefined;
      const build = table?.[proj!];
      return build ? build(dims[0]!, dims[1]!) : new Float32Array(count);
    }
    throw new Error(`probe-needle: no hand-set value for weight '${name}'`);
  };
}

/** Every token: the constant. The sink, color words and ' unknown' also carry their features. */
function embedding(V: number, H: number, ids: NeedleTokenIds): Float32Array {
  const table = new Float32Array(V * H);
  for (let t = 0; t < V; t++) table[t * H + NEEDLE_DIMS.const] = CONST_VALUE;
  table[ids.sink * H + NEEDLE_DIMS.sink] = 1;
  ids.colorWords.forEach((words, k) => {
    for (const t of words) {
      table[t * H + NEEDLE_DIMS.asked + k] = 1;
      table[t * H + NEEDLE_DIMS.colorWord] = 1;
      table[t * H + NEEDLE_DIMS.answered] = 1;
    }
  });
  table[ids.unknown * H + NEEDLE_DIMS.answered] = 1;
  return table;
}
