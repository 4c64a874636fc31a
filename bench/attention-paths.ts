/**
 * Attention path A/B (issue 7): the probe graphs' eager attention (MatMul, scale, Where-mask,
 * Softmax, MatMul) against onnxruntime's fused contrib ops (com.microsoft GroupQueryAttention in
 * the decoder, MultiHeadAttention in the vision encoder), at the smolvlm2-256m geometry.
 *
 *   node --import tsx bench/attention-paths.ts [--layers 2] [--vocab 256] [--runs 7] [--dtype float32]
 *                                              [--frame-past 1400] [--question 5000] [--question-tokens 32]
 *                                              [--question-past 5000] [--decode-past 5000]
 *                                              [--only vision,frame,question,asked,decode]
 *
 * Both paths are built by the probe writer (src/model/probe/*Graph.ts, `attention: 'eager' | 'fused'`)
 * with the same seeded weights, at the real width (decoder 576 hidden, 9 heads, 3 KV heads, head 64,
 * MLP 1536; SigLIP 768 hidden, 12 heads, MLP 3072, 1024 patches) but `--layers` layers (default 2,
 * so the bench stays short: per-layer cost is what changes, and the real models repeat the same layer
 * 30 / 12 times) and a `--vocab`-row lm_head (default 256: the probe decoder returns logits for every
 * position, and a 49280-row lm_head over 5k tokens would be the same cost on both paths and hide the
 * attention difference). Cases:
 *   vision    one 512x512 frame through the vision encoder;
 *   frame     decoder frame prefill: 77 new tokens over --frame-past tokens of past;
 *   question  long prefill: --question new tokens, empty past (the `full` baseline, a long prompt);
 *   asked     ReKV's pass 2: --question-tokens question tokens over --question-past tokens of
 *             assembled past (sinks + retrieved frames);
 *   decode    one decode step over --decode-past tokens of past.
 * Per case: one warm-up run of each path (its outputs are compared: max |fused - eager| over all
 * outputs, and that as a fraction of the largest |eager| value), then --runs rounds, each timing both
 * paths back to back with the order alternating, so machine load hits both alike; a sample of a
 * short case is the mean of as many back-to-back runs as take about 200 ms. Reported: best and
 * median ms per path and the fused / eager ratios of both, measured in this run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { float16ToFloat32, float32ToFloat16 } from '../kernels/fp16.js';
import { mulberry32 } from '../kernels/sampling.js';
import { OnnxModelWriter } from '../src/model/onnx/modelWriter.js';
import { buildDecoderGraph } from '../src/model/probe/decoderGraph.js';
import type { AttentionPath, FloatType, ProbeGraphContext } from '../src/model/probe/graphHelpers.js';
import { findProbeSpec } from '../src/model/probe/probeSpecs.js';
import { randomWeightSource } from '../src/model/probe/randomWeights.js';
import { buildVisionGraph } from '../src/model/probe/visionGraph.js';

const { values: args } = parseArgs({
  options: {
    layers: { type: 'string', default: '2' },
    vocab: { type: 'string', default: '256' },
    runs: { type: 'string', default: '7' },
    dtype: { type: 'string', default: 'float32' },
    'frame-past': { type: 'string', default: '1400' },
    question: { type: 'string', default: '5000' },
    'question-tokens': { type: 'string', default: '32' },
    'question-past': { type: 'string', default: '5000' },
    'decode-past': { type: 'string', default: '5000' },
    only: { type: 'string', default: 'vision,frame,question,asked,decode' },
  },
});
const layers = Number(args.layers);
const runs = Number(args.runs);
const dtype = args.dtype as FloatType;
if (dtype !== 'float32' && dtype !== 'float16') throw new Error('--dtype is float32 or float16');
const only = new Set(args.only!.split(','));
const PATHS: readonly AttentionPath[] = ['eager', 'fused'];
/** Outputs must agree within this (absolute, over every output element). */
const TOLERANCE = dtype === 'float32' ? 1e-3 : 5e-2;

const base = findProbeSpec('probe-random-smolvlm2-256m')!;
const text = { ...base.text, numLayers: layers, vocabSize: Number(args.vocab) };
const vision = { ...base.vision, numLayers: layers };
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-attention-bench-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

function sessionOptions(): ort.InferenceSession.SessionOptions {
  const threads = Number(process.env.VIGIL_THREADS ?? 0);
  return { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...(threads > 0 ? { intraOpNumThreads: threads } : {}) };
}

async function buildSession(name: string, build: (ctx: ProbeGraphContext) => void): Promise<ort.InferenceSession> {
  const file = path.join(scratch, `${name}.onnx`);
  const writer = new OnnxModelWriter({ path: file, graphName: name, opset: 17, externalDataThresholdBytes: 1024 });
  build({ g: writer.graph, weights: randomWeightSource(0), dtype });
  writer.save();
  return ort.InferenceSession.create(file, sessionOptions());
}

function randoms(count: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: count }, () => (2 * random() - 1) * scale);
}

function floatTensor(values: Float32Array, dims: number[]): ort.Tensor {
  return dtype === 'float16' ? new ort.Tensor('float16', float32ToFloat16(values), dims) : new ort.Tensor('float32', values, dims);
}

function asFloat32(tensor: ort.Tensor): Float32Array {
  return tensor.type === 'float16' ? float16ToFloat32(tensor.data as Uint16Array) : (tensor.data as Float32Array);
}

function decoderFeeds(past: number, seq: number): Record<string, ort.Tensor> {
  const { hiddenSize: H, numKvHeads: KV, headDim: D } = text;
  const total = past + seq;
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: floatTensor(randoms(seq * H, 11), [1, seq, H]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: seq }, (_, s) => BigInt(past + s)), [1, seq]),
  };
  for (let i = 0; i < layers; i++) {
    // Keys already rotated to their positions, as the engine assembles them; scale like projected keys.
    feeds[`past_key_values.${i}.key`] = floatTensor(randoms(KV * past * D, 20 + i, 2), [1, KV, past, D]);
    feeds[`past_key_values.${i}.value`] = floatTensor(randoms(KV * past * D, 40 + i, 0.05), [1, KV, past, D]);
  }
  return feeds;
}

function visionFeeds(): Record<string, ort.Tensor> {
  const S = vision.imageSize;
  return {
    pixel_values: floatTensor(randoms(3 * S * S, 5), [1, 1, 3, S, S]),
    pixel_attention_mask: new ort.Tensor('bool', new Uint8Array(S * S).fill(1), [1, 1, S, S]),
  };
}

function compare(a: ort.InferenceSession.OnnxValueMapType, b: ort.InferenceSession.OnnxValueMapType): { maxAbs: number; scale: number } {
  let maxAbs = 0;
  let scale = 0;
  for (const name of Object.keys(a)) {
    const x = asFloat32(a[name] as ort.Tensor);
    const y = asFloat32(b[name] as ort.Tensor);
    if (x.length !== y.length) throw new Error(`${name}: ${x.length} vs ${y.length} values`);
    for (let i = 0; i < x.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
  }
  return { maxAbs, scale };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface CaseResult {
  name: string;
  best: Record<AttentionPath, number>;
  median: Record<AttentionPath, number>;
  maxAbs: number;
  scale: number;
}

async function runCase(
  name: string,
  sessions: Record<AttentionPath, ort.InferenceSession>,
  feeds: Record<string, ort.Tensor>,
): Promise<CaseResult> {
  const warm = { eager: await sessions.eager.run(feeds), fused: await sessions.fused.run(feeds) };
  const { maxAbs, scale } = compare(warm.eager, warm.fused);
  // Short cases: each sample is the mean of `inner` back-to-back runs (about 200 ms), so one
  // scheduling hiccup from other processes on this shared machine does not decide a sample.
  const probe = performance.now();
  await sessions.eager.run(feeds);
  const inner = Math.max(1, Math.round(200 / (performance.now() - probe)));
  const times: Record<AttentionPath, number[]> = { eager: [], fused: [] };
  for (let r = 0; r < runs; r++) {
    const order = r % 2 === 0 ? PATHS : [...PATHS].reverse();
    for (const p of order) {
      const t = performance.now();
      for (let k = 0; k < inner; k++) await sessions[p].run(feeds);
      times[p].push((performance.now() - t) / inner);
    }
  }
  const result: CaseResult = {
    name,
    best: { eager: Math.min(...times.eager), fused: Math.min(...times.fused) },
    median: { eager: median(times.eager), fused: median(times.fused) },
    maxAbs,
    scale,
  };
  const f = (x: number) => x.toFixed(1);
  const ok = maxAbs <= TOLERANCE ? 'ok' : 'FAIL';
  console.log(
    `${name.padEnd(44)} eager ${f(result.best.eager)} / ${f(result.median.eager)} ms   fused ${f(result.best.fused)} / ${f(result.median.fused)} ms   ` +
      `ratio best ${(result.best.fused / result.best.eager).toFixed(2)} median ${(result.median.fused / result.median.eager).toFixed(2)}   ` +
      `max|diff| ${maxAbs.toExponential(2)} (of max|eager| ${scale.toExponential(2)}) ${ok}`,
  );
  console.log(`${''.padEnd(44)} samples (mean of ${inner} runs each) ms: eager [${times.eager.map(f).join(', ')}] fused [${times.fused.map(f).join(', ')}]`);
  return result;
}

async function main(): Promise<void> {
  console.log(
    `# attention paths, ${dtype}, smolvlm2-256m width with ${layers} layers (real: decoder ${base.text.numLayers}, vision ${base.vision.numLayers}), ` +
      `lm_head ${text.vocabSize} rows (real ${base.text.vocabSize}); ${runs} interleaved runs per path after 1 warm-up; ` +
      `onnxruntime ${ort.env.versions?.common ?? '?'} cpu, threads ${process.env.VIGIL_THREADS ?? 'default'}, ${os.cpus().length} cores, node ${process.version}`,
  );
  console.log(`# columns: best / median ms per path; ratio = fused / eager; tolerance ${TOLERANCE} absolute`);
  const results: CaseResult[] = [];
  const t0 = performance.now();
  if (only.has('vision')) {
    const sessions = {
      eager: await buildSession('vision-eager', (ctx) => buildVisionGraph(ctx, vision, text.hiddenSize, { attention: 'eager' })),
      fused: await buildSession('vision-fused', (ctx) => buildVisionGraph(ctx, vision, text.hiddenSize, { attention: 'fused' })),
    };
    results.push(await runCase('(a) vision encoder, 1 frame 512x512', sessions, visionFeeds()));
    await sessions.eager.release();
    await sessions.fused.release();
  }
  const decoderCases: Array<[string, string, number, number]> = [
    ['frame', `(b) frame prefill: 77 new over ${args['frame-past']} past`, Number(args['frame-past']), 77],
    ['question', `(c) long prefill: ${args.question} new, no past`, 0, Number(args.question)],
    ['asked', `(c') question: ${args['question-tokens']} new over ${args['question-past']} past`, Number(args['question-past']), Number(args['question-tokens'])],
    ['decode', `(d) decode step: 1 new over ${args['decode-past']} past`, Number(args['decode-past']), 1],
  ];
  if (decoderCases.some(([key]) => only.has(key))) {
    const sessions = {
      eager: await buildSession('decoder-eager', (ctx) => buildDecoderGraph(ctx, text, { attention: 'eager' })),
      fused: await buildSession('decoder-fused', (ctx) => buildDecoderGraph(ctx, text, { attention: 'fused' })),
    };
    for (const [key, label, past, seq] of decoderCases) {
      if (only.has(key)) results.push(await runCase(label, sessions, decoderFeeds(past, seq)));
    }
    await sessions.eager.release();
    await sessions.fused.release();
  }
  console.log(`\n| case (${dtype}, ${layers} layers) | eager best / median ms | fused best / median ms | fused / eager (best, median) | max abs diff |`);
  console.log('|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.name} | ${r.best.eager.toFixed(1)} / ${r.median.eager.toFixed(1)} | ${r.best.fused.toFixed(1)} / ${r.median.fused.toFixed(1)} | ` +
        `${(r.best.fused / r.best.eager).toFixed(2)}, ${(r.median.fused / r.median.eager).toFixed(2)} | ${r.maxAbs.toExponential(1)} |`,
    );
  }
  console.log(`\n# total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (results.some((r) => r.maxAbs > TOLERANCE)) {
    console.log('# FAIL: a fused path disagrees with eager beyond the tolerance');
    process.exitCode = 1;
  }
}

await main();
