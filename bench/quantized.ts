/**
 * Int8 and 4-bit probe files against fp32 (issue 19), in one run:
 *
 *   node --import tsx bench/quantized.ts [--threads 2] [--rounds 8] [--contexts 256,5000] [--no-vniah] [--quick]
 *
 * 1. Speed, interleaved: each round runs the vision encoder on one 512x512 frame and one decode step
 *    per context length (past KV of that many tokens, only the new rows fetched, as generate() decodes) for fp32, q8
 *    (`_quantized`: DynamicQuantizeLinear -> MatMulInteger) and q4 (`_q4`: MatMulNBits), the order
 *    rotating every round, so load from other work hits all three alike. Frames/s and ms/step,
 *    median and best, and the ratios to fp32 (of the medians, and the median of the per-round ratios).
 * 2. Where a frame's time goes (onnxruntime profile, by op type): int8 MatMuls speed up the projection
 *    and MLP MatMuls only, not attention (MultiHeadAttention), GELU, LayerNorm or the activations'
 *    quantization, which bounds the frames/s ratio (Amdahl).
 * 3. Accuracy: image features of three frames (max |diff|, relative L2, cosine vs fp32) and the
 *    decoder's logits over a few prompts (max |diff|, relative L2, top-1 agreement over every position).
 * 4. V-NIAH on probe-needle-256m, fp32 vs q8 (the existing runner, a small grid: 1-minute clip, needles
 *    at 0/50/100%, rekv and window, float32 KV): every answer must be the same.
 * Models: probe-random-smolvlm2-256m (built on first use into the cache; its _quantized/_q4 files are added on request).
 * Prints tables, the thread count and os.loadavg (the machine may be shared), then one JSON line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import { argmaxRow, type OutputDifference, outputDifference } from '../src/eval/outputDifference.js';
import { runVniah, type VniahCell } from '../src/eval/vniahRunner.js';
import { DEFAULT_VNIAH_SETTINGS, type VniahSettings } from '../src/eval/vniahSettings.js';
import { type GraphDtype } from '../src/model/graphFiles.js';
import { emptyKvCache, type KvCache } from '../src/model/kvCache.js';
import { OnnxModelWriter } from '../src/model/onnx/modelWriter.js';
import { OnnxGraph, ortThreading } from '../src/model/onnxGraph.js';
import { fullPixelMask } from '../src/model/preprocess/pixelAttentionMask.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';
import { findProbeSpec } from '../src/model/probe/probeSpecs.js';
import { randomWeightSource } from '../src/model/probe/randomWeights.js';
import { buildVisionGraph } from '../src/model/probe/visionGraph.js';
import { floatTensor } from '../src/model/tensors.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { profileOpTypes } from './opProfile.js';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '8' },
    contexts: { type: 'string', default: '256,5000' },
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    'needle-model': { type: 'string', default: 'probe-needle-256m' },
    'no-vniah': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a whole number >= 1, got '${args.threads}'`);
// The model's sessions read their thread count from VIGIL_THREADS when they open: the same count everywhere here.
process.env.VIGIL_THREADS = String(threads);
const quick = args.quick!;
const rounds = quick ? 3 : Number(args.rounds);
const contexts = args.contexts!.split(',').map(Number);
if (!Number.isInteger(rounds) || rounds < 1 || contexts.some((c) => !Number.isInteger(c) || c < 0)) throw new Error('--rounds and --contexts take whole numbers');

const DTYPES = ['fp32', 'q8', 'q4'] as const satisfies readonly GraphDtype[];
type Dtype = (typeof DTYPES)[number];
/**
 * Vision rows: the three files, plus q8 with eager attention whose Q·K^T and P·V are int8 too (u8 x u8
 * MatMulInteger, what quantize_dynamic makes of an eager export by default), built here into a
 * temporary folder from the probe's own weights: does quantizing the attention buy what int8
 * projections leave (the attention's share)? And fp32 / q8 with the MLP's tanh-GELU as torch.onnx
 * exports it (8 elementwise nodes, which onnxruntime leaves unfused) instead of the folder's
 * com.microsoft FastGelu: the before of that change, in the same run.
 */
const VISION_ROWS = [...DTYPES, 'q8-int8-attention', 'fp32-export-gelu', 'q8-export-gelu'] as const;
type VisionRow = (typeof VISION_ROWS)[number];
const out = (line: string) => process.stdout.write(`${line}\n`);
const fmt = (x: number, digits = 1) => x.toFixed(digits);
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const loadStart = os.loadavg();

out(`quantized: ${threads} onnxruntime threads (spinning ${ortThreading().spinning ? 'on' : 'off'}), ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ${rounds} rounds, load average ${loadStart.map((l) => fmt(l, 2)).join(' ')}`);

const modelDir = buildProbeModel(args.model!, { dtype: 'q8' }).dir;
const models = new Map<Dtype, VisionLanguageModel>();
for (const dtype of DTYPES) models.set(dtype, await VisionLanguageModel.load(modelDir, { dtype, queryTaps: 'auto' }));
const fp32Model = models.get('fp32')!;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-quantized-'));
const spec = findProbeSpec(args.model!);
if (!spec || spec.weights !== 'random') throw new Error(`--model must be a random-weight probe, got '${args.model}'`);
const int8AttentionFile = path.join(scratch, 'vision_encoder_int8_attention.onnx');
{
  const writer = new OnnxModelWriter({ path: int8AttentionFile, graphName: 'vision_encoder', opset: 17, externalDataThresholdBytes: 1024 });
  const matmul = { weights: 'q8', activationMatMuls: true } as const;
  buildVisionGraph({ g: writer.graph, weights: randomWeightSource(0), dtype: 'float32', matmul }, spec.vision, spec.text.hiddenSize, { attention: 'eager' });
  writer.save();
}
const visionGraphs = new Map<VisionRow, OnnxGraph>(DTYPES.map((d) => [d, models.get(d)!.vision]));
visionGraphs.set('q8-int8-attention', await OnnxGraph.open(int8AttentionFile));
for (const [row, matmul] of [['fp32-export-gelu', undefined], ['q8-export-gelu', { weights: 'q8' }]] as const) {
  const file = path.join(scratch, `vision_encoder_${row}.onnx`);
  const writer = new OnnxModelWriter({ path: file, graphName: 'vision_encoder', opset: 17, externalDataThresholdBytes: 1024 });
  const ctx = { g: writer.graph, weights: randomWeightSource(0), dtype: 'float32' as const, ...(matmul ? { matmul } : {}) };
  buildVisionGraph(ctx, spec.vision, spec.text.hiddenSize, { attention: spec.attention ?? 'eager', gelu: 'export' });
  writer.save();
  visionGraphs.set(row, await OnnxGraph.open(file));
}
const side = fp32Model.imageConfig.tileSize ?? 512;
const random = mulberry32(5);

/** Three frames: seeded noise, a smooth gradient and stripes (normalized pixels in [-1, 1]). */
const frames = [
  (i: number) => random() * 2 - 1,
  (i: number) => ((i % side) / side) * 2 - 1,
  (i: number) => Math.sin(i / 7) * 0.8,
].map((pixel) => ({ pixelValues: Float32Array.from({ length: 3 * side * side }, (_, i) => pixel(i)), count: 1, height: side, width: side, rows: 0, cols: 0 }));

// ---- 1. Speed: interleaved rounds ----
const info = fp32Model.decoder.info;
const pasts = new Map<number, { past: KvCache; presentInto: KvCache }>();
for (const context of contexts) {
  const past = emptyKvCache(info, context);
  for (const layer of past.layers) for (const t of [layer.key, layer.value]) (t.data as Float32Array).forEach((_, i, a) => (a[i] = random() - 0.5));
  pasts.set(context, { past, presentInto: emptyKvCache(info, context + 1) });
}
const visionFeeds: Record<string, ort.Tensor> = { pixel_values: new ort.Tensor('float32', frames[0]!.pixelValues, [1, 1, 3, side, side]) };
if (fp32Model.vision.hasInput('pixel_attention_mask')) visionFeeds.pixel_attention_mask = new ort.Tensor('bool', fullPixelMask(1, side, side), [1, 1, side, side]);
const embeds = floatTensor(info.embedType, Float32Array.from({ length: info.hiddenSize }, () => (random() - 0.5) * 0.1), [1, 1, info.hiddenSize]);
const visionMs = new Map<VisionRow, number[]>(VISION_ROWS.map((d) => [d, []]));
const stepMs = new Map<string, number[]>();
const key = (dtype: Dtype, context: number) => `${dtype}@${context}`;
for (const dtype of DTYPES) for (const c of contexts) stepMs.set(key(dtype, c), []);

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return performance.now() - started;
}

for (let r = -1; r < rounds; r++) {
  // Round -1 warms every session up (first-run allocations), unrecorded.
  const order = DTYPES.map((_, i) => DTYPES[(i + Math.max(0, r)) % DTYPES.length]!);
  const visionOrder = VISION_ROWS.map((_, i) => VISION_ROWS[(i + Math.max(0, r)) % VISION_ROWS.length]!);
  for (const row of visionOrder) {
    // The graph's own run (as encodeImages makes it, without the cast of its output).
    const ms = await timed(() => visionGraphs.get(row)!.run(visionFeeds));
    if (r >= 0) visionMs.get(row)!.push(ms);
  }
  for (const context of contexts) {
    const { past, presentInto } = pasts.get(context)!;
    for (const dtype of order) {
      // As generate() decodes: only the new rows fetched (split attention where it applies); `present` only without kv taps.
      const decoder = models.get(dtype)!.decoder;
      const ms = await timed(() =>
        decoder.info.kvTaps ? decoder.stepRows({ inputsEmbeds: embeds, past, logits: 'last', kv: 'new' }) : decoder.step({ inputsEmbeds: embeds, past, logits: 'last', presentInto }),
      );
      if (r >= 0) stepMs.get(key(dtype, context))!.push(ms);
    }
  }
  process.stderr.write(`round ${r + 1}/${rounds}\r`);
}

/** Median over rounds of fp32's time / dtype's time in the same round (paired: robust to load drift). */
const pairedRatio = (fp32: readonly number[], other: readonly number[]) => median(fp32.map((t, i) => t / other[i]!));

out(`\n| vision encoder, one ${side}x${side} frame | median ms | best ms | frames/s (median) | frames/s (best) | x fp32 (medians) | x fp32 (paired per round) |\n|---|---:|---:|---:|---:|---:|---:|`);
const visionRows: Record<string, unknown> = {};
for (const dtype of VISION_ROWS) {
  const ms = visionMs.get(dtype)!;
  const fp32 = visionMs.get('fp32')!;
  const row = { medianMs: median(ms), bestMs: Math.min(...ms), ratioMedians: median(fp32) / median(ms), ratioPaired: pairedRatio(fp32, ms) };
  visionRows[dtype] = row;
  out(`| ${dtype} | ${fmt(row.medianMs)} | ${fmt(row.bestMs)} | ${fmt(1000 / row.medianMs, 2)} | ${fmt(1000 / row.bestMs, 2)} | ${fmt(row.ratioMedians, 2)} | ${fmt(row.ratioPaired, 2)} |`);
}
{
  const [fp32, q8] = [visionMs.get('fp32-export-gelu')!, visionMs.get('q8-export-gelu')!];
  out(`q8 x fp32 with the exported (unfused) GELU in both: ${fmt(median(fp32) / median(q8), 2)} (medians), ${fmt(pairedRatio(fp32, q8), 2)} (paired)`);
  const q8Fast = visionMs.get('q8')!;
  out(`q8 (FastGelu) x fp32 with the exported GELU: ${fmt(median(fp32) / median(q8Fast), 2)} (medians), ${fmt(pairedRatio(fp32, q8Fast), 2)} (paired)`);
}
out(`\n| decode 1 token (in place, Decoder.stepRows) | context | median ms | best ms | tokens/s (median) | x fp32 (medians) | x fp32 (paired) |\n|---|---:|---:|---:|---:|---:|---:|`);
const decodeRows: Record<string, unknown> = {};
for (const context of contexts) {
  for (const dtype of DTYPES) {
    const ms = stepMs.get(key(dtype, context))!;
    const fp32 = stepMs.get(key('fp32', context))!;
    const row = { medianMs: median(ms), bestMs: Math.min(...ms), ratioMedians: median(fp32) / median(ms), ratioPaired: pairedRatio(fp32, ms) };
    decodeRows[key(dtype, context)] = row;
    out(`| ${dtype} | ${context} | ${fmt(row.medianMs)} | ${fmt(row.bestMs)} | ${fmt(1000 / row.medianMs)} | ${fmt(row.ratioMedians, 2)} | ${fmt(row.ratioPaired, 2)} |`);
  }
}

// ---- 2. Where a frame's time goes ----
const { spinning } = ortThreading();
const profileOptions: ort.InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  intraOpNumThreads: threads,
  extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
};
const profiles: Record<string, { runMs: number; ops: Array<{ op: string; ms: number; share: number }> }> = {};
out(`\nvision encoder time by op type (onnxruntime profile after its optimizer, ${quick ? 1 : 2} runs each; ms per frame and share of node time):`);
for (const dtype of VISION_ROWS) {
  const profile = await profileOpTypes(visionGraphs.get(dtype)!.file, visionFeeds, profileOptions, quick ? 1 : 2);
  profiles[dtype] = profile;
  out(`- ${dtype} (model_run ${fmt(profile.runMs)} ms): ${profile.ops.slice(0, 10).map((o) => `${o.op} ${fmt(o.ms)} (${fmt(100 * o.share)}%)`).join(', ')}`);
}

// Amdahl: the MatMul work int8 replaces vs everything else (attention, GELU, norms, adds), per frame.
const MATMUL_OPS = new Set(['MatMul', 'FusedMatMul', 'Gemm', 'MatMulInteger', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'MatMulNBits', 'DynamicQuantizeLinear']);
const split = (dtype: VisionRow) => {
  const ops = profiles[dtype]!.ops;
  const matmul = ops.filter((o) => MATMUL_OPS.has(o.op)).reduce((n, o) => n + o.ms, 0);
  const rest = ops.filter((o) => !MATMUL_OPS.has(o.op)).reduce((n, o) => n + o.ms, 0);
  return { matmul, rest };
};
const fp32Split = split('fp32');
const q8Split = split('q8');
const amdahl = {
  fp32MatMulShare: fp32Split.matmul / (fp32Split.matmul + fp32Split.rest),
  q8MatMulSpeedup: fp32Split.matmul / q8Split.matmul,
  boundIfMatMulsFree: (fp32Split.matmul + fp32Split.rest) / fp32Split.rest,
};
out(
  `- MatMul work (MatMul/FusedMatMul in fp32; DynamicQuantizeLinear + MatMulInteger forms in q8): fp32 ${fmt(fp32Split.matmul)} ms = ${fmt(100 * amdahl.fp32MatMulShare)}% of node time, q8 ${fmt(q8Split.matmul)} ms (x${fmt(amdahl.q8MatMulSpeedup, 2)}); ` +
    `everything else fp32 ${fmt(fp32Split.rest)} ms, q8 ${fmt(q8Split.rest)} ms. Frames/s bound if the MatMuls took no time at all: x${fmt(amdahl.boundIfMatMulsFree, 2)}`,
);

// ---- 3. Accuracy ----
const features = new Map<VisionRow, Float32Array[]>();
for (const row of VISION_ROWS) {
  const list: Float32Array[] = [];
  for (const frame of frames) {
    const feeds = { ...visionFeeds, pixel_values: new ort.Tensor('float32', frame.pixelValues, [1, 1, 3, side, side]) };
    list.push(Float32Array.from((await visionGraphs.get(row)!.run(feeds)).image_features!.data as Float32Array));
  }
  features.set(row, list);
}
const concat = (parts: readonly Float32Array[]) => {
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
};
const prompts = [
  'What color was the square on the red screen?',
  'Describe what happens in the video.',
  'Is there a person near the door?',
  'The quick brown fox jumps over the lazy dog.',
];
const vocab = info.vocabSize;
const logits = new Map<Dtype, Float32Array[]>();
for (const dtype of DTYPES) {
  const model = models.get(dtype)!;
  const list: Float32Array[] = [];
  for (const prompt of prompts) {
    const ids = model.tokenizer.encode(prompt);
    const step = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: model.decoder.emptyCache() });
    list.push(Float32Array.from(step.logits));
  }
  logits.set(dtype, list);
}
const accuracy: Record<string, { features: OutputDifference; logits?: OutputDifference; top1?: number; positions?: number }> = {};
out(`\n| vs fp32 | features max abs diff | features rel L2 | features cosine | logits max abs diff | logits rel L2 | top-1 agreement |\n|---|---:|---:|---:|---:|---:|---:|`);
for (const dtype of ['q8', 'q4'] as const) {
  const f = outputDifference(concat(features.get('fp32')!), concat(features.get(dtype)!));
  const l = outputDifference(concat(logits.get('fp32')!), concat(logits.get(dtype)!));
  let agree = 0;
  let positions = 0;
  logits.get('fp32')!.forEach((ref, p) => {
    const rows = ref.length / vocab;
    for (let row = 0; row < rows; row++) agree += argmaxRow(ref, vocab, row) === argmaxRow(logits.get(dtype)![p]!, vocab, row) ? 1 : 0;
    positions += rows;
  });
  accuracy[dtype] = { features: f, logits: l, top1: agree / positions, positions };
  out(`| ${dtype} | ${f.maxAbs.toExponential(2)} | ${f.relativeL2.toExponential(2)} | ${f.cosine.toFixed(6)} | ${l.maxAbs.toExponential(2)} | ${l.relativeL2.toExponential(2)} | ${agree}/${positions} |`);
}
for (const row of ['q8-int8-attention', 'fp32-export-gelu', 'q8-export-gelu'] as const) {
  const f = outputDifference(concat(features.get('fp32')!), concat(features.get(row)!));
  accuracy[row] = { features: f };
  out(`| ${row} (vision only) | ${f.maxAbs.toExponential(2)} | ${f.relativeL2.toExponential(2)} | ${f.cosine.toFixed(6)} | | | |`);
}
const maxAbs = (values: Float32Array) => values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
// How decided fp32's own top-1 is (random weights give near-flat logits): the gap to the runner-up.
const gaps: number[] = [];
for (const ref of logits.get('fp32')!) {
  for (let row = 0; row < ref.length / vocab; row++) {
    const top = argmaxRow(ref, vocab, row);
    let second = -Infinity;
    for (let i = 0; i < vocab; i++) if (i !== top) second = Math.max(second, ref[row * vocab + i]!);
    gaps.push(ref[row * vocab + top]! - second);
  }
}
const top1Gap = { median: median(gaps), min: gaps.reduce((m, g) => Math.min(m, g), Infinity) };
out(
  `(${frames.length} frames, ${prompts.length} prompts; max |feature| ${fmt(maxAbs(concat(features.get('fp32')!)), 3)}, max |logit| ${fmt(maxAbs(concat(logits.get('fp32')!)), 3)} in fp32; ` +
    `fp32's top-1 leads its runner-up by ${top1Gap.median.toExponential(2)} (median over positions), ${top1Gap.min.toExponential(2)} at least)`,
);
for (const row of ['q8-int8-attention', 'fp32-export-gelu', 'q8-export-gelu'] as const) await visionGraphs.get(row)!.dispose();
for (const model of models.values()) await model.dispose();
fs.rmSync(scratch, { recursive: true, force: true });

// ---- 4. V-NIAH on the needle model, fp32 vs q8 ----
type VniahSummary = { dtype: Dtype; correct: number; cells: number; seconds: number; answers: string[] };
const vniah: VniahSummary[] = [];
let vniahSame: boolean | null = null;
if (!args['no-vniah']) {
  const settings: VniahSettings = {
    ...structuredClone(DEFAULT_VNIAH_SETTINGS),
    lengthsMin: [1],
    depthsPct: [0, 50, 100],
    modes: ['rekv', 'window'],
    dtypes: ['float32'],
    baselineDtypes: ['float32'],
    retrieve: 4,
    repeats: 1,
  };
  const needleDir = buildProbeModel(args['needle-model']!, { dtype: 'q8' }).dir;
  const cellsBy = new Map<Dtype, VniahCell[]>();
  for (const dtype of ['fp32', 'q8'] as const) {
    const memoryRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-quantized-vniah-'));
    const model = await VisionLanguageModel.load(needleDir, { dtype });
    try {
      const results = await runVniah(model, { settings, modelDir: needleDir, memoryRoot });
      cellsBy.set(dtype, results.cells);
      const answers = results.cells.map((c) => `${c.mode} ${c.kind}${c.depthPct === null ? '' : ` ${c.depthPct}%`}: ${c.answer ?? c.skipped}${c.correct ? '' : ' (wrong)'}`);
      vniah.push({ dtype, correct: results.cells.filter((c) => c.correct).length, cells: results.cells.length, seconds: results.totalSeconds, answers });
    } finally {
      await model.dispose();
      fs.rmSync(memoryRoot, { recursive: true, force: true });
    }
  }
  const a = cellsBy.get('fp32')!;
  const b = cellsBy.get('q8')!;
  vniahSame = a.length === b.length && a.every((c, i) => c.answer === b[i]!.answer && c.correct === b[i]!.correct);
  out(`\nV-NIAH on ${args['needle-model']} (1-min clip, needles at 0/50/100%, rekv r=4 and window, float32 KV):`);
  for (const v of vniah) out(`- ${v.dtype}: ${v.correct}/${v.cells} correct (${fmt(v.seconds, 0)} s): ${v.answers.join('; ')}`);
  out(`- answers ${vniahSame ? 'identical' : 'DIFFER'} between fp32 and q8`);
}

const loadEnd = os.loadavg();
out(`\nthreads ${threads}; load average at start ${loadStart.map((l) => fmt(l, 2)).join(' ')}, at end ${loadEnd.map((l) => fmt(l, 2)).join(' ')} (1/5/15 min; ${os.cpus().length} cores)`);
const round = (x: number, digits = 3) => Number(x.toFixed(digits));
out(
  JSON.stringify({
    bench: 'quantized',
    model: args.model,
    threads,
    rounds,
    loadavgStart: loadStart.map((l) => round(l, 2)),
    loadavgEnd: loadEnd.map((l) => round(l, 2)),
    vision: visionRows,
    decode: decodeRows,
    profiles: Object.fromEntries(Object.entries(profiles).map(([d, p]) => [d, { runMs: round(p.runMs, 1), ops: p.ops.slice(0, 10).map((o) => ({ op: o.op, ms: round(o.ms, 1), share: round(o.share) })) }])),
    amdahl,
    accuracy,
    top1Gap,
    vniah: { model: args['needle-model'], runs: vniah, identical: vniahSame },
  }),
);
