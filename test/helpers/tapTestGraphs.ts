/**
 * Small decoder graphs in the styles real exports use, written with Vigil's own ONNX writer, for
 * the query-tap discovery tests: eager attention under names no exporter uses, q_norm before RoPE,
 * GroupQueryAttention with packed QKV and RoPE inside, float16 internals behind float32 inputs_embeds.
 * Each returns the weights the test needs to compute the pre-RoPE queries independently.
 */
import fs from 'node:fs';
import { float32ToFloat16 } from '../../kernels/fp16.js';
import type { GraphBuilder } from '../../src/model/onnx/graphBuilder.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { modelProtoType } from '../../src/model/onnx/onnxSchema.js';
import { seededData } from './seededData.js';

export const TAP_GEOMETRY = { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, vocab: 8, layers: 2, maxPositions: 64, eps: 1e-6 } as const;

export interface TapTestGraph {
  file: string;
  /** Per layer: the query projection [hidden, heads*headDim] (row-major, x·W). */
  wq: Float32Array[];
  /** Per layer, when the graph has q_norm: its weight [headDim]. */
  qNormWeight?: Float32Array[];
  /** Per layer, when the q projection has a bias (Qwen2): [heads*headDim]. */
  qBias?: Float32Array[];
  internal: 'float32' | 'float16';
}

export interface EagerOptions {
  /** Scope of layer i's attention nodes (names no exporter uses, so name matching cannot find them). */
  scope: (layer: number) => string;
  qNorm?: boolean;
  /** q_norm after the heads transpose, on [B,heads,S,D] (Gemma-3's eager attention), instead of before it. */
  qNormAfterTranspose?: boolean;
  /** Weights, KV and attention in float16 behind float32 inputs_embeds and logits. */
  float16?: boolean;
  /** float16 graphs: RoPE computed in float32 (the query cast up after its transpose, the result cast back). */
  ropeInFloat32?: boolean;
  /**
   * As torch.onnx exports HF's sdpa attention (Qwen2 / LLaVA-OV): q/k/v biases, repeat_kv as
   * Unsqueeze/Expand/Reshape, and q and K^T each scaled by sqrt(1/sqrt(D)) computed from Shape.
   */
  torchSdpa?: boolean;
  /** No rotary embedding at all (the walk must fall back). */
  noRope?: boolean;
  /** A value_info that declares layer 0's q projection with the wrong float type (as Vigil's old surgery did: onnxruntime refuses it). */
  wrongValueInfo?: boolean;
}

const { hidden: H, heads, kvHeads, headDim: D, vocab, layers, maxPositions, eps } = TAP_GEOMETRY;

function floatWeight(g: GraphBuilder, name: string, dims: number[], values: Float32Array, half: boolean): string {
  return half ? g.initializer(name, 'float16', dims, float32ToFloat16(values)) : g.initializer(name, 'float32', dims, values);
}

function halfScalar(g: GraphBuilder, name: string, value: number, half: boolean): string {
  return half ? g.initializer(name, 'float16', [], float32ToFloat16(Float32Array.of(value))) : g.scalar('float32', value);
}

/** x*cos + rotate_half(x)*sin over the last axis. */
/** The decoder inputs every test graph declares: embeddings, mask, and each layer's past key and value. */
function decoderInputs(g: GraphBuilder, dtype: 'float32' | 'float16', pastHeads: number): { embeds: string; mask: string; past: string[][] } {
  const embeds = g.input('inputs_embeds', 'float32', ['batch_size', 'sequence_length', H]);
  const mask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  const past = Array.from({ length: layers }, (_, i) => [
    g.input(`past_key_values.${i}.key`, dtype, ['batch_size', pastHeads, 'past_sequence_length', D]),
    g.input(`past_key_values.${i}.value`, dtype, ['batch_size', pastHeads, 'past_sequence_length', D]),
  ]);
  return { embeds, mask, past };
}

/** cos/sin tables [maxPositions, D/2] (theta 10000) as the com.microsoft rotary ops take them. */
function ropeCaches(g: GraphBuilder): { cosCache: string; sinCache: string } {
  const angles = Array.from({ length: maxPositions * (D / 2) }, (_, n) => Math.floor(n / (D / 2)) * 10000 ** (-(2 * (n % (D / 2))) / D));
  return {
    cosCache: g.initializer('cos_cache', 'float32', [maxPositions, D / 2], Float32Array.from(angles, Math.cos)),
    sinCache: g.initializer('sin_cache', 'float32', [maxPositions, D / 2], Float32Array.from(angles, Math.sin)),
  };
}

function rotateHalf(g: GraphBuilder, x: string, cos: string, sin: string): string {
  const axis = g.int64s([-1]);
  const x1 = g.op('Slice', [x, g.int64s([0]), g.int64s([D / 2]), axis]);
  const x2 = g.op('Slice', [x, g.int64s([D / 2]), g.int64s([D]), axis]);
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
}

/** Eager attention (HF's eager Llama, torch-export-like ops) with configurable names, q_norm and float16 internals. */
export function writeEagerDecoder(file: string, seed: number, options: EagerOptions): TapTestGraph {
  const half = options.float16 ?? false;
  const dtype = half ? 'float16' : 'float32';
  const writer = new OnnxModelWriter({ path: file, graphName: 'eager', opset: 17 });
  const g = writer.graph;
  const { embeds, past } = decoderInputs(g, dtype, kvHeads);
  const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
  let x = half ? g.op('Cast', [embeds], { to: 10 }) : embeds;
  const invFreq = g.initializer('inv_freq', 'float32', [D / 2], Float32Array.from({ length: D / 2 }, (_, j) => 10000 ** (-(2 * j) / D)));
  const freqs = g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: 1 }), g.int64s([2])]), invFreq]);
  const angles = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.int64s([1])]);
  let cos = g.op('Cos', [angles]);
  let sin = g.op('Sin', [angles]);
  const cos32 = cos;
  const sin32 = sin;
  if (half) {
    cos = g.op('Cast', [cos], { to: 10 });
    sin = g.op('Cast', [sin], { to: 10 });
  }
  const wq: Float32Array[] = [];
  const qNormWeight: Float32Array[] = [];
  const qBias: Float32Array[] = [];
  let firstQuery = '';
  for (let i = 0; i < layers; i++) {
    const s = seed + 100 * i;
    const wqValues = seededData(H * heads * D, s + 1, 0.3);
    wq.push(wqValues);
    x = g.scope(options.scope(i), () => {
      const sdpa = options.torchSdpa ?? false;
      const names = sdpa ? ['q_proj', 'k_proj', 'v_proj'] : ['wq', 'wk', 'wv'];
      const bias = (t: string, name: string, values: Float32Array) => (sdpa ? g.op('Add', [t, floatWeight(g, `${name}${i}.bias`, [values.length], values, half)], {}, { name: `${name}/Add` }) : t);
      if (sdpa) qBias.push(seededData(heads * D, s + 6, 0.5));
      let q = g.op('MatMul', [x, floatWeight(g, `w${i}.q`, [H, heads * D], wqValues, half)], {}, { name: `${names[0]}/MatMul` });
      q = sdpa ? bias(q, names[0]!, qBias[i]!) : q;
      if (i === 0) firstQuery = q;
      const k = bias(g.op('MatMul', [x, floatWeight(g, `w${i}.k`, [H, kvHeads * D], seededData(H * kvHeads * D, s + 2, 0.3), half)], {}, { name: `${names[1]}/MatMul` }), names[1]!, seededData(kvHeads * D, s + 7, 0.5));
      const v = bias(g.op('MatMul', [x, floatWeight(g, `w${i}.v`, [H, kvHeads * D], seededData(H * kvHeads * D, s + 3, 0.3), half)], {}, { name: `${names[2]}/MatMul` }), names[2]!, seededData(kvHeads * D, s + 8, 0.5));
      const qNorm = (t: string) => {
        const w = seededData(D, s + 4, 0.5, 1);
        qNormWeight.push(w);
        const ms = g.op('ReduceMean', [g.op('Mul', [t, t])], { axes: [-1], keepdims: 1 }, { name: 'norm_q/ReduceMean' });
        const rms = g.op('Sqrt', [g.op('Add', [ms, halfScalar(g, `eps${i}`, eps, half)])]);
        return g.op('Mul', [g.op('Div', [t, rms]), floatWeight(g, `w${i}.q_norm`, [D], w, half)], {}, { name: 'norm_q/Mul' });
      };
      let qh = g.op('Reshape', [q, g.int64s([0, 0, heads, D])]);
      if (options.qNorm && !options.qNormAfterTranspose) qh = qNorm(qh);
      const toHeads = (t: string) => g.op('Transpose', [t], { perm: [0, 2, 1, 3] });
      const qT = options.qNorm && options.qNormAfterTranspose ? qNorm(toHeads(qh)) : toHeads(qh);
      const kT = toHeads(g.op('Reshape', [k, g.int64s([0, 0, kvHeads, D])]));
      const vT = toHeads(g.op('Reshape', [v, g.int64s([0, 0, kvHeads, D])]));
      const qr = options.noRope
        ? qT
        : half && options.ropeInFloat32
          ? g.op('Cast', [rotateHalf(g, g.op('Cast', [qT], { to: 1 }), cos32, sin32)], { to: 10 })
          : rotateHalf(g, qT, cos, sin);
      const kr = options.noRope ? kT : rotateHalf(g, kT, cos, sin);
      const presentKey = g.op('Concat', [past[i]![0]!, kr], { axis: 2 });
      const presentValue = g.op('Concat', [past[i]![1]!, vT], { axis: 2 });
      g.output(presentKey, `present.${i}.key`, dtype, ['batch_size', kvHeads, 'total_sequence_length', D]);
      g.output(presentValue, `present.${i}.value`, dtype, ['batch_size', kvHeads, 'total_sequence_length', D]);
      let context: string;
      if (sdpa) {
        // repeat_kv: [B,kv,T,D] -> [B,kv,1,T,D] -> expand [B,kv,rep,T,D] -> [B,heads,T,D].
        const repeat = (t: string) =>
          g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [t, g.int64s([2])]), g.int64s([1, kvHeads, heads / kvHeads, 1, D])]), g.int64s([0, heads, -1, D])]);
        const headDim = g.op('Cast', [g.op('Gather', [g.op('Shape', [qr]), g.scalar('int64', 3)], { axis: 0 })], { to: 1 });
        const sqrtScale = g.op('Sqrt', [g.op('Div', [g.scalar('float32', 1), g.op('Sqrt', [headDim])])]);
        const scaledQ = g.op('Mul', [qr, sqrtScale]);
        const scaledKt = g.op('Mul', [g.op('Transpose', [repeat(presentKey)], { perm: [0, 1, 3, 2] }), sqrtScale]);
        const probs = g.op('Softmax', [g.op('MatMul', [scaledQ, scaledKt], {}, { name: 'scores/MatMul' })], { axis: -1 });
        context = g.op('MatMul', [probs, repeat(presentValue)], {}, { name: 'context/MatMul' });
      } else {
        const grouped = g.op('Reshape', [qr, g.int64s([0, kvHeads, -1, D])]);
        let scores = g.op('MatMul', [grouped, g.op('Transpose', [presentKey], { perm: [0, 1, 3, 2] })], {}, { name: 'scores/MatMul' });
        if (half) scores = g.op('Cast', [scores], { to: 1 });
        let probs = g.op('Softmax', [g.op('Mul', [scores, g.scalar('float32', 1 / Math.sqrt(D))])], { axis: -1 });
        if (half) probs = g.op('Cast', [probs], { to: 10 });
        context = g.op('MatMul', [probs, presentValue], {}, { name: 'context/MatMul' });
      }
      const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [context, g.int64s([0, heads, -1, D])])], { perm: [0, 2, 1, 3] }), g.int64s([0, 0, heads * D])]);
      const o = g.op('MatMul', [merged, floatWeight(g, `w${i}.o`, [heads * D, H], seededData(heads * D * H, s + 5, 0.1), half)], {}, { name: 'wo/MatMul' });
      return g.op('Add', [x, o]);
    });
  }
  let logits = g.op('MatMul', [x, floatWeight(g, 'lm_head', [H, vocab], seededData(H * vocab, seed + 7, 0.2), half)]);
  if (half) logits = g.op('Cast', [logits], { to: 1 });
  g.output(logits, 'logits', 'float32', ['batch_size', 'sequence_length', vocab]);
  g.orderOutputs(['logits', ...Array.from({ length: layers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()]);
  writer.save();
  if (options.wrongValueInfo) {
    // Appended message: protobuf merges it into the graph (value_info is a repeated field).
    const type = modelProtoType();
    const appendix = type.encode(type.fromObject({ graph: { value_info: [{ name: firstQuery, type: { tensor_type: { elem_type: half ? 1 : 10 } } }] } })).finish();
    fs.appendFileSync(file, appendix);
  }
  return { file, wq, ...(options.qNorm ? { qNormWeight } : {}), ...(options.torchSdpa ? { qBias } : {}), internal: dtype };
}

/**
 * onnxruntime-genai model-builder style: packed QKV projection (`/model/layers.N/attn/qkv_proj/MatMul`),
 * GroupQueryAttention with do_rotary=1 and cos/sin caches, no position_ids input.
 */
export function writePackedGqaDecoder(file: string, seed: number, options: { fusedQNorm?: boolean } = {}): TapTestGraph {
  const writer = new OnnxModelWriter({ path: file, graphName: 'gqa', opset: 17 });
  const g = writer.graph;
  const { embeds, mask, past } = decoderInputs(g, 'float32', kvHeads);
  const { seqlensK, totalLength } = g.scope('/model/attn_mask_reformat', () => {
    const sum = g.op('ReduceSum', [mask, g.int64s([1])], { keepdims: 0 });
    const seqlensK = g.op('Cast', [g.op('Sub', [sum, g.scalar('int64', 1)])], { to: 6 });
    const totalLength = g.op('Cast', [g.op('Gather', [g.op('Shape', [mask]), g.scalar('int64', 1)], { axis: 0 })], { to: 6 });
    return { seqlensK, totalLength };
  });
  const { cosCache, sinCache } = ropeCaches(g);
  let x = embeds;
  const wq: Float32Array[] = [];
  for (let i = 0; i < layers; i++) {
    const width = (heads + 2 * kvHeads) * D;
    const wqkv = seededData(H * width, seed + 10 * i, 0.3);
    // The query part: the first heads*D columns of each row.
    wq.push(Float32Array.from({ length: H * heads * D }, (_, n) => wqkv[Math.floor(n / (heads * D)) * width + (n % (heads * D))]!));
    x = g.scope(`/model/layers.${i}/attn`, () => {
      const qkv = g.op('MatMul', [x, g.initializer(`qkv${i}`, 'float32', [H, width], wqkv)], {}, { name: 'qkv_proj/MatMul' });
      const [out, presentKey, presentValue] = g.opMulti(
        'GroupQueryAttention',
        [
          qkv, '', '', past[i]![0]!, past[i]![1]!, seqlensK, totalLength, cosCache, sinCache,
          // The model builder's CUDA/WebGPU exports: q_norm_weight (input 14) normalizes q inside the op.
          ...(options.fusedQNorm ? ['', '', '', '', '', g.initializer(`q_norm${i}`, 'float32', [D], seededData(D, seed + 10 * i + 2, 0.1, 1))] : []),
        ],
        3,
        { num_heads: heads, kv_num_heads: kvHeads, do_rotary: 1, scale: { float: 1 / Math.sqrt(D) } },
        { domain: 'com.microsoft' },
      );
      g.output(presentKey!, `present.${i}.key`, 'float32', ['batch_size', kvHeads, 'total_sequence_length', D]);
      g.output(presentValue!, `present.${i}.value`, 'float32', ['batch_size', kvHeads, 'total_sequence_length', D]);
      const o = g.op('MatMul', [out!, g.initializer(`o${i}`, 'float32', [heads * D, H], seededData(heads * D * H, seed + 10 * i + 1, 0.1))], {}, { name: 'o_proj/MatMul' });
      return g.op('Add', [x, o]);
    });
  }
  g.output(g.op('MatMul', [x, g.initializer('lm_head', 'float32', [H, vocab], seededData(H * vocab, seed + 99, 0.2))]), 'logits', 'float32', ['batch_size', 'sequence_length', vocab]);
  g.orderOutputs(['logits', ...Array.from({ length: layers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()]);
  writer.save();
  return { file, wq, internal: 'float32' };
}

/** The pre-RoPE queries [S, heads*D] of layer 0 for inputs_embeds x [S, H] (the first layer sees x itself). */
export function referenceQueries(graph: TapTestGraph, x: Float32Array, seqLen: number): Float32Array {
  const w = graph.wq[0]!;
  const q = new Float32Array(seqLen * heads * D);
  for (let s = 0; s < seqLen; s++) {
    for (let o = 0; o < heads * D; o++) {
      let sum = 0;
      for (let h = 0; h < H; h++) sum += x[s * H + h]! * w[h * heads * D + o]!;
      q[s * heads * D + o] = sum + (graph.qBias?.[0]?.[o] ?? 0);
    }
  }
  const norm = graph.qNormWeight?.[0];
  if (norm) {
    for (let row = 0; row < seqLen * heads; row++) {
      let ms = 0;
      for (let d = 0; d < D; d++) ms += q[row * D + d]! ** 2;
      const rms = Math.sqrt(ms / D + eps);
      for (let d = 0; d < D; d++) q[row * D + d] = (q[row * D + d]! / rms) * norm[d]!;
    }
  }
  return q;
}

/**
 * com.microsoft MultiHeadAttention with RoPE outside it, by com.microsoft RotaryEmbedding on the
 * [B,S,hidden] projections (as optimized exports and older model-builder graphs do); heads = KV heads.
 */
export function writeMhaRotaryDecoder(file: string, seed: number): TapTestGraph {
  const writer = new OnnxModelWriter({ path: file, graphName: 'mha', opset: 17 });
  const g = writer.graph;
  const { embeds, past } = decoderInputs(g, 'float32', heads);
  const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
  const { cosCache, sinCache } = ropeCaches(g);
  let x = embeds;
  const wq: Float32Array[] = [];
  for (let i = 0; i < layers; i++) {
    const s = seed + 10 * i;
    wq.push(seededData(H * heads * D, s, 0.3));
    x = g.scope(`/transformer/h.${i}`, () => {
      const proj = (name: string, values: Float32Array) => g.op('MatMul', [x, g.initializer(`${name}${i}`, 'float32', [H, heads * D], values)], {}, { name: `${name}/MatMul` });
      const rotary = (t: string) =>
        g.op('RotaryEmbedding', [t, positionIds, cosCache, sinCache], { num_heads: heads, interleaved: 0 }, { domain: 'com.microsoft' });
      const q = rotary(proj('query', wq[i]!));
      const k = rotary(proj('key', seededData(H * heads * D, s + 1, 0.3)));
      const v = proj('value', seededData(H * heads * D, s + 2, 0.3));
      const [out, presentKey, presentValue] = g.opMulti(
        'MultiHeadAttention',
        [q, k, v, '', '', '', past[i]![0]!, past[i]![1]!],
        3,
        { num_heads: heads },
        { domain: 'com.microsoft' },
      );
      g.output(presentKey!, `present.${i}.key`, 'float32', ['batch_size', heads, 'total_sequence_length', D]);
      g.output(presentValue!, `present.${i}.value`, 'float32', ['batch_size', heads, 'total_sequence_length', D]);
      return g.op('Add', [x, g.op('MatMul', [out!, g.initializer(`o${i}`, 'float32', [heads * D, H], seededData(heads * D * H, s + 3, 0.1))])]);
    });
  }
  g.output(g.op('MatMul', [x, g.initializer('lm_head', 'float32', [H, vocab], seededData(H * vocab, seed + 99, 0.2))]), 'logits', 'float32', ['batch_size', 'sequence_length', vocab]);
  g.orderOutputs(['logits', ...Array.from({ length: layers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()]);
  writer.save();
  return { file, wq, internal: 'float32' };
}
