/**
 * Roofline (issue 19): this machine's peaks and each model call's achieved rate against them, in one run.
 *
 *   node --import tsx bench/roofline.ts [--threads 2] [--quick] [--model probe-random-smolvlm2-256m] [--context 5000]
 *
 * 1. Peaks, from onnxruntime sessions of one-op graphs written with Vigil's own ONNX writer
 *    (bench/rooflineGraphs.ts): fp32 MatMul and u8 x s8 MatMulInteger over a size sweep (GFLOP/s,
 *    GOP/s; the best size is the peak), and bandwidth: a Float32Array set() copy in JS (one thread),
 *    an onnxruntime Add over a large tensor (read + write) and ReduceSum (read only). Warm-up runs,
 *    then the best of N.
 * 2. The model's calls: the vision encoder on one frame (FLOPs counted from the graph's
 *    MatMul/Gemm/Conv nodes, bench/graphFlops.ts) -> GFLOP/s and % of the fp32 matmul peak; a
 *    one-token decode step over a past of --context tokens as generate() runs it (the past fed from one
 *    growing KvBuffer, only the new rows fetched; split decode attention where the graph allows it,
 *    src/model/onnx/splitAttention.ts; VIGIL_DECODE_ATTENTION=gqa for the export's attention)
 *    -> bytes that must be read per step (weights + past KV) /
 *    time -> GB/s, % of the memcpy bandwidth, tokens/s and the bandwidth-bound tokens/s. The step is
 *    also run, in alternating rounds, through a profiled session of the same file: onnxruntime's own
 *    run time vs session.run's wall time vs Decoder.step splits the step's time into graph work,
 *    Node-binding hand-over and Vigil's own cost.
 * Prints a table, the thread count and os.loadavg (the machine may be shared), then one JSON line.
 * --quick: fewer sizes and repeats (under ~2 minutes with a built probe).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import { BufferPool } from '../src/model/bufferPool.js';
import { KvBuffer } from '../src/model/kvBuffer.js';
import { emptyKvCache } from '../src/model/kvCache.js';
import { ortThreading } from '../src/model/onnxGraph.js';
import { fullPixelMask } from '../src/model/preprocess/pixelAttentionMask.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';
import { floatTensor } from '../src/model/tensors.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { countGraphFlops, initializerBytes } from './graphFlops.js';
import * as graphs from './rooflineGraphs.js';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    quick: { type: 'boolean', default: false },
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    context: { type: 'string', default: '5000' },
  },
});
const threads = Number(args.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a whole number >= 1, got '${args.threads}'`);
// The model's sessions read their thread count from VIGIL_THREADS when they open (not at import): the same count everywhere here.
process.env.VIGIL_THREADS = String(threads);
const quick = args.quick!;
const context = Number(args.context);

type Tensor = ort.Tensor;

const WARMUP = 2;
const REPEATS = quick ? 5 : 10;
const loadStart = os.loadavg();

interface Timing {
  best: number;
  median: number;
}

async function time(run: () => Promise<void> | void, repeats = REPEATS, warmup = WARMUP): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await run();
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    await run();
    samples.push(performance.now() - started);
  }
  return summarize(samples);
}

/** Vigil's own session settings (src/model/onnxGraph.ts) at --threads. */
function sessionOptions(role: 'decoder' | 'other' = 'other'): ort.InferenceSession.SessionOptions {
  // As src/model/onnxGraph.ts: the decoder's pool does not spin (spinning threads would hold the cores the other session's steps need).
  const spinning = role === 'decoder' ? ortThreading().decoderSpinning : ortThreading().spinning;
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    intraOpNumThreads: threads,
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  };
}

function summarize(samples: readonly number[]): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  return { best: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]! };
}

interface GraphTiming {
  /** session.run as the caller sees it, the binding's copies of inputs and outputs included. */
  wall: Timing;
  /** onnxruntime's own model_run time (its profile): the graph's work without the Node binding. */
  ort: Timing;
}

/**
 * Times one-op graph `file` on `feeds` (outputs into preallocated `fetches` where given). The peaks
 * use onnxruntime's own run time: onnxruntime-node's hand-over of a large output to JS costs far more
 * than the op here (a 64 MiB Relu: 3.7 ms in model_run, ~270 ms per session.run), which is the
 * binding's cost, not this machine's arithmetic or bandwidth.
 */
async function timeGraph(file: string, feeds: Record<string, Tensor>, fetches?: ort.InferenceSession.FetchesType): Promise<GraphTiming> {
  const profileDir = fs.mkdtempSync(path.join(dir, 'profile-'));
  const session = await ort.InferenceSession.create(file, { ...sessionOptions(), enableProfiling: true, profileFilePrefix: path.join(profileDir, 'run') });
  let wall: Timing;
  try {
    wall = await time(async () => {
      if (fetches) await session.run(feeds, fetches);
      else await session.run(feeds);
    });
    session.endProfiling();
  } finally {
    await session.release();
  }
  return { wall, ort: summarize(modelRunMs(profileDir).slice(WARMUP)) };
}

/** The model_run durations (ms, in order) of the one profile onnxruntime wrote into `profileDir`. */
function modelRunMs(profileDir: string): number[] {
  const profile = fs.readdirSync(profileDir).find((f) => f.endsWith('.json'));
  if (!profile) throw new Error(`onnxruntime wrote no profile into ${profileDir}`);
  const events = JSON.parse(fs.readFileSync(path.join(profileDir, profile), 'utf8')) as Array<{ name?: string; dur?: number }>;
  return events.filter((e) => e.name === 'model_run').map((e) => (e.dur ?? 0) / 1000);
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-roofline-'));
const random = mulberry32(1);
const fmt = (x: number, digits = 1) => x.toFixed(digits);

out(`roofline: ${threads} onnxruntime threads (spinning ${ortThreading().spinning ? 'on' : 'off'}), ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), load average ${loadStart.map((l) => fmt(l, 2)).join(' ')}${quick ? ', --quick' : ''}`);

// ---- 1. Peaks ----
const matmulSizes: Array<[number, number, number]> = quick
  ? [[512, 512, 512], [1024, 1024, 1024], [1024, 768, 3072]]
  : [[256, 256, 256], [512, 512, 512], [1024, 1024, 1024], [2048, 2048, 2048], [1024, 768, 3072], [1024, 3072, 768]];

interface SweepRow {
  m: number;
  k: number;
  n: number;
  /** Rates from onnxruntime's run time (best), and from session.run's wall time (best). */
  fp32: number;
  int8: number;
  fp32Wall: number;
  int8Wall: number;
}
const sweep: SweepRow[] = [];
for (const [m, k, n] of matmulSizes) {
  const ops = 2 * m * k * n;
  const a = new ort.Tensor('float32', Float32Array.from({ length: m * k }, () => random() - 0.5), [m, k]);
  const fp32 = await timeGraph(graphs.matMulGraph(dir, m, k, n), { a });
  const a8 = new ort.Tensor('uint8', Uint8Array.from({ length: m * k }, () => Math.floor(random() * 256)), [m, k]);
  const int8 = await timeGraph(graphs.matMulIntegerGraph(dir, m, k, n), { a: a8 });
  sweep.push({ m, k, n, fp32: ops / fp32.ort.best / 1e6, int8: ops / int8.ort.best / 1e6, fp32Wall: ops / fp32.wall.best / 1e6, int8Wall: ops / int8.wall.best / 1e6 });
}
const fp32Peak = Math.max(...sweep.map((r) => r.fp32));
const int8Peak = Math.max(...sweep.map((r) => r.int8));

const floats = quick ? 16 << 20 : 32 << 20; // 64 / 128 MiB: far past the last-level cache
const bytes = floats * 4;
const source = new Float32Array(floats).map((_, i) => i & 1023);
const target = new Float32Array(floats);
const jsCopy = await time(() => target.set(source));
const xTensor = new ort.Tensor('float32', source, [floats]);
const addCopy = await timeGraph(graphs.addGraph(dir, floats), { x: xTensor }, { y: new ort.Tensor('float32', target, [floats]) });
const readOnly = await timeGraph(graphs.reduceSumGraph(dir, floats), { x: xTensor });
const bandwidth = {
  jsSetCopy: bytes / jsCopy.best / 1e6,
  ortAddCopy: bytes / addCopy.ort.best / 1e6,
  ortReduceSumRead: bytes / readOnly.ort.best / 1e6,
  ortAddCopyWall: bytes / addCopy.wall.best / 1e6,
  ortReduceSumReadWall: bytes / readOnly.wall.best / 1e6,
};
/** The memcpy bandwidth the decode bound uses: bytes copied per second, the faster of the two copies. */
const memcpyPeak = Math.max(bandwidth.jsSetCopy, bandwidth.ortAddCopy);

out('\nrates from onnxruntime\'s own run time (profile model_run), best of ' + REPEATS + ' after ' + WARMUP + ' warm-up; "session.run" columns: the same from the wall time of session.run');
out('\n| matmul M x K x N | fp32 MatMul GFLOP/s | u8 x s8 MatMulInteger GOP/s | int8 / fp32 | fp32 via session.run | int8 via session.run |\n|---|---:|---:|---:|---:|---:|');
for (const r of sweep) out(`| ${r.m} x ${r.k} x ${r.n} | ${fmt(r.fp32)} | ${fmt(r.int8)} | ${fmt(r.int8 / r.fp32, 2)} | ${fmt(r.fp32Wall)} | ${fmt(r.int8Wall)} |`);
out(`\n| bandwidth over ${bytes >> 20} MiB | GB/s (bytes copied or read / s) | via session.run |\n|---|---:|---:|`);
out(`| Float32Array set() copy (JS, 1 thread) | ${fmt(bandwidth.jsSetCopy)} | |`);
out(`| onnxruntime Add x+1 (read + write, ${threads} threads) | ${fmt(bandwidth.ortAddCopy)} | ${fmt(bandwidth.ortAddCopyWall, 2)} |`);
out(`| onnxruntime ReduceSum (read only, ${threads} threads) | ${fmt(bandwidth.ortReduceSumRead)} | ${fmt(bandwidth.ortReduceSumReadWall)} |`);

// ---- 2. The model's calls ----
const model = await VisionLanguageModel.load(buildProbeModel(args.model!).dir, { queryTaps: 'auto' });
const side = model.imageConfig.tileSize ?? 512;
const pixels = Float32Array.from({ length: 3 * side * side }, () => random() * 2 - 1);
const frame = { pixelValues: pixels, count: 1, height: side, width: side, rows: 0, cols: 0 };
const vision = await time(async () => {
  await model.encodeImages(frame);
}, quick ? 3 : 5, 1);
const pixelShape = model.vision.input('pixel_values').shape.length === 5 ? [1, 1, 3, side, side] : [1, 3, side, side];
const visionFeeds: Record<string, Tensor> = { pixel_values: new ort.Tensor('float32', pixels, pixelShape) };
if (model.vision.hasInput('pixel_attention_mask')) visionFeeds.pixel_attention_mask = new ort.Tensor('bool', fullPixelMask(1, side, side), [1, 1, side, side]);
const visionFlops = await countGraphFlops(model.vision.file, visionFeeds);
if (visionFlops.unknown.length > 0) out(`(vision encoder: no shapes for ${visionFlops.unknown.length} counted nodes, left out of the FLOPs: ${visionFlops.unknown.slice(0, 3).join(', ')})`);
const visionRate = (ms: number) => visionFlops.total / ms / 1e6;

const info = model.decoder.info;
const elementBytes = info.type === 'float16' ? 2 : 4;
const past = emptyKvCache(info, context);
for (const layer of past.layers) {
  for (const t of [layer.key, layer.value]) {
    const data = t.data as Float32Array | Uint16Array;
    // Seeded values (the cost does not depend on them); float16 gets small bit patterns, not NaNs.
    for (let i = 0; i < data.length; i++) data[i] = info.type === 'float16' ? 0x3000 + ((i * 2654435761) >>> 22) : random() - 0.5;
  }
}
const embeds = floatTensor(info.embedType, Float32Array.from({ length: info.hiddenSize }, () => (random() - 0.5) * 0.1), [1, 1, info.hiddenSize]);
const decoderFile = model.decoder.graph.file;
const decoderInputs = new Set(model.decoder.graph.session.inputNames);
const weightBytes = initializerBytes(decoderFile);
const kvBytes = info.numLayers * 2 * info.numKvHeads * context * info.headDim * elementBytes;
const stepBytes = weightBytes + kvBytes;
const boundMs = stepBytes / memcpyPeak / 1e6;

// The same step also through a second session of the same file with onnxruntime's profile on: its own
// run time vs the wall time of session.run tells the graph's work from the Node binding's hand-over of
// inputs/outputs, and session.run vs Decoder.step shows Vigil's own cost. Rounds alternate the two
// (one step of each per round), so load from other work hits both alike.
const stepFeeds: Record<string, ort.Tensor> = { inputs_embeds: embeds };
stepFeeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(context + 1).fill(1n), [1, context + 1]);
if (decoderInputs.has('position_ids')) stepFeeds.position_ids = new ort.Tensor('int64', BigInt64Array.of(BigInt(context)), [1, 1]);
if (decoderInputs.has('use_cache_branch')) stepFeeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(1), [1]);
if (decoderInputs.has('num_logits_to_keep')) stepFeeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(1n), []);
// The profiled session fetches what Decoder.stepRows fetches: logits and the new rows (kv taps).
const kvTaps = info.kvTaps;
if (!kvTaps?.lengthsFromMask) throw new Error(`${decoderFile}: no kv taps read from the mask (query taps ${model.queryTaps.state}): this bench measures the in-place decode path`);
const stepFetches = ['logits', ...kvTaps.layers.flatMap((l) => [l.key, l.value])];
past.layers.forEach((layer, i) => {
  stepFeeds[`past_key_values.${i}.key`] = layer.key;
  stepFeeds[`past_key_values.${i}.value`] = layer.value;
});
const decodeSteps = quick ? 5 : 10;
const kvBuffer = new KvBuffer(info, context + WARMUP + decodeSteps + 1, new BufferPool(0));
kvBuffer.append(past);
const profileDir = fs.mkdtempSync(path.join(dir, 'decoder-profile-'));
const profiled = await ort.InferenceSession.create(decoderFile, { ...sessionOptions('decoder'), enableProfiling: true, profileFilePrefix: path.join(profileDir, 'run') });
const stepSamples: number[] = [];
const sessionSamples: number[] = [];
try {
  for (let r = 0; r < WARMUP + decodeSteps; r++) {
    let started = performance.now();
    const step = await model.decoder.stepRows({ inputsEmbeds: embeds, past: kvBuffer.cache, pastLength: kvBuffer.length, kv: 'new', logits: 'last' });
    kvBuffer.append(step.newRows!);
    if (r >= WARMUP) stepSamples.push(performance.now() - started);
    started = performance.now();
    await profiled.run(stepFeeds, stepFetches);
    if (r >= WARMUP) sessionSamples.push(performance.now() - started);
  }
  profiled.endProfiling();
} finally {
  kvBuffer.dispose();
  await profiled.release();
}
const decode = summarize(stepSamples);
const decodeProfiled: GraphTiming = { wall: summarize(sessionSamples), ort: summarize(modelRunMs(profileDir).slice(WARMUP)) };
await model.dispose();
const loadEnd = os.loadavg();

const pct = (x: number, peak: number) => `${fmt((100 * x) / peak)}%`;
out(`\nvision encoder (${args.model}, one ${side}x${side} frame): ${fmt(visionFlops.total / 1e9, 2)} GFLOP counted (${Object.entries(visionFlops.byOp).map(([op, f]) => `${op} ${fmt(f / 1e9, 2)}`).join(', ')})`);
out(`decode step at ${context} tokens: weights ${fmt(weightBytes / 1e6)} MB + past KV ${fmt(kvBytes / 1e6)} MB (${info.numLayers} layers x ${info.numKvHeads} KV heads x ${info.headDim}, ${info.type}) = ${fmt(stepBytes / 1e6)} MB read per step; bound at ${fmt(memcpyPeak)} GB/s: ${fmt(boundMs)} ms = ${fmt(1000 / boundMs)} tokens/s`);
out(`\n| call | median ms | best ms | achieved (median) | % of peak (median) | % of peak (best) | peak |\n|---|---:|---:|---:|---:|---:|---|`);
out(`| vision encoder ${side}x${side} | ${fmt(vision.median)} | ${fmt(vision.best)} | ${fmt(visionRate(vision.median))} GFLOP/s | ${pct(visionRate(vision.median), fp32Peak)} | ${pct(visionRate(vision.best), fp32Peak)} | fp32 MatMul ${fmt(fp32Peak)} GFLOP/s |`);
const decodeRate = (ms: number) => stepBytes / ms / 1e6;
out(`| decode 1 token at ${context} (Vigil's in-place step, Decoder.stepRows) | ${fmt(decode.median)} | ${fmt(decode.best)} | ${fmt(decodeRate(decode.median))} GB/s | ${pct(decodeRate(decode.median), memcpyPeak)} | ${pct(decodeRate(decode.best), memcpyPeak)} | memcpy ${fmt(memcpyPeak)} GB/s |`);
out(`| same step, onnxruntime's own run time (profiled 2nd session of the file) | ${fmt(decodeProfiled.ort.median)} | ${fmt(decodeProfiled.ort.best)} | ${fmt(decodeRate(decodeProfiled.ort.median))} GB/s | ${pct(decodeRate(decodeProfiled.ort.median), memcpyPeak)} | ${pct(decodeRate(decodeProfiled.ort.best), memcpyPeak)} | memcpy ${fmt(memcpyPeak)} GB/s |`);
out(`| same step, that session's session.run wall time | ${fmt(decodeProfiled.wall.median)} | ${fmt(decodeProfiled.wall.best)} | ${fmt(decodeRate(decodeProfiled.wall.median))} GB/s | ${pct(decodeRate(decodeProfiled.wall.median), memcpyPeak)} | ${pct(decodeRate(decodeProfiled.wall.best), memcpyPeak)} | memcpy ${fmt(memcpyPeak)} GB/s |`);
out(`\ndecode: ${fmt(1000 / decode.median)} tokens/s (median), ${fmt(1000 / decode.best)} (best); bandwidth-bound ${fmt(1000 / boundMs)} tokens/s at the memcpy ${fmt(memcpyPeak)} GB/s, ${fmt((1e3 * bandwidth.ortReduceSumRead) / (stepBytes / 1e6))} at the read-only ${fmt(bandwidth.ortReduceSumRead)} GB/s`);
out(`threads ${threads}; load average at start ${loadStart.map((l) => fmt(l, 2)).join(' ')}, at end ${loadEnd.map((l) => fmt(l, 2)).join(' ')} (1/5/15 min; ${os.cpus().length} cores)`);

const round = (x: number, digits = 2) => Number(x.toFixed(digits));
out(
  JSON.stringify({
    bench: 'roofline',
    threads,
    quick,
    cores: os.cpus().length,
    loadavgStart: loadStart.map((l) => round(l)),
    loadavgEnd: loadEnd.map((l) => round(l)),
    peaks: {
      fp32MatMulGflops: round(fp32Peak, 1),
      int8MatMulIntegerGops: round(int8Peak, 1),
      sweep: sweep.map((r) => ({ size: `${r.m}x${r.k}x${r.n}`, fp32Gflops: round(r.fp32, 1), int8Gops: round(r.int8, 1), fp32GflopsWall: round(r.fp32Wall, 1), int8GopsWall: round(r.int8Wall, 1) })),
      bandwidthGBs: { jsSetCopy: round(bandwidth.jsSetCopy), ortAddCopy: round(bandwidth.ortAddCopy), ortReduceSumRead: round(bandwidth.ortReduceSumRead), ortAddCopyWall: round(bandwidth.ortAddCopyWall), memcpy: round(memcpyPeak) },
    },
    vision: {
      model: args.model,
      side,
      gflop: round(visionFlops.total / 1e9, 3),
      medianMs: round(vision.median, 1),
      bestMs: round(vision.best, 1),
      gflopsMedian: round(visionRate(vision.median), 1),
      pctOfFp32PeakMedian: round((100 * visionRate(vision.median)) / fp32Peak, 1),
    },
    decode: {
      context,
      weightMB: round(weightBytes / 1e6, 1),
      pastKvMB: round(kvBytes / 1e6, 1),
      medianMs: round(decode.median, 1),
      bestMs: round(decode.best, 1),
      tokensPerSecondMedian: round(1000 / decode.median, 1),
      gbsMedian: round(decodeRate(decode.median)),
      pctOfMemcpyMedian: round((100 * decodeRate(decode.median)) / memcpyPeak, 1),
      boundTokensPerSecond: round(1000 / boundMs, 1),
      ortRunMedianMs: round(decodeProfiled.ort.median, 1),
      ortRunBestMs: round(decodeProfiled.ort.best, 1),
      sessionRunMedianMs: round(decodeProfiled.wall.median, 1),
    },
  }),
);
fs.rmSync(dir, { recursive: true, force: true });
