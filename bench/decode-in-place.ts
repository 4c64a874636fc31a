/**
 * Decode in place vs fetching `present` (issue 19): one-token decode steps over a past of each
 * --contexts length, the way generate() runs them.
 *
 *   node --import tsx bench/decode-in-place.ts [--contexts 1000,2500,5000,8000] [--steps 8] [--cases ...]
 *        [--configs 1:1,2:1,2:0 (onnxruntime threads:spinning)] [--new-tokens 1] [--out DIR]
 *
 * 'present' cases: Decoder.step fetching `present` (past + 1 token) into a reused buffer; every step
 * onnxruntime-node copies the whole context out into fresh memory (what Vigil did before).
 * 'in-place' cases: one KvBuffer of capacity context + steps; Decoder.stepRows fetches only the new
 * token's key/value rows (kv taps) and appends them (what generate() does now), with the export's
 * GroupQueryAttention ('inplace') or split decode attention ('split' cases and labels, Vigil's default since issue 19:
 * src/model/onnx/splitAttention.ts; float32 KV only, so not to q4f16).
 * Models (labels): probe-random-smolvlm2-256m (256m: GroupQueryAttention, RoPE outside) fp32, and its
 * _quantized (q8: int8 MatMulInteger weights) decoder, and its model-builder twin
 * probe-random-smolvlm2-256m-gqa (gqa: GroupQueryAttention do_rotary) fp32 / q4 / q4f16. The first in-place
 * step's logits are compared with the present step's (max |diff| printed).
 * Rounds rotate through every case of a context (load from other work hits them alike); median and
 * best ms per step, tokens/s, and % of the bandwidth bound: bytes a step must read (the decoder's
 * weights + the past KV) over this run's measured copy bandwidth (best of 10 128-MiB set() copies).
 * (8000 is the -gqa probes' limit: their cos/sin caches hold max_position_embeddings = 8192 rows.)
 * --out writes decode-in-place.json and decode-in-place.png (tokens/s vs context).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import type { GraphDtype } from '../src/model/graphFiles.js';
import { KvBuffer } from '../src/model/kvBuffer.js';
import { BufferPool } from '../src/model/bufferPool.js';
import { emptyKvCache, type KvCache } from '../src/model/kvCache.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';
import { type DecodeAttention, VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { fillKvRows } from './kvFill.js';
import { writeLineChartPng } from './lineChart.js';
import { median } from './streamHarness.js';

const { values: args } = parseArgs({
  options: {
    contexts: { type: 'string', default: '1000,2500,5000,8000' },
    steps: { type: 'string', default: '8' },
    cases: { type: 'string', default: 'eager-present,eager-inplace,eager-split,q8-inplace,q8-split,gqa-present,gqa-inplace,gqa-split,q4-inplace,q4-split,q4f16-inplace' },
    // onnxruntime threads:spinning per session, e.g. 1:1,2:1,2:0 (every case under each, interleaved in one process).
    // Default: the environment's (VIGIL_THREADS / VIGIL_ORT_SPINNING, else Vigil's defaults).
    configs: { type: 'string', default: '' },
    // Tokens per call: 1 = decode steps; e.g. 77 = a stream frame's prefill over a window (in-place cases then fetch the frame's rows, nothing appended).
    'new-tokens': { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const configs: Array<{ threads: string | undefined; spinning: string | undefined }> = args.configs
  ? args.configs.split(',').map((c) => {
      const [threads, spinning] = c.split(':');
      if (!/^\d+$/.test(threads ?? '') || (spinning !== '0' && spinning !== '1')) throw new Error(`--configs takes threads:spinning pairs such as 2:1, got '${c}'`);
      return { threads: threads!, spinning };
    })
  : [{ threads: process.env.VIGIL_THREADS, spinning: process.env.VIGIL_ORT_SPINNING }];
const contexts = args.contexts!.split(',').map(Number);
const newTokens = Number(args['new-tokens']);
const steps = Number(args.steps);
const WARMUP = 2;

interface Case {
  label: string;
  model: string;
  dtype: GraphDtype;
  inPlace: boolean;
  /** The decoder's attention as loaded (VisionLanguageModel.load's decodeAttention); default 'gqa'. */
  attention?: DecodeAttention;
}

const CASES: Record<string, Case> = {
  'eager-present': { label: '256m fp32, present', model: 'probe-random-smolvlm2-256m', dtype: 'fp32', inPlace: false },
  'eager-inplace': { label: '256m fp32, in place', model: 'probe-random-smolvlm2-256m', dtype: 'fp32', inPlace: true },
  'eager-split': { label: '256m fp32, split', model: 'probe-random-smolvlm2-256m', dtype: 'fp32', inPlace: true, attention: 'split' },
  'q8-split': { label: '256m q8, split', model: 'probe-random-smolvlm2-256m', dtype: 'q8', inPlace: true, attention: 'split' },
  'gqa-present': { label: 'gqa fp32, present', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'fp32', inPlace: false },
  'gqa-inplace': { label: 'gqa fp32, in place', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'fp32', inPlace: true },
  'gqa-split': { label: 'gqa fp32, split', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'fp32', inPlace: true, attention: 'split' },
  'q4-split': { label: 'gqa q4, split', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4', inPlace: true, attention: 'split' },
  'q4-present': { label: 'gqa q4, present', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4', inPlace: false },
  'q4-inplace': { label: 'gqa q4, in place', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4', inPlace: true },
  'q8-present': { label: '256m q8, present', model: 'probe-random-smolvlm2-256m', dtype: 'q8', inPlace: false },
  'q8-inplace': { label: '256m q8, in place', model: 'probe-random-smolvlm2-256m', dtype: 'q8', inPlace: true },
  'q4f16-present': { label: 'gqa q4f16, present', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4f16', inPlace: false },
  'q4f16-inplace': { label: 'gqa q4f16, in place', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4f16', inPlace: true },
};



/** Best copy bandwidth (GB/s) of a 128-MiB Float32Array set(), the bound's denominator. */
function copyBandwidth(): number {
  const a = new Float32Array(32 * 2 ** 20).fill(1);
  const b = new Float32Array(a.length);
  let best = Infinity;
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    b.set(a);
    best = Math.min(best, performance.now() - t);
  }
  return (a.byteLength / (best / 1000)) / 1e9;
}

/** Bytes of the decoder's weights: its .onnx file plus its external data files. */
function weightBytes(model: VisionLanguageModel): number {
  const file = model.decoder.graph.file;
  const dir = path.dirname(file);
  const base = path.basename(file);
  return fs.readdirSync(dir).filter((f) => f === base || f.startsWith(`${base}_data`) || f === `${base}.data`).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

const bandwidth = copyBandwidth();
process.stdout.write(`decode steps, ${steps} rounds after ${WARMUP} warm-up; ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(2)}; copy bandwidth ${bandwidth.toFixed(1)} GB/s\n`);
const selected = configs.flatMap(({ threads, spinning }) =>
  args.cases!.split(',').map((name) => {
    const c = CASES[name];
    if (!c) throw new Error(`unknown case '${name}' (cases: ${Object.keys(CASES).join(', ')})`);
    return { ...c, label: configs.length > 1 ? `${c.label}, ${threads} threads, spinning ${spinning === '1' ? 'on' : 'off'}` : c.label, threads, spinning };
  }),
);
const modelKey = (c: (typeof selected)[number]) => `${c.model}:${c.dtype}:${c.threads}:${c.spinning}:${c.attention ?? 'gqa'}`;
const models = new Map<string, VisionLanguageModel>();
for (const c of selected) {
  const key = modelKey(c);
  // Sessions read their threading from the environment when created (src/model/onnxGraph.ts).
  const setEnv = (name: string, value: string | undefined) => (value === undefined ? delete process.env[name] : (process.env[name] = value));
  setEnv('VIGIL_THREADS', c.threads);
  setEnv('VIGIL_ORT_SPINNING', c.spinning);
  if (!models.has(key)) models.set(key, await VisionLanguageModel.load(buildProbeModel(c.model, { dtype: c.dtype }).dir, { dtype: c.dtype, decodeAttention: c.attention ?? 'gqa' }));
  const model = models.get(key)!;
  if (c.inPlace && !model.decoder.info.kvTaps?.lengthsFromMask) throw new Error(`${c.label}: the decoder has no kv taps read from the mask (${model.queryTaps.state})`);
}

interface Row {
  context: number;
  label: string;
  medianMs: number;
  bestMs: number;
  boundMs: number;
  note: string;
}
const rows: Row[] = [];
const pool = new BufferPool(4 * 2 ** 30);
for (const context of contexts) {
  const prepared = await Promise.all(
    selected.map(async (c) => {
      const model = models.get(modelKey(c))!;
      const info = model.decoder.info;
      const random = mulberry32(3);
      const embeds = new ort.Tensor('float32', Float32Array.from({ length: newTokens * info.hiddenSize }, () => random() - 0.5), [1, newTokens, info.hiddenSize]);
      const kvBytes = 2 * info.numLayers * info.numKvHeads * context * info.headDim * (info.type === 'float16' ? 2 : 4);
      const boundMs = ((weightBytes(model) + kvBytes) / (bandwidth * 1e9)) * 1000;
      const samples: number[] = [];
      if (!c.inPlace) {
        const past = emptyKvCache(info, context);
        fillKvRows(past, context, 11);
        const into = emptyKvCache(info, context + newTokens);
        const run = async () => {
          await model.decoder.step({ inputsEmbeds: embeds, past, logits: 'last', presentInto: into });
        };
        const reference = async () => (await model.decoder.step({ inputsEmbeds: embeds, past, logits: 'last' })).logits;
        return { c, run, samples, boundMs, reference, dispose: () => undefined };
      }
      if (newTokens > 1) {
        // A frame's prefill as ingest runs it: the window's past as it is, only the frame's rows fetched.
        const past = emptyKvCache(info, context);
        fillKvRows(past, context, 11);
        const call = () => model.decoder.stepRows({ inputsEmbeds: embeds, past, kv: 'new', logits: 'last' });
        const run = async () => {
          await call();
        };
        return { c, run, samples, boundMs, reference: async () => (await call()).logits, dispose: () => undefined };
      }
      const kv = new KvBuffer(info, context + WARMUP + steps + 1, pool);
      const past = emptyKvCache(info, context);
      fillKvRows(past, context, 11);
      kv.append(past);
      const run = async () => {
        const out = await model.decoder.stepRows({ inputsEmbeds: embeds, past: kv.cache, pastLength: kv.length, kv: 'new', logits: 'last' });
        kv.append(out.newRows!);
      };
      const reference = async () => (await model.decoder.stepRows({ inputsEmbeds: embeds, past: kv.cache, pastLength: kv.length, kv: 'new', logits: 'last' })).logits;
      return { c, run, samples, boundMs, reference, dispose: () => kv.dispose() };
    }),
  );
  // Same model and context: the in-place step must compute the present step's logits.
  const notes = new Map<string, string>();
  for (const p of prepared.filter((q) => q.c.inPlace)) {
    // The same file's present path (split attention is a rewrite of the same weights).
    const sameFile = (q: (typeof prepared)[number]) => modelKey({ ...q.c, attention: 'gqa' }) === modelKey({ ...p.c, attention: 'gqa' });
    const twin = prepared.find((q) => !q.c.inPlace && sameFile(q));
    if (!twin) continue;
    const [a, b] = [await twin.reference(), await p.reference()];
    let diff = 0;
    for (let v = 0; v < a.length; v++) diff = Math.max(diff, Math.abs(a[v]! - b[v]!));
    notes.set(p.c.label, `max |logit diff| vs present ${diff.toExponential(1)}`);
  }
  for (let r = 0; r < WARMUP + steps; r++) {
    for (let k = 0; k < prepared.length; k++) {
      const p = prepared[(k + r) % prepared.length]!;
      const started = performance.now();
      await p.run();
      if (r >= WARMUP) p.samples.push(performance.now() - started);
    }
  }
  for (const p of prepared) {
    const row = { context, label: p.c.label, medianMs: median(p.samples), bestMs: Math.min(...p.samples), boundMs: p.boundMs, note: notes.get(p.c.label) ?? '' };
    rows.push(row);
    process.stdout.write(`${context} ${row.label}: median ${row.medianMs.toFixed(1)} ms (${(1000 / row.medianMs).toFixed(1)} tokens/s), best ${row.bestMs.toFixed(1)}, bound ${row.boundMs.toFixed(1)} ms ${row.note}\n`);
    p.dispose();
  }
}
process.stdout.write(`load at the end ${os.loadavg()[0]!.toFixed(2)}\n\n`);
process.stdout.write('| context | decoder, KV hand-over | ms / step (median) | best | tokens/s (median) | x present (median) | % of copy-bandwidth bound (median) | check |\n|---:|---|---:|---:|---:|---:|---:|---|\n');
for (const row of rows) {
  const twin = rows.find((r) => r.context === row.context && r.label === row.label.replace(/in place|split/, 'present') && r !== row);
  const speedup = twin ? (twin.medianMs / row.medianMs).toFixed(2) : '';
  process.stdout.write(`| ${row.context} | ${row.label} | ${row.medianMs.toFixed(1)} | ${row.bestMs.toFixed(1)} | ${(1000 / row.medianMs).toFixed(1)} | ${speedup} | ${((100 * row.boundMs) / row.medianMs).toFixed(0)}% | ${row.note} |\n`);
}
for (const model of models.values()) await model.dispose();
if (args.out) {
  fs.mkdirSync(args.out, { recursive: true });
  fs.writeFileSync(path.join(args.out, 'decode-in-place.json'), JSON.stringify({ bandwidthGBs: bandwidth, rows }, null, 2));
  const series = selected.map((c) => ({ name: c.label, points: rows.filter((r) => r.label === c.label).map((r): [number, number] => [r.context, 1000 / r.medianMs]) }));
  await writeLineChartPng({ title: 'Decode tokens/s vs context (median step)', xLabel: 'context tokens', panels: [{ yLabel: 'tokens/s', series }] }, path.join(args.out, 'decode-in-place.png'));
  process.stdout.write(`wrote ${args.out}/decode-in-place.json and .png\n`);
}
