/**
 * Question latency vs stream length at real geometry (probe-random-smolvlm2-256m): time to first
 * token and total answer time for rekv (r = 16, 64), uniform (r = 64) and full recompute, split by
 * phase (pass 1, index search, chunk load, re-rotation + assembly, prefill, decode tokens/s).
 * Stream time is fast-forwarded with synthetic chunks (bench/streamHarness.ts): latency depends on
 * the memory's size and the context's length, not on what the frames show.
 *
 *   node --import tsx bench/question-latency.ts [--minutes 5,15,30,60] [--full-minutes 1,2.5,5]
 *        [--repeats 3] [--tokens 8] [--full-max-tokens 40000] [--decode in-place,present] [--out DIR]
 *
 * `full` puts every stored frame in context, so it runs only where that fits --full-max-tokens
 * (its KV is 46 KiB per token at this geometry, and each decode step copies it in and out); the
 * skipped lengths are reported with the KV they would need. Design target: rekv TTFT at the
 * longest length within 1.2x of the shortest.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { type AnswerMode, type SessionAnswer, StreamSession } from '../src/engine/streamSession.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { writeLineChartPng } from './lineChart.js';
import { fastForward, median, parseMinutes } from './streamHarness.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5,15,30,60' },
    'full-minutes': { type: 'string', default: '1,2.5,5' },
    repeats: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '8' },
    'full-max-tokens': { type: 'string', default: '40000' },
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    window: { type: 'string', default: '16' },
    // Decode modes (VIGIL_DECODE), each method's answers alternating between them: 'in-place,present' compares the two.
    decode: { type: 'string', default: 'in-place' },
    out: { type: 'string' },
  },
});
const mainMinutes = parseMinutes(values.minutes!);
const fullMinutes = parseMinutes(values['full-minutes']!);
const lengths = [...new Set([...mainMinutes, ...fullMinutes])].sort((a, b) => a - b);
const repeats = Number(values.repeats);
const maxNewTokens = Number(values.tokens);
const fullMaxTokens = Number(values['full-max-tokens']);
const QUESTION = 'What happened right before the person left the room?';
const decodeModes = values.decode!.split(',');
for (const mode of decodeModes) if (mode !== 'in-place' && mode !== 'present') throw new Error(`--decode takes in-place and/or present, got '${mode}'`);

interface Method {
  name: string;
  mode: AnswerMode;
  retrieve: number;
}
const METHODS: Method[] = [
  { name: 'rekv r=16', mode: 'rekv', retrieve: 16 },
  { name: 'rekv r=64', mode: 'rekv', retrieve: 64 },
  { name: 'uniform r=64', mode: 'uniform', retrieve: 64 },
  { name: 'full', mode: 'full', retrieve: 64 },
];

interface Row {
  minutes: number;
  method: string;
  skipped?: string;
  contextTokens?: number;
  chunksLoaded?: number;
  layerSections?: number;
  ttftMs?: number;
  totalMs?: number;
  pass1Ms?: number;
  searchMs?: number;
  chunkLoadMs?: number;
  assembleMs?: number;
  prefillMs?: number;
  decodeTokensPerSecond?: number;
  tokens?: number;
}

function summarize(minutes: number, method: string, answers: SessionAnswer[]): Row {
  const m = (f: (a: SessionAnswer) => number) => median(answers.map(f));
  return {
    minutes,
    method,
    contextTokens: answers[0]!.contextTokens,
    chunksLoaded: new Set(answers[0]!.layerChunkIds.flat()).size,
    layerSections: answers[0]!.layerChunkIds.reduce((n, ids) => n + ids.length, 0),
    ttftMs: m((a) => a.ttftMs),
    totalMs: m((a) => a.totalMs),
    pass1Ms: m((a) => a.phases.pass1Ms),
    searchMs: m((a) => a.phases.searchMs),
    chunkLoadMs: m((a) => a.phases.chunkLoadMs),
    assembleMs: m((a) => a.phases.assembleMs),
    prefillMs: m((a) => a.prefillMs),
    decodeTokensPerSecond: m((a) => a.decodeTokensPerSecond),
    tokens: m((a) => a.tokenIds.length),
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-qlat-'));
const outDir = values.out ? path.resolve(values.out) : dir;
fs.mkdirSync(outDir, { recursive: true });
const rows: Row[] = [];
const started = performance.now();
try {
  const model = await VisionLanguageModel.load(resolveModelDir(values.model!));
  const session = await StreamSession.open(model, { dir: path.join(dir, 'memory'), windowFrames: Number(values.window) });
  const kvBytesPerToken = (() => {
    const { numLayers, numKvHeads, headDim } = session.encoder.shape;
    return 2 * numLayers * numKvHeads * headDim * 4;
  })();
  for (const minutes of lengths) {
    await fastForward(session, minutes * 60, 1);
    const stats = session.stats();
    for (const method of METHODS) {
      const isFull = method.mode === 'full';
      if (isFull ? !fullMinutes.includes(minutes) && !mainMinutes.includes(minutes) : !mainMinutes.includes(minutes)) continue;
      if (isFull) {
        const tokens = stats.storedChunks * session.encoder.frameTokenIds(minutes * 60).length;
        if (tokens > fullMaxTokens) {
          rows.push({ minutes, method: method.name, skipped: `${tokens} tokens > --full-max-tokens ${fullMaxTokens} (${(tokens * kvBytesPerToken / 2 ** 30).toFixed(1)} GiB of KV)` });
          continue;
        }
      }
      const ask = (decode: string) => {
        process.env.VIGIL_DECODE = decode;
        return session.ask({ question: QUESTION, mode: method.mode, retrieve: method.retrieve, maxNewTokens });
      };
      // One answer first, not timed: it grows the pooled buffers and onnxruntime's arena to this
      // context's size (a cold first question at a new size pays page faults: docs/PERFORMANCE.md).
      for (const decode of decodeModes) await ask(decode);
      const answers = new Map<string, SessionAnswer[]>(decodeModes.map((d) => [d, []]));
      for (let r = 0; r < repeats; r++) for (const decode of decodeModes) answers.get(decode)!.push(await ask(decode));
      for (const decode of decodeModes) {
        const row = summarize(minutes, decodeModes.length > 1 ? `${method.name} (${decode})` : method.name, answers.get(decode)!);
        rows.push(row);
        process.stderr.write(`${minutes} min ${row.method}: TTFT ${row.ttftMs!.toFixed(0)} ms, ${row.contextTokens} context tokens, ${row.decodeTokensPerSecond!.toFixed(1)} tokens/s (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
      }
    }
  }
  await session.dispose();
  await model.dispose();

  const out = process.stdout;
  const f = (x: number | undefined, digits = 1) => (x === undefined ? '' : x.toFixed(digits));
  out.write(`${values.model}, window ${values.window} frames, question "${QUESTION}", ${maxNewTokens} new tokens at most, median of ${repeats} after one untimed answer per method and length\n\n`);
  out.write('| stream min | method | context tokens | chunks (layer sections) loaded | pass 1 ms | search ms | chunk load ms | assembly ms | prefill ms | **TTFT ms** | decode tok/s | total ms |\n');
  out.write('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) {
    if (r.skipped) out.write(`| ${r.minutes} | ${r.method} | not run: ${r.skipped} ||||||||||\n`);
    else out.write(`| ${r.minutes} | ${r.method} | ${r.contextTokens} | ${r.chunksLoaded} (${r.layerSections}) | ${f(r.pass1Ms)} | ${f(r.searchMs, 2)} | ${f(r.chunkLoadMs)} | ${f(r.assembleMs)} | ${f(r.prefillMs)} | **${f(r.ttftMs)}** | ${f(r.decodeTokensPerSecond)} | ${f(r.totalMs)} |\n`);
  }
  const ttft = (method: string, minutes: number) => rows.find((r) => r.method === method && r.minutes === minutes && !r.skipped)?.ttftMs;
  const first = mainMinutes[0]!;
  const last = mainMinutes.at(-1)!;
  out.write('\n');
  for (const m of METHODS.filter((x) => x.mode !== 'full')) {
    const a = ttft(m.name, first);
    const b = ttft(m.name, last);
    if (a && b) out.write(`${m.name}: TTFT at ${last} min / at ${first} min = ${(b / a).toFixed(3)}${m.mode === 'rekv' ? ' (target <= 1.2)' : ''}\n`);
  }
  const full = rows.filter((r) => r.method === 'full' && !r.skipped);
  if (full.length >= 2) {
    const a = full[0]!;
    const b = full.at(-1)!;
    out.write(`full: TTFT ${f(a.ttftMs, 0)} ms at ${a.minutes} min -> ${f(b.ttftMs, 0)} ms at ${b.minutes} min (x${(b.ttftMs! / a.ttftMs!).toFixed(2)} for x${(b.minutes / a.minutes).toFixed(2)} stream time)\n`);
  }
  out.write(`${((performance.now() - started) / 1000).toFixed(0)} s in all\n`);
  const png = path.join(outDir, 'question-latency.png');
  await writeLineChartPng(
    {
      title: `Time to first token vs stream length (${values.model})`,
      xLabel: 'stream time (minutes)',
      panels: [
        {
          yLabel: 'TTFT (ms, log scale)',
          yScale: 'log',
          series: METHODS.map((m) => ({ name: m.name, points: rows.filter((r) => r.method === m.name && !r.skipped).map((r) => [r.minutes, r.ttftMs!] as [number, number]) })),
        },
      ],
    },
    png,
  );
  fs.writeFileSync(path.join(outDir, 'question-latency.json'), JSON.stringify({ options: values, rows }, null, 2));
  out.write(`plot: ${png}\n`);
} finally {
  fs.rmSync(path.join(dir, 'memory'), { recursive: true, force: true });
}
