/**
 * Vision attention forms (issue 19): which attention op onnxruntime-node runs fastest for one SigLIP
 * layer of the probe's vision encoder, q/k/v [1, 1024, 768] (12 heads of 64, full bidirectional
 * attention), at --threads onnxruntime threads, and how close each form's output is.
 *
 *   flock /tmp/bench.lock node --import tsx bench/vision-attention.ts [--rounds 60] [--threads 2] [--gap-ms 30] [--frame <file> --frame-rounds 16]
 *
 * Each candidate is a small graph written with Vigil's own ONNX writer (GraphBuilder + the ONNX
 * protobuf schema, as bench/rooflineGraphs.ts does), run by its own session with Vigil's session
 * settings (graph optimizations 'all', src/model/onnxGraph.ts's spinning). Rounds alternate: every
 * round runs each candidate once, the order rotating, so load drift hits all alike; per candidate the
 * median and best session.run wall time, the ratio of medians to (1) and the median of per-round
 * ratios (paired), the 25th percentiles (less moved by other processes' bursts than the median on a
 * shared machine) and the process CPU time per call (user + system; spinning workers included).
 * --gap-ms of idle before each call lets the previous session's spinning workers stop first.
 * Accuracy: relative L2 and max |diff| of each output against (1) and against a float64 reference
 * computed here in JS. Candidates whose session cannot be made (no CPU kernel) are listed with
 * onnxruntime's message. The all-zero bias / masks are initializers, as the real graph computes its
 * bias once per frame, not per layer. Prints the table, load averages before/after, then one JSON
 * line (per-call samples included). ~1.5 minutes on 2 cores at 60 rounds.
 *
 * --frame <vision_encoder*.onnx> (repeatable; a built probe folder's file, read only): a what-if for
 * the whole frame. Two copies of the file go to a temp folder beside a hard link to its weights: one
 * whose MultiHeadAttention nodes lose their attention_bias (onnxruntime's flash path), one with ONNX
 * Attention (opset 23) and no mask in their place; then --frame-rounds alternating rounds encode one
 * 512x512 frame (full pixel mask) with each form and the file as built, and the features are
 * compared. Only valid for unpadded frames: a measurement, not a model.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { float16ToFloat32 } from '../kernels/fp16.js';
import { mulberry32 } from '../kernels/sampling.js';
import { ortThreading } from '../src/model/onnxGraph.js';
import { GraphBuilder } from '../src/model/onnx/graphBuilder.js';
import { modelProtoType } from '../src/model/onnx/onnxSchema.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '60' },
    threads: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '3' },
    'gap-ms': { type: 'string', default: '30' },
    frame: { type: 'string', multiple: true, default: [] },
    'frame-rounds': { type: 'string', default: '16' },
  },
});
const rounds = Number(args.rounds);
const threads = Number(args.threads);
const warmup = Number(args.warmup);
const gapMs = Number(args['gap-ms']);
for (const [name, value] of [['rounds', rounds], ['threads', threads], ['warmup', warmup], ['gap-ms', gapMs]] as const) {
  if (!Number.isInteger(value) || value < (name === 'rounds' || name === 'threads' ? 1 : 0)) throw new Error(`--${name} must be a whole number, got ${value}`);
}

// One SigLIP layer of probe-random-smolvlm2-256m at 512x512: 1024 patches, hidden 768, 12 heads of 64.
const TOKENS = 1024;
const HEADS = 12;
const HEAD_DIM = 64;
const HIDDEN = HEADS * HEAD_DIM;
const SCALE = 1 / Math.sqrt(HEAD_DIM);
const MS_DOMAIN = 'com.microsoft';
/** ONNX Attention is opset 23; IR version 10 is the one that pairs with opsets 21-23. */
const IR_VERSION = 10;
const FLOAT = 1;
const FLOAT16 = 10;

interface Candidate {
  name: string;
  /** Builds the graph: inputs q, k, v [1, T, Hv] float32, output y [1, T, Hv] float32. */
  build: (g: GraphBuilder) => string;
  opset?: number;
  /** Environment set only while this candidate's session is created (onnxruntime reads it in the kernel's constructor). */
  env?: Record<string, string>;
  /** Extra session config entries. */
  config?: Record<string, string>;
  note: string;
}

const zerosBias = (g: GraphBuilder) => g.initializer('bias', 'float32', [1, 1, TOKENS, TOKENS], new Float32Array(TOKENS * TOKENS));
const mha = (g: GraphBuilder, inputs: string[]) =>
  g.op('MultiHeadAttention', inputs, { num_heads: HEADS, scale: { float: SCALE } }, { domain: MS_DOMAIN });
const onnxAttention = (g: GraphBuilder, inputs: string[]) =>
  g.op('Attention', inputs, { q_num_heads: HEADS, kv_num_heads: HEADS, scale: { float: SCALE } });
const toHeads = (g: GraphBuilder, x: string) =>
  g.op('Transpose', [g.op('Reshape', [x, g.int64s([0, 0, HEADS, HEAD_DIM])])], { perm: [0, 2, 1, 3] });
const fromHeads = (g: GraphBuilder, x: string) => g.op('Reshape', [g.op('Transpose', [x], { perm: [0, 2, 1, 3] }), g.int64s([0, 0, HIDDEN])]);

/**
 * The attention over `chunks` slices of the queries (keys and values whole), outputs concatenated:
 * each head's score block shrinks to [T/chunks, T], which fits in L2, so the softmax and P·V read it
 * from cache. `biased` gives each slice its own all-zero [1,1,T/chunks,T] bias (the frame's bias
 * sliced once, shared by all layers, in a real graph).
 */
function queryChunked(g: GraphBuilder, chunks: number, attend: (q: string, bias: string | undefined) => string, biased: boolean): string {
  const rows = TOKENS / chunks;
  const parts = g.opMulti('Split', ['q', g.int64s(Array(chunks).fill(rows))], chunks, { axis: 1 });
  const outputs = parts.map((part, i) =>
    attend(part, biased ? g.initializer(`bias_${i}`, 'float32', [1, 1, rows, TOKENS], new Float32Array(rows * TOKENS)) : undefined),
  );
  return g.op('Concat', outputs, { axis: 1 });
}

/** Q·K^T scaled (one FusedMatMul, transB + alpha), + bias, Softmax, ·V: the unfused attention as nodes. */
function decomposed(g: GraphBuilder, q: string, k: string, v: string, withBias: boolean): string {
  let scores = g.op('FusedMatMul', [toHeads(g, q), toHeads(g, k)], { transB: 1, alpha: { float: SCALE } }, { domain: MS_DOMAIN });
  if (withBias) scores = g.op('Add', [scores, zerosBias(g)]);
  return fromHeads(g, g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), toHeads(g, v)]));
}

const candidates: Candidate[] = [
  { name: 'mha-bias', note: "(1) today's form: MultiHeadAttention + all-zero attention_bias [1,1,T,T]", build: (g) => mha(g, ['q', 'k', 'v', '', '', zerosBias(g)]) },
  { name: 'mha-nomask', note: 'MultiHeadAttention, no mask/bias (MLAS flash attention)', build: (g) => mha(g, ['q', 'k', 'v']) },
  {
    name: 'mha-nomask-noflash',
    note: 'MultiHeadAttention, no mask, ORT_DISABLE_FLASH_ATTENTION=1 (unfused path)',
    env: { ORT_DISABLE_FLASH_ATTENTION: '1' },
    build: (g) => mha(g, ['q', 'k', 'v']),
  },
  {
    name: 'mha-keypad',
    note: 'MultiHeadAttention + int32 key padding mask [1,T] of ones',
    build: (g) => mha(g, ['q', 'k', 'v', '', g.initializer('key_padding_mask', 'int32', [1, TOKENS], new Int32Array(TOKENS).fill(1))]),
  },
  {
    name: 'mha-bias-daz',
    note: '(1) with session.set_denormal_as_zero=1',
    config: { 'session.set_denormal_as_zero': '1' },
    build: (g) => mha(g, ['q', 'k', 'v', '', '', zerosBias(g)]),
  },
  { name: 'onnx-attention', opset: 23, note: 'ONNX Attention (opset 23), 3-D q/k/v, no mask', build: (g) => onnxAttention(g, ['q', 'k', 'v']) },
  { name: 'onnx-attention-bias', opset: 23, note: 'ONNX Attention (opset 23) + all-zero float attn_mask [1,1,T,T]', build: (g) => onnxAttention(g, ['q', 'k', 'v', zerosBias(g)]) },
  {
    name: 'onnx-attention-boolmask',
    opset: 23,
    note: 'ONNX Attention (opset 23) + all-true bool attn_mask [1,1,T,T]',
    build: (g) => onnxAttention(g, ['q', 'k', 'v', g.initializer('mask', 'bool', [1, 1, TOKENS, TOKENS], new Uint8Array(TOKENS * TOKENS).fill(1))]),
  },
  ...[4, 8].flatMap((chunks): Candidate[] => [
    {
      name: `mha-bias-q${chunks}`,
      note: `(1) over ${chunks} query slices of ${TOKENS / chunks}, each with its bias slice, Concat`,
      build: (g) => queryChunked(g, chunks, (q, bias) => mha(g, [q, 'k', 'v', '', '', bias!]), true),
    },
    {
      name: `onnx-attention-q${chunks}`,
      opset: 23,
      note: `onnx-attention over ${chunks} query slices, Concat`,
      build: (g) => queryChunked(g, chunks, (q) => onnxAttention(g, [q, 'k', 'v']), false),
    },
    {
      name: `onnx-attention-bias-q${chunks}`,
      opset: 23,
      note: `onnx-attention-bias over ${chunks} query slices, each with its mask slice, Concat`,
      build: (g) => queryChunked(g, chunks, (q, bias) => onnxAttention(g, [q, 'k', 'v', bias!]), true),
    },
  ]),
  { name: 'decomposed-bias', note: 'FusedMatMul(q,k,transB,alpha) + bias Add, Softmax, MatMul, transposes', build: (g) => decomposed(g, 'q', 'k', 'v', true) },
  { name: 'decomposed-nomask', note: 'as decomposed-bias without the bias Add', build: (g) => decomposed(g, 'q', 'k', 'v', false) },
  {
    name: 'fp16-onnx-attention',
    opset: 23,
    note: 'Cast q/k/v to float16, ONNX Attention (opset 23) float16, Cast back',
    build: (g) => {
      const half = (x: string) => g.op('Cast', [x], { to: FLOAT16 });
      return g.op('Cast', [onnxAttention(g, [half('q'), half('k'), half('v')])], { to: FLOAT });
    },
  },
  {
    name: 'fp16-mha',
    // No float16 MultiHeadAttention on CPU: onnxruntime's optimizer drops the Casts, so this runs as mha-nomask.
    note: 'Cast q/k/v to float16, MultiHeadAttention, Cast back (runs in float32: the Casts are optimized away)',
    build: (g) => {
      const half = (x: string) => g.op('Cast', [x], { to: FLOAT16 });
      return g.op('Cast', [mha(g, [half('q'), half('k'), half('v')])], { to: FLOAT });
    },
  },
];

const out = (line: string) => process.stdout.write(`${line}\n`);
const fmt = (x: number, digits = 1) => x.toFixed(digits);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-vision-attention-'));

function writeGraph(candidate: Candidate): string {
  const g = new GraphBuilder(candidate.name, undefined, Infinity);
  const dims = [1, TOKENS, HIDDEN];
  for (const name of ['q', 'k', 'v']) g.input(name, 'float32', dims);
  g.output(candidate.build(g), 'y', 'float32', dims);
  const type = modelProtoType();
  const model = type.fromObject({
    ir_version: IR_VERSION,
    producer_name: 'vigil-bench',
    opset_import: [{ domain: '', version: candidate.opset ?? 17 }, ...g.domains.map((domain) => ({ domain, version: 1 }))],
    graph: g.toProto(),
  });
  const file = path.join(dir, `${candidate.name}.onnx`);
  fs.writeFileSync(file, type.encode(model).finish());
  return file;
}

function sessionOptions(config: Record<string, string> = {}): ort.InferenceSession.SessionOptions {
  const extra: Record<string, unknown> = { session: { intra_op: { allow_spinning: ortThreading().spinning ? '1' : '0' } } };
  for (const [key, value] of Object.entries(config)) {
    // onnxruntime-node flattens nested `extra` objects into dotted config keys.
    const parts = key.split('.');
    let node = extra;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[parts.at(-1)!] = value;
  }
  return { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3, intraOpNumThreads: threads, extra };
}

async function openSession(candidate: Candidate): Promise<ort.InferenceSession> {
  const saved = Object.fromEntries(Object.keys(candidate.env ?? {}).map((key) => [key, process.env[key]]));
  Object.assign(process.env, candidate.env ?? {});
  try {
    return await ort.InferenceSession.create(writeGraph(candidate), sessionOptions(candidate.config));
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** Seeded q/k/v with the spread of real post-LayerNorm projections: scores ~0.8 std after scaling. */
function randomInputs(): Record<'q' | 'k' | 'v', Float32Array> {
  const random = mulberry32(19);
  const make = () => Float32Array.from({ length: TOKENS * HIDDEN }, () => (random() - 0.5) * 3);
  return { q: make(), k: make(), v: make() };
}

/** softmax(q_h k_h^T * scale) v_h per head, in float64: the exact answer the candidates approximate. */
function referenceAttention(q: Float32Array, k: Float32Array, v: Float32Array): Float64Array {
  const y = new Float64Array(TOKENS * HIDDEN);
  const scores = new Float64Array(TOKENS);
  for (let h = 0; h < HEADS; h++) {
    const offset = h * HEAD_DIM;
    for (let i = 0; i < TOKENS; i++) {
      const qi = i * HIDDEN + offset;
      let max = -Infinity;
      for (let j = 0; j < TOKENS; j++) {
        const kj = j * HIDDEN + offset;
        let dot = 0;
        for (let d = 0; d < HEAD_DIM; d++) dot += q[qi + d]! * k[kj + d]!;
        scores[j] = dot * SCALE;
        if (scores[j]! > max) max = scores[j]!;
      }
      let sum = 0;
      for (let j = 0; j < TOKENS; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let j = 0; j < TOKENS; j++) {
        const p = scores[j]! / sum;
        const vj = j * HIDDEN + offset;
        for (let d = 0; d < HEAD_DIM; d++) y[qi + d] = y[qi + d]! + p * v[vj + d]!;
      }
    }
  }
  return y;
}

function compare(actual: ArrayLike<number>, expected: ArrayLike<number>): { relL2: number; maxAbs: number } {
  let diff = 0;
  let norm = 0;
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i]! - expected[i]!;
    diff += d * d;
    norm += expected[i]! * expected[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { relL2: Math.sqrt(diff / norm), maxAbs };
}

/** The q-quantile (0..1) by linear interpolation between order statistics. */
const quantile = (xs: readonly number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  return sorted[low]! + (sorted[Math.min(low + 1, sorted.length - 1)]! - sorted[low]!) * (at - low);
};
const median = (xs: readonly number[]) => quantile(xs, 0.5);

interface Live {
  candidate: Candidate;
  session: ort.InferenceSession;
  samples: number[];
  /** Process CPU time (user + system, all threads) per call: less moved by other processes than wall time. */
  cpuSamples: number[];
  output: Float32Array;
}

type FrameForm = 'mha-nomask' | 'onnx-attention';

interface NodeObject {
  name: string;
  op_type: string;
  domain?: string;
  input: string[];
  attribute?: Array<{ name: string; type: number; i?: unknown; ints?: unknown[]; f?: number }>;
}
interface ModelObject {
  ir_version: unknown;
  opset_import: Array<{ domain?: string; version: unknown }>;
  graph: { node: NodeObject[]; initializer: Array<Record<string, unknown>> };
}

/**
 * `file` rewritten into `dir`: 'mha-nomask' drops every MultiHeadAttention's attention_bias (input 5);
 * 'onnx-attention' makes each of them an ONNX Attention without a mask, the file moving to opset 23
 * (ReduceMax's axes become an input, as opset 18 has them; the probe's other ops read the same).
 */
function writeFrameVariant(file: string, form: FrameForm): string {
  const type = modelProtoType();
  const model = type.toObject(type.decode(fs.readFileSync(file))) as ModelObject;
  let rewritten = 0;
  for (const node of model.graph.node) {
    if (node.op_type === 'MultiHeadAttention' && node.input.length > 5) {
      node.input = node.input.slice(0, 3);
      if (form === 'onnx-attention') toOnnxAttention(node);
      rewritten++;
    } else if (form === 'onnx-attention' && node.op_type === 'ReduceMax') {
      axesToInput(model, node);
    }
  }
  if (rewritten === 0) throw new Error(`${file}: no MultiHeadAttention with an attention_bias`);
  if (form === 'onnx-attention') {
    model.ir_version = IR_VERSION;
    for (const opset of model.opset_import) if (!opset.domain) opset.version = 23;
  }
  const copy = path.join(dir, `${form}-${path.basename(file)}`);
  fs.writeFileSync(copy, type.encode(type.fromObject(model)).finish());
  // The external data is named relative to the .onnx file and onnxruntime refuses symlinks out of
  // the model's folder: a hard link beside the copy (a copy across filesystems).
  const data = `${file}_data`;
  const besideCopy = path.join(dir, path.basename(data));
  if (fs.existsSync(data) && !fs.existsSync(besideCopy)) {
    try {
      fs.linkSync(data, besideCopy);
    } catch {
      fs.copyFileSync(data, besideCopy);
    }
  }
  return copy;
}

function toOnnxAttention(node: NodeObject): void {
  const heads = node.attribute!.find((a) => a.name === 'num_heads')!.i;
  const scale = node.attribute!.find((a) => a.name === 'scale');
  node.op_type = 'Attention';
  node.domain = '';
  node.attribute = [
    { name: 'q_num_heads', type: 2, i: heads },
    { name: 'kv_num_heads', type: 2, i: heads },
    ...(scale ? [scale] : []),
  ];
}

function axesToInput(model: ModelObject, node: NodeObject): void {
  const axes = node.attribute?.find((a) => a.name === 'axes');
  if (!axes) return;
  node.attribute = node.attribute!.filter((a) => a !== axes);
  const values = BigInt64Array.from(axes.ints!, (v) => BigInt(String(v)));
  const name = `${node.name}/axes`;
  model.graph.initializer.push({ name, dims: [values.length], data_type: 7, raw_data: new Uint8Array(values.buffer) });
  node.input = [node.input[0]!, name];
}

async function frameWhatIf(file: string, frameRounds: number): Promise<Record<string, unknown>> {
  const side = 512;
  const random = mulberry32(5);
  const feeds = {
    pixel_values: new ort.Tensor('float32', Float32Array.from({ length: 3 * side * side }, () => random() * 2 - 1), [1, 1, 3, side, side]),
    pixel_attention_mask: new ort.Tensor('bool', new Uint8Array(side * side).fill(1), [1, 1, side, side]),
  };
  const forms: Array<{ name: string; file: string }> = [
    { name: 'as built (bias)', file },
    { name: 'mha-nomask', file: writeFrameVariant(file, 'mha-nomask') },
    { name: 'onnx-attention', file: writeFrameVariant(file, 'onnx-attention') },
  ];
  const variants = [];
  for (const form of forms) {
    const session = await ort.InferenceSession.create(form.file, sessionOptions());
    const features = Float32Array.from((await session.run(feeds)).image_features!.data as Float32Array);
    variants.push({ name: form.name, session, features, samples: [] as number[] });
  }
  for (let round = 0; round < frameRounds; round++) {
    for (let c = 0; c < variants.length; c++) {
      const v = variants[(c + round) % variants.length]!;
      if (gapMs > 0) await sleep(gapMs);
      const started = performance.now();
      await v.session.run(feeds);
      v.samples.push(performance.now() - started);
    }
  }
  const built = variants[0]!;
  const rows = variants.map((v) => ({
    name: v.name,
    medianMs: median(v.samples),
    bestMs: Math.min(...v.samples),
    speedup: median(built.samples) / median(v.samples),
    pairedSpeedup: median(built.samples.map((s, i) => s / v.samples[i]!)),
    features: compare(v.features, built.features),
    samples: v.samples.map((x) => Number(x.toFixed(1))),
  }));
  out(`\nframe what-if, ${path.basename(file)} (one ${side}x${side} frame, full pixel mask, ${frameRounds} alternating rounds):`);
  out('| form | median / best ms | x as built: medians; paired | features rel L2 / max abs vs as built |');
  out('|---|---:|---:|---:|');
  for (const r of rows) {
    out(`| ${r.name} | ${fmt(r.medianMs)} / ${fmt(r.bestMs)} | ${fmt(r.speedup, 2)}; ${fmt(r.pairedSpeedup, 2)} | ${r.features.relL2.toExponential(1)} / ${r.features.maxAbs.toExponential(1)} |`);
  }
  for (const v of variants) await v.session.release();
  return { file, rows };
}

async function main(): Promise<void> {
  const loadStart = os.loadavg();
  out(`vision-attention: [1, ${TOKENS}, ${HIDDEN}] q/k/v, ${HEADS} heads of ${HEAD_DIM}, ${threads} onnxruntime threads (spinning ${ortThreading().spinning ? 'on' : 'off'}), ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), onnxruntime-node ${ort.env.versions.common}, ${rounds} rounds, ${gapMs} ms idle before each call`);
  out(`load average at start: ${loadStart.map((l) => fmt(l, 2)).join(' ')}`);
  const inputs = randomInputs();
  const feeds = Object.fromEntries(Object.entries(inputs).map(([name, data]) => [name, new ort.Tensor('float32', data, [1, TOKENS, HIDDEN])]));

  const live: Live[] = [];
  const unavailable: Array<{ name: string; note: string; error: string }> = [];
  for (const candidate of candidates) {
    try {
      const session = await openSession(candidate);
      const result = await session.run(feeds);
      const y = result.y!;
      const output = y.type === 'float16' ? float16ToFloat32(y.data as Uint16Array) : Float32Array.from(y.data as Float32Array);
      live.push({ candidate, session, samples: [], cpuSamples: [], output });
    } catch (error) {
      unavailable.push({ name: candidate.name, note: candidate.note, error: (error as Error).message.split('\n')[0]!.slice(0, 240) });
    }
  }
  const baseline = live.find((l) => l.candidate.name === 'mha-bias');
  if (!baseline) throw new Error('the baseline (mha-bias) could not run');

  for (const l of live) for (let i = 0; i < warmup; i++) await l.session.run(feeds);
  for (let round = 0; round < rounds; round++) {
    for (let c = 0; c < live.length; c++) {
      const l = live[(c + round) % live.length]!;
      // The previous session's spinning workers would otherwise share the 2 cores with this call.
      if (gapMs > 0) await sleep(gapMs);
      const cpuStarted = process.cpuUsage();
      const started = performance.now();
      await l.session.run(feeds);
      l.samples.push(performance.now() - started);
      const cpu = process.cpuUsage(cpuStarted);
      l.cpuSamples.push((cpu.user + cpu.system) / 1000);
    }
  }
  const frames: Array<Record<string, unknown>> = [];
  for (const file of args.frame ?? []) frames.push(await frameWhatIf(file, Number(args['frame-rounds'])));
  const loadEnd = os.loadavg();

  // After the timed rounds: the float64 reference costs a few seconds of one core.
  const reference = referenceAttention(inputs.q, inputs.k, inputs.v);
  const baseMedian = median(baseline.samples);
  const rows = live.map((l) => {
    const paired = median(l.samples.map((s, i) => baseline.samples[i]! / s));
    return {
      name: l.candidate.name,
      note: l.candidate.note,
      medianMs: median(l.samples),
      bestMs: Math.min(...l.samples),
      p25Ms: quantile(l.samples, 0.25),
      p25Speedup: quantile(baseline.samples, 0.25) / quantile(l.samples, 0.25),
      cpuMedianMs: median(l.cpuSamples),
      cpuSpeedup: median(baseline.cpuSamples) / median(l.cpuSamples),
      samples: l.samples.map((x) => Number(x.toFixed(2))),
      speedup: baseMedian / median(l.samples),
      pairedSpeedup: paired,
      vsBaseline: compare(l.output, baseline.output),
      vsFloat64: compare(l.output, reference),
    };
  });

  out('');
  out('| candidate | median / p25 / best ms | x (1): medians; paired; p25 | CPU ms (median) | x (1), CPU | rel L2 vs (1) | max abs vs (1) | rel L2 vs float64 |');
  out('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    out(`| ${r.name} | ${fmt(r.medianMs, 2)} / ${fmt(r.p25Ms, 2)} / ${fmt(r.bestMs, 2)} | ${fmt(r.speedup, 2)}; ${fmt(r.pairedSpeedup, 2)}; ${fmt(r.p25Speedup, 2)} | ${fmt(r.cpuMedianMs, 1)} | ${fmt(r.cpuSpeedup, 2)} | ${r.vsBaseline.relL2.toExponential(1)} | ${r.vsBaseline.maxAbs.toExponential(1)} | ${r.vsFloat64.relL2.toExponential(1)} |`);
  }
  out('');
  for (const r of rows) out(`- ${r.name}: ${r.note}`);
  for (const u of unavailable) out(`- ${u.name} (not run): ${u.note}: ${u.error}`);
  out(`load average at end: ${loadEnd.map((l) => fmt(l, 2)).join(' ')}`);
  out(JSON.stringify({ threads, rounds, gapMs, loadStart, loadEnd, rows, unavailable, frames }));
  for (const l of live) await l.session.release();
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
