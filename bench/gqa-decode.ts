/**
 * Decode speed at a long context on fused exports (issue 16): one-token decode steps over a past of
 * --context tokens, on the existing probe (probe-random-smolvlm2-256m: GroupQueryAttention with RoPE
 * outside it, position_ids) and the model-builder-style probe (probe-random-smolvlm2-256m-gqa:
 * GroupQueryAttention do_rotary, no position_ids) in fp32, q4 (MatMulNBits) and q4f16.
 *
 *   node --import tsx bench/gqa-decode.ts [--context 5000] [--steps 12] [--cases eager-rope,gqa-fp32,gqa-q4,gqa-q4f16,shared-fp32,shared-q4]
 *
 * Cases 'eager-rope' and 'gqa-*' go through Vigil's Decoder.step as generation does (the past fed as
 * input, `present` = past + 1 written into a reused buffer: every step copies the whole KV).
 * 'shared-*' run the same -gqa graph directly with past and present bound to ONE buffer of capacity
 * context + steps (GroupQueryAttention's past_present_share_buffer mode: the new key/value are written
 * in place, nothing is copied); the first shared step's logits are compared with the Decoder's at the
 * same context (max |diff| printed), so the mode is known to compute the same thing. Vigil's Decoder
 * does not use that mode (its contract is present = past ++ new, a fresh length every call).
 * The past holds seeded random values (content does not change the cost). Every case is loaded
 * first; then 2 warm-up rounds and --steps timed rounds, each round one step of every case in a
 * rotating order (so load from other work hits all cases alike); median and best ms per step and
 * tokens/s from the median and the best; CPU ms per step (user + system of this process, every thread:
 * with VIGIL_ORT_SPINNING=0 that is the work done, and other processes disturb it less than wall time).
 */
import { parseArgs } from 'node:util';
import os from 'node:os';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import { emptyKvCache, KvCache } from '../src/model/kvCache.js';
import type { GraphDtype } from '../src/model/graphFiles.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';
import { int64Tensor } from '../src/model/tensors.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { fillKvRows } from './kvFill.js';
import { median } from './streamHarness.js';

const { values: args } = parseArgs({
  options: {
    context: { type: 'string', default: '5000' },
    steps: { type: 'string', default: '12' },
    cases: { type: 'string', default: 'eager-rope,gqa-fp32,gqa-q4,gqa-q4f16,shared-fp32,shared-q4' },
  },
});
const context = Number(args.context);
const steps = Number(args.steps);
const WARMUP = 2;

interface Case {
  label: string;
  model: string;
  dtype: GraphDtype;
  shared: boolean;
}

const CASES: Record<string, Case> = {
  'eager-rope': { label: 'probe-random-smolvlm2-256m fp32 (GQA, RoPE outside, position_ids)', model: 'probe-random-smolvlm2-256m', dtype: 'fp32', shared: false },
  'gqa-fp32': { label: '-gqa fp32 (GQA do_rotary, no position_ids)', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'fp32', shared: false },
  'gqa-q4': { label: '-gqa q4 (MatMulNBits)', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4', shared: false },
  'gqa-q4f16': { label: '-gqa q4f16 (float16 KV and logits)', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4f16', shared: false },
  'shared-fp32': { label: '-gqa fp32, past/present one buffer', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'fp32', shared: true },
  'shared-q4': { label: '-gqa q4, past/present one buffer', model: 'probe-random-smolvlm2-256m-gqa', dtype: 'q4', shared: true },
};



function embedOne(model: VisionLanguageModel, seed: number): ort.Tensor {
  const random = mulberry32(seed);
  const hidden = model.decoder.info.hiddenSize;
  return new ort.Tensor('float32', Float32Array.from({ length: hidden }, () => random() - 0.5), [1, 1, hidden]);
}

interface Prepared {
  c: Case;
  model: VisionLanguageModel;
  run: (step: number) => Promise<void>;
  note: () => string;
  samples: number[];
  /** CPU time (user + system, all threads) per step: less disturbed by other processes than wall time. */
  cpu: number[];
}

async function prepare(c: Case): Promise<Prepared> {
  const model = await VisionLanguageModel.load(buildProbeModel(c.model, { dtype: c.dtype }).dir, { dtype: c.dtype, queryTaps: 'off' });
  const info = model.decoder.info;
  const embeds = embedOne(model, 3);
  const past = emptyKvCache(info, context);
  fillKvRows(past, context, 11);
  if (!c.shared) {
    const into = emptyKvCache(info, context + 1);
    const run = async () => {
      await model.decoder.step({ inputsEmbeds: embeds, past, logits: 'last', presentInto: into });
    };
    return { c, model, run, note: () => '', samples: [], cpu: [] };
  }
  const reference = await model.decoder.step({ inputsEmbeds: embeds, past, logits: 'last' });
  const buffer = emptyKvCache(info, context + WARMUP + steps);
  fillKvRows(buffer, context, 11);
  const session = model.decoder.graph.session;
  let firstLogits: Float32Array | undefined;
  const run = async (s: number) => {
    const pastLen = context + s;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: embeds,
      attention_mask: int64Tensor(new Array<number>(pastLen + 1).fill(1), [1, pastLen + 1]),
      num_logits_to_keep: int64Tensor([1], []),
    };
    const fetches: Record<string, ort.Tensor | null> = { logits: null };
    buffer.layers.forEach((layer, i) => {
      feeds[`past_key_values.${i}.key`] = layer.key;
      feeds[`past_key_values.${i}.value`] = layer.value;
      fetches[`present.${i}.key`] = layer.key;
      fetches[`present.${i}.value`] = layer.value;
    });
    const out = await session.run(feeds, fetches as ort.InferenceSession.FetchesType);
    if (s === 0) firstLogits = out.logits!.data as Float32Array;
  };
  const note = () => {
    let diff = 0;
    for (let v = 0; v < reference.logits.length; v++) diff = Math.max(diff, Math.abs(reference.logits[v]! - firstLogits![v]!));
    // The first step's new key must be in the shared buffer itself, at row `context` of head 0.
    const row = (t: ort.Tensor) => (t.data as Float32Array | Uint16Array).slice(context * info.headDim, (context + 1) * info.headDim);
    const expected = row(reference.present.layers[0]!.key);
    const inPlace = row(buffer.layers[0]!.key).every((x, i) => x === expected[i]);
    return `; first step vs Decoder.step: max |logits diff| ${diff.toExponential(2)}; new key written in place: ${inPlace}`;
  };
  return { c, model, run, note, samples: [], cpu: [] };
}

const selected = args.cases!.split(',').map((name) => {
  const c = CASES[name];
  if (!c) throw new Error(`unknown case '${name}' (cases: ${Object.keys(CASES).join(', ')})`);
  return c;
});
process.stdout.write(`decode at ${context} tokens of context, ${steps} rounds after ${WARMUP} warm-up; ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(2)}\n`);
const prepared: Prepared[] = [];
for (const c of selected) prepared.push(await prepare(c));
// Rounds: one step of every case per round, the order rotating, so load from other work hits all alike.
for (let r = 0; r < WARMUP + steps; r++) {
  for (let k = 0; k < prepared.length; k++) {
    const p = prepared[(k + r) % prepared.length]!;
    const cpuStart = process.cpuUsage();
    const started = performance.now();
    await p.run(r);
    const wall = performance.now() - started;
    const cpu = process.cpuUsage(cpuStart);
    if (r >= WARMUP) {
      p.samples.push(wall);
      p.cpu.push((cpu.user + cpu.system) / 1000);
    }
  }
}
const rows: string[] = [];
for (const p of prepared) {
  const med = median(p.samples);
  const best = Math.min(...p.samples);
  const cpu = median(p.cpu);
  rows.push(`| ${p.c.label} | ${med.toFixed(1)} | ${best.toFixed(1)} | ${(1000 / med).toFixed(1)} | ${(1000 / best).toFixed(1)} | ${cpu.toFixed(1)} |`);
  process.stdout.write(`${p.c.label}: median ${med.toFixed(1)} ms, best ${best.toFixed(1)} ms, CPU ${cpu.toFixed(1)} ms${p.note()}\n`);
  await p.model.dispose();
}
process.stdout.write(`load at the end ${os.loadavg()[0]!.toFixed(2)}\n`);
process.stdout.write(`\n| decoder (smolvlm2-256m geometry, 30 layers) | ms / step (median) | best | tokens/s (median) | tokens/s (best) | CPU ms / step (median) |\n|---|---:|---:|---:|---:|---:|\n${rows.join('\n')}\n`);
