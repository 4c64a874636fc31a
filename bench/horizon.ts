/**
 * Memory horizon at smolvlm2-256m geometry (issue 15 "Targets"): how much stream time a budget holds
 * for a busy and a camera-like scene, and what RSS, index RAM and question TTFT do as history grows.
 *
 *   node --import tsx bench/horizon.ts --scene busy|camera [--days 7] [--scale 20] [--budget 20GB]
 *        [--keep-full-sec 1800] [--kv-share 0.4] [--points 1h,end] [--model probe-needle-256m]
 *        [--repeats 5] [--out DIR] [--keep DIR]
 *   node --import tsx bench/horizon.ts --real-frames 300 [--scene busy]   # fast-forward vs real encode
 *   node --import tsx bench/horizon.ts --gate-only [--scene camera]       # the frame gate on the camera scene
 *   node --import tsx bench/horizon.ts --fidelity --model probe-random-smolvlm2-256m --days 0.5 --scale 50
 *        # pass-2 logits per tier against the exact KV (src/eval/longFidelity.ts)
 *
 * Per point (a history length): the stream is built by fast-forward (src/eval/longStream.ts: the
 * scene's frames encoded for real a few times, every chunk through StreamSession.addEncodedChunk
 * under the budget with background demotion, history older than the KV tiers straight into the
 * archive tier when the engine has one, needles encoded for real), closed, and measured in a FRESH
 * child process (node --expose-gc, as bench/restart.ts): the model loaded and an empty stream asked
 * once (RSS baseline), then the stream opened and its needles asked `--repeats` times each (median
 * TTFT), RSS after a GC, the index's RAM by its own accounting, the horizon and bytes by tier.
 *
 * --scale F divides the budget, keepFullSec and every point's stream length by F (a run at full scale
 * writes terabytes of float32 KV first). Every band of the horizon is proportional to the budget
 * (keepFullSec scaled with it), so horizon(full) = F x horizon(scaled); run two scales to see it.
 * Points: '1h' (= 3600/F s of scaled stream), 'end' (= days x 86400 / F), or N[smhd] values.
 *
 * Prints one JSON line per point on stdout (progress on stderr); with --out also writes
 * horizon-<scene>-<scale>.json and a PNG of the horizon by tier.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseByteSize } from '../common/byteSize.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { StreamSession } from '../src/engine/streamSession.js';
import { cameraGatePattern, DEFAULT_CAMERA, FRAME_H, FRAME_W, type LongNeedle, type LongScene, noiseFrame, type RawRgb } from '../src/eval/longScene.js';
import { photoFootage } from '../src/eval/photoFootage.js';
import { askNeedle, buildLongStream, tierOf } from '../src/eval/longStream.js';
import { median } from '../src/eval/metrics.js';
import { tierFidelity } from '../src/eval/longFidelity.js';
import { preprocessVideoFrame } from '../src/model/preprocess/imagePreprocessor.js';
import { sharedBufferPool } from '../src/model/bufferPool.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { writeLineChartPng } from './lineChart.js';

const MiB = 2 ** 20;
const log = (line: string) => process.stderr.write(`${line}\n`);
const round1 = (x: number) => Math.round(x * 10) / 10;

const { values } = parseArgs({
  options: {
    scene: { type: 'string', default: 'busy' },
    days: { type: 'string', default: '7' },
    scale: { type: 'string', default: '20' },
    budget: { type: 'string', default: '20GB' },
    'keep-full-sec': { type: 'string', default: '1800' },
    'kv-share': { type: 'string', default: '0.4' },
    points: { type: 'string', default: '1h,end' },
    model: { type: 'string', default: 'probe-needle-256m' },
    repeats: { type: 'string', default: '5' },
    retrieve: { type: 'string', default: '4' },
    'real-frames': { type: 'string', default: '0' },
    'gate-only': { type: 'boolean', default: false },
    fidelity: { type: 'boolean', default: false },
    /** noise | scene | photo (busy footage made from two photographs: --photos A.jpg,B.jpg, default the Rust book's JPEGs) */
    'busy-frames': { type: 'string', default: 'noise' },
    photos: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'string' },
    // Internal: the measuring child.
    child: { type: 'string' },
    stream: { type: 'string' },
    streams: { type: 'string' },
    needles: { type: 'string' },
  },
});
/** Photo footage for --busy-frames photo, rendered on first use (busyOptions). */
let photoFrames: RawRgb[] | null = null;

interface NeedleSpec extends LongNeedle {
  label: string;
  chunkId: number | undefined;
}

const NEEDLE_SET: Array<Pick<LongNeedle, 'background' | 'square'>> = [
  { background: 'red', square: 'green' },
  { background: 'blue', square: 'orange' },
  { background: 'yellow', square: 'magenta' },
  { background: 'cyan', square: 'white' },
];

/** The random-geometry model's questions (as bench/tier-fidelity.ts). */
const RANDOM_QUESTIONS = ['What is happening in the video?', 'What color is the car on the left?', 'Where did the person put the red box?'];

function seconds(text: string, endS: number, scale: number): number {
  if (text === 'end') return endS;
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(text);
  if (!m) throw new Error(`--points: '${text}' is not 'end' or N[smhd]`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Math.round((Number(m[1]) * unit) / scale);
}

if (values.child === 'rss') await child();
else if (values.child === 'ttft') await ttftChild();
else await parent();

async function parent(): Promise<void> {
  const scene = values.scene as LongScene;
  if (scene !== 'busy' && scene !== 'camera') throw new Error(`--scene busy|camera, got '${values.scene}'`);
  const scale = Number(values.scale);
  const days = Number(values.days);
  const budget = parseByteSize(values.budget, '--budget');
  const keepFullSec = Number(values['keep-full-sec']);
  const kvShare = Number(values['kv-share']);
  const repeats = Number(values.repeats);
  const modelDir = resolveModelDir(values.model!);
  const camera = scene === 'camera' ? cameraGatePattern(DEFAULT_CAMERA) : undefined;
  const gate = camera
    ? {
        sampled: camera.sampled,
        encoded: camera.encoded.length,
        encodedPct: round1((1000 * camera.encoded.length) / camera.sampled) / 10,
        periodEncoded: camera.periodOffsets.length,
        periodS: camera.spec.eventEverySec,
        steadyEncodedPct: round1((1000 * camera.periodOffsets.length) / camera.spec.eventEverySec) / 10,
        events: camera.events,
        eventsKept: camera.eventsKept,
        periodic: camera.periodic,
        gateMsPerFrame: Math.round(camera.gateMsPerFrame * 100) / 100,
      }
    : null;
  if (gate) log(`gate on the camera scene: ${JSON.stringify(gate)}`);
  if (values['gate-only']) {
    process.stdout.write(`${JSON.stringify({ scene, gate })}\n`);
    return;
  }
  if (values.fidelity) {
    await fidelity(modelDir, scene, days, scale, budget, keepFullSec, kvShare);
    return;
  }
  const realFrames = Number(values['real-frames']);
  if (realFrames > 0) {
    await realVsFastForward(modelDir, scene, realFrames, Number(values.retrieve));
    return;
  }
  const endS = Math.round((days * 86400) / scale);
  const points = values.points!.split(',').map((p) => ({ name: p, durationS: seconds(p, endS, scale) }));
  const root = values.keep ? path.resolve(values.keep) : fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-'));
  const scaledBudget = Math.round(budget / scale);
  const scaledKeepFull = Math.round(keepFullSec / scale);
  const rows: Array<Record<string, unknown>> = [];
  const built: Array<{ dir: string; needle: NeedleSpec }> = [];
  const model = await VisionLanguageModel.load(modelDir);
  try {
    for (const point of points) {
      const d = point.durationS;
      // Needles: one in the float32 band (half keepFullSec old), one at 25% of the stream (kivi4 or
      // archive or forgotten, as the budget decides), one at 75%.
      const place = [
        { label: 'recent', t: Math.max(2, d - 1 - Math.round(Math.min(scaledKeepFull, d / 2) / 2)) },
        { label: 'depth 25%', t: Math.max(3, Math.round(d * 0.25)) },
        { label: 'depth 75%', t: Math.max(4, Math.round(d * 0.75)) },
      ];
      // (a short point keeps the needles that fit, one second apart at least)
      const fit = place.filter((p, i) => p.t < d - 1 && place.slice(0, i).every((q) => Math.abs(q.t - p.t) > 1));
      const needles: NeedleSpec[] = fit.map((p, i) => ({ ...p, seconds: 1, ...NEEDLE_SET[i]!, chunkId: undefined }));
      const dir = path.join(root, `${scene}-${point.name}-s${scale}`);
      log(`point ${point.name}: ${d} s of ${scene} stream, budget ${(scaledBudget / 1e6).toFixed(0)} MB, keepFullSec ${scaledKeepFull}`);
      let lastPct = -1;
      const build = await buildLongStream(model, {
        dir,
        scene,
        durationS: d,
        needles,
        budgetBytes: scaledBudget,
        keepFullSec: scaledKeepFull,
        kvShare,
        ...busyOptions(),
        ...(camera ? { camera } : {}),
        onProgress: (done, total, label) => {
          const pct = Math.floor((100 * done) / total);
          if (pct >= lastPct + 10) {
            lastPct = pct;
            log(`  ${pct}% ${label}`);
          }
        },
      });
      needles.forEach((n, i) => (n.chunkId = build.needleChunkIds[i]));
      const stats = build.session.store.stats();
      const spans = build.session.store.tierSpans();
      const horizon = build.session.horizon();
      const tiers = needles.map((n) => tierOf(spans, n.chunkId, stats.lastChunkId));
      await build.session.dispose();
      log(`  built in ${build.buildS.toFixed(0)} s (${JSON.stringify(build.written)}); RSS in a fresh process`);
      const measured = await runChild(['--child', 'rss', '--stream', dir, '--model', modelDir, '--needles', JSON.stringify(needles), '--retrieve', String(values.retrieve)]);
      const heldS = horizon.from !== null && horizon.to !== null ? horizon.to - horizon.from + 1 : 0;
      const row = {
        scene,
        point: point.name,
        scale,
        durationS: d,
        budgetBytes: scaledBudget,
        keepFullSec: scaledKeepFull,
        chunks: build.plan.length,
        written: build.written,
        archiveAvailable: build.archiveAvailable,
        buildS: round1(build.buildS),
        heldS,
        heldFullScaleDays: round1((heldS * scale) / 86400 * 100) / 100,
        saturated: horizon.forgottenBefore !== null,
        spans: horizon.spans.map((s) => ({ tier: s.tier, seconds: s.to - s.from + 1, chunks: s.chunks })),
        bytesByDtype: stats.bytesByDtype,
        diskBytes: stats.diskBytes,
        budgetUsedPct: round1((100 * stats.diskBytes) / scaledBudget),
        recordBytes: build.recordBytes,
        stillBytes: build.stillBytes,
        busyFrames: scene === 'busy' ? values['busy-frames'] : null,
        archiveBytesPerChunk: stats.chunkCount > 0 && (stats.bytesByDtype as Record<string, number>).archive ? Math.round((stats.bytesByDtype as Record<string, number>).archive! / (horizon.spans.find((x) => x.tier === 'archive')?.chunks ?? 1)) : null,
        needleTiers: Object.fromEntries(needles.map((n, i) => [n.label, tiers[i]])),
        gate,
        ...measured,
      };
      rows.push(row);
      built.push({ dir, needle: needles[0]! });
      log(JSON.stringify(row));
    }
    // TTFT: every point's stream open in ONE process, the recent (float32) needle asked of each in
    // turn, `repeats` rounds: the shared VM's load hits every point alike; ratios are per round.
    log(`TTFT: ${built.length} streams interleaved, ${repeats} rounds`);
    const ttft = await runChild(['--child', 'ttft', '--streams', JSON.stringify(built), '--model', modelDir, '--repeats', String(repeats), '--retrieve', String(values.retrieve)]);
    const perPoint = (ttft.points ?? []) as Array<Record<string, unknown>>;
    rows.forEach((row, i) => Object.assign(row, { ttft: perPoint[i] ?? null }));
    for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
    if (!values.keep) for (const b of built) fs.rmSync(b.dir, { recursive: true, force: true });
  } finally {
    await model.dispose();
    if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
  }
  if (values.out) {
    fs.mkdirSync(values.out, { recursive: true });
    const base = path.join(values.out, `horizon-${scene}-s${scale}`);
    fs.writeFileSync(`${base}.json`, `${JSON.stringify(rows, null, 2)}\n`);
    const tiersSeen = [...new Set(rows.flatMap((r) => (r.spans as Array<{ tier: string }>).map((s) => s.tier)))];
    await writeLineChartPng(
      {
        title: `Horizon by tier, ${scene} scene, budget ${values.budget} / ${scale}`,
        xLabel: 'stream time fed (h, scaled run)',
        panels: [
          {
            yLabel: 'held (h, scaled run)',
            series: tiersSeen.map((tier) => ({
              name: tier,
              points: rows.map((r) => [(r.durationS as number) / 3600, ((r.spans as Array<{ tier: string; seconds: number }>).find((s) => s.tier === tier)?.seconds ?? 0) / 3600] as [number, number]),
            })),
          },
          { yLabel: 'RSS (MiB)', series: [{ name: 'RSS', points: rows.map((r) => [(r.durationS as number) / 3600, (r.rssStreamMiB as number) ?? NaN] as [number, number]) }] },
        ],
      },
      `${base}.png`,
    );
    log(`wrote ${base}.json, ${base}.png`);
  }
}

interface ChildResult {
  [field: string]: unknown;
}

function runChild(childArgs: string[]): Promise<ChildResult> {
  const self = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, '--expose-gc', self, ...childArgs];
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    proc.on('close', (code) => {
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
      resolve(line ? (JSON.parse(line) as ChildResult) : { error: `child exited with ${code} and no result` });
    });
  });
}

function gcRss(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  return process.memoryUsage().rss;
}

async function child(): Promise<void> {
  const out: Record<string, unknown> = {};
  const needles = JSON.parse(values.needles!) as NeedleSpec[];
  const repeats = 1;
  const retrieve = Number(values.retrieve);
  const model = await VisionLanguageModel.load(values.model!);
  const emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-empty-'));
  try {
    const empty = await StreamSession.open(model, { dir: emptyDir, gate: 'off' });
    // Per-frame encode time (vision + prefill over a window of noise frames), for the archive's allowance.
    const image = await preprocessVideoFrame(noiseFrame(5), model.imageConfig, model.imageConfig.tileSize ?? 64);
    const encodeMs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const s = performance.now();
      await empty.addFrame(image, i);
      encodeMs.push(performance.now() - s);
    }
    out.encodeMsPerFrame = round1(median(encodeMs.slice(1)));
    await empty.ask({ question: 'What color was the square on the red screen?', retrieve, maxNewTokens: 1 });
    const before = gcRss();
    out.poolRetainedEmptyMiB = round1(sharedBufferPool.retainedBytes / MiB);
    out.rssEmptyMiB = round1(before / MiB);
    await empty.dispose();

    let t = performance.now();
    const session = await StreamSession.open(model, { dir: values.stream! });
    out.openMs = round1(performance.now() - t);
    // RSS after each step (after a GC), to attribute what the questions add over the open stream.
    // [step, RSS, of which the shared buffer pool's retained scratch buffers, all ArrayBuffers] in MiB.
    const rssAt = (step: string): [string, number, number, number] => [step, round1(gcRss() / MiB), round1(sharedBufferPool.retainedBytes / MiB), round1(process.memoryUsage().arrayBuffers / MiB)];
    const rssSteps: Array<[string, number, number, number]> = [rssAt('open')];
    const stats = session.store.stats();
    const spans = session.store.tierSpans();
    // Warm-up question (one-off costs of the first question at this context size).
    await askNeedle(session, 'magenta', 'unknown', retrieve, 0);
    rssSteps.push(rssAt('warm-up question, archive left out'));
    await askNeedle(session, 'magenta', 'unknown', retrieve);
    rssSteps.push(rssAt('warm-up question'));
    const asked: Array<Record<string, unknown>> = [];
    for (const n of needles) {
      const runs = [];
      for (let i = 0; i < repeats; i++) runs.push(await askNeedle(session, n.background, n.square, retrieve));
      const a = runs[0]!;
      asked.push({
        label: n.label,
        tier: tierOf(spans, n.chunkId, stats.lastChunkId),
        correct: a.correct,
        answer: a.answer,
        margin: a.margin === null ? null : Math.round(a.margin * 100) / 100,
        ttftMs: round1(median(runs.map((r) => r.ttftMs))),
        retrievalMs: round1(median(runs.map((r) => r.retrievalMs))),
        loadMs: round1(median(runs.map((r) => r.loadMs))),
        prefillMs: round1(median(runs.map((r) => r.prefillMs))),
        archive: a.archive,
      });
      rssSteps.push(rssAt(n.label));
    }
    out.needles = asked;
    out.rssSteps = rssSteps;
    t = performance.now();
    const after = gcRss();
    out.rssStreamMiB = round1(after / MiB);
    out.poolRetainedMiB = round1(sharedBufferPool.retainedBytes / MiB);
    out.rssMiB = round1((after - before) / MiB);
    out.peakRssMiB = round1((process.resourceUsage().maxRSS * 1024) / MiB);
    const index = session.index.stats();
    const recent = index.layers[0]?.size ?? 0;
    const indexRam = (index.sealed?.ramBytes ?? 0) + recent * index.layers.length * (session.index.dim * 4 + 12);
    out.index = { chunks: index.size, sealedBlocks: index.sealed?.blocks ?? 0, sealedChunks: index.sealed?.chunks ?? 0, recentChunks: recent, ramMiB: round1(indexRam / MiB), sealedRamBytesPerChunk: index.sealed && index.sealed.chunks > 0 ? round1(index.sealed.ramBytes / index.sealed.chunks) : null };
    await session.dispose();
  } finally {
    fs.rmSync(emptyDir, { recursive: true, force: true });
  }
  await model.dispose();
  // Exit once the line is flushed (a pipe is written asynchronously: exit() could cut it).
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

async function ttftChild(): Promise<void> {
  const streams = JSON.parse(values.streams!) as Array<{ dir: string; needle: NeedleSpec }>;
  const repeats = Number(values.repeats);
  const retrieve = Number(values.retrieve);
  const model = await VisionLanguageModel.load(values.model!);
  const sessions = [];
  for (const s of streams) sessions.push(await StreamSession.open(model, { dir: s.dir }));
  // Warm-up: one question per stream.
  for (const [i, session] of sessions.entries()) await askNeedle(session, streams[i]!.needle.background, streams[i]!.needle.square, retrieve);
  // Two settings: the default (archived chunks retrieval picks are re-encoded, at most 8) and
  // maxReencode 0 (the archive left out: the KV tiers' own cost).
  const runs: NeedleAnswerRow[][] = sessions.map(() => []);
  const kvOnly: NeedleAnswerRow[][] = sessions.map(() => []);
  // The per-frame encode time the archive's allowance is counted in, measured in the same rounds:
  // a live frame (vision + prefill over a full window) in a scratch stream.
  const scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-encode-'));
  const scratch = await StreamSession.open(model, { dir: scratchDir, gate: 'off', fsync: 'none' });
  const image = await preprocessVideoFrame(noiseFrame(5), model.imageConfig, model.imageConfig.tileSize ?? 64);
  let frameT = 0;
  for (let i = 0; i < 18; i++) await scratch.addFrame(image, frameT++);
  const encodeMs: number[] = [];
  const row = (a: Awaited<ReturnType<typeof askNeedle>>): NeedleAnswerRow => ({ ttftMs: a.ttftMs, retrievalMs: a.retrievalMs, loadMs: a.loadMs, prefillMs: a.prefillMs, ...a.phases, correct: a.correct, margin: a.margin, reencoded: a.archive?.reencoded ?? 0, reencodeMs: a.archive?.reencodeMs ?? 0 });
  for (let r = 0; r < repeats; r++) {
    for (const [i, session] of sessions.entries()) {
      runs[i]!.push(row(await askNeedle(session, streams[i]!.needle.background, streams[i]!.needle.square, retrieve)));
      kvOnly[i]!.push(row(await askNeedle(session, streams[i]!.needle.background, streams[i]!.needle.square, retrieve, 0)));
    }
    const s = performance.now();
    await scratch.addFrame(image, frameT++);
    encodeMs.push(performance.now() - s);
  }
  await scratch.dispose();
  fs.rmSync(scratchDir, { recursive: true, force: true });
  const frameMs = median(encodeMs);
  const med = (xs: NeedleAnswerRow[], k: keyof NeedleAnswerRow) => round1(median(xs.map((x) => x[k] as number)));
  const points = runs.map((xs, i) => ({
    encodeMsPerFrame: round1(frameMs),
    // What re-encoding added over the same question with the archive left out, against the
    // allowance (frames re-encoded x per-frame encode time + 20%), medians of the rounds.
    archiveAddedMs: round1(med(xs, 'ttftMs') - med(kvOnly[i]!, 'ttftMs')),
    archiveAllowanceMs: round1(med(xs, 'reencoded') * frameMs * 1.2),
    reencoded: med(xs, 'reencoded'),
    reencodeMs: med(xs, 'reencodeMs'),
    kvOnly: {
      ttftMs: med(kvOnly[i]!, 'ttftMs'),
      runsMs: kvOnly[i]!.map((x) => round1(x.ttftMs)),
      searchMs: med(kvOnly[i]!, 'searchMs'),
      correct: kvOnly[i]!.every((x) => x.correct),
      ratioToFirst: i === 0 ? 1 : Math.round(median(kvOnly[i]!.map((x, r) => x.ttftMs / kvOnly[0]![r]!.ttftMs)) * 100) / 100,
    },
    ttftMs: med(xs, 'ttftMs'),
    runsMs: xs.map((x) => round1(x.ttftMs)),
    retrievalMs: med(xs, 'retrievalMs'),
    pass1Ms: med(xs, 'pass1Ms'),
    searchMs: med(xs, 'searchMs'),
    loadMs: med(xs, 'loadMs'),
    prefillMs: med(xs, 'prefillMs'),
    correct: xs.every((x) => x.correct),
    margin: xs[0]!.margin,
    // TTFT of this point over the first point's, round by round (same load), median.
    ratioToFirst: i === 0 ? 1 : Math.round(median(xs.map((x, r) => x.ttftMs / runs[0]![r]!.ttftMs)) * 100) / 100,
  }));
  for (const session of sessions) await session.dispose();
  await model.dispose();
  process.stdout.write(`${JSON.stringify({ points })}\n`, () => process.exit(0));
}

interface NeedleAnswerRow {
  ttftMs: number;
  retrievalMs: number;
  loadMs: number;
  prefillMs: number;
  pass1Ms: number;
  searchMs: number;
  chunkLoadMs: number;
  assembleMs: number;
  correct: boolean;
  margin: number | null;
  reencoded: number;
  reencodeMs: number;
}

/** Pass-2 logits per tier vs the exact KV, on a fast-forwarded stream holding every tier. */
async function fidelity(modelDir: string, scene: LongScene, days: number, scale: number, budget: number, keepFullSec: number, kvShare: number): Promise<void> {
  const model = await VisionLanguageModel.load(modelDir);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-fidelity-'));
  try {
    const durationS = Math.round((days * 86400) / scale);
    const build = await buildLongStream(model, {
      dir: path.join(root, 'stream'),
      scene,
      durationS,
      needles: [],
      budgetBytes: Math.round(budget / scale),
      keepFullSec: Math.round(keepFullSec / scale),
      kvShare,
      ...busyOptions(),
      ...(scene === 'camera' ? { camera: cameraGatePattern(DEFAULT_CAMERA) } : {}),
    });
    try {
      const spans = build.session.horizon().spans.map((x) => ({ tier: x.tier, seconds: x.to - x.from + 1, chunks: x.chunks }));
      log(`built ${durationS} s in ${build.buildS.toFixed(0)} s: ${JSON.stringify(spans)}`);
      const rows = await tierFidelity(build, RANDOM_QUESTIONS, 4);
      process.stdout.write(`${JSON.stringify({ model: path.basename(modelDir), scene, durationS, scale, spans, tiers: rows })}\n`);
    } finally {
      await build.session.dispose();
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    await model.dispose();
  }
}

/**
 * The fast-forward against a real run of `frames` frames (busy: every frame a distinct noise frame
 * encoded by the model; camera: the scene's frames through the real gate, then encoded): bytes on
 * disk, chunks, tier spans and the needle's answer, margin and TTFT, for both.
 */
async function realVsFastForward(modelDir: string, scene: LongScene, frames: number, retrieve: number): Promise<void> {
  const model = await VisionLanguageModel.load(modelDir);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-real-'));
  const needle = { t: Math.round(frames * 0.4), seconds: 1, background: 'red' as const, square: 'green' as const };
  const budget = parseByteSize(values.budget, '--budget');
  const scale = Number(values.scale);
  const keepFull = Math.round(Number(values['keep-full-sec']) / scale);
  const scaledBudget = Math.round(budget / scale);
  try {
    const results: Record<string, unknown> = { scene, frames, budgetBytes: scaledBudget, keepFullSec: keepFull };
    for (const mode of ['fast-forward', 'real'] as const) {
      const started = performance.now();
      const build = await buildLongStream(model, {
        dir: path.join(root, mode),
        scene,
        durationS: frames,
        needles: [needle],
        budgetBytes: scaledBudget,
        keepFullSec: keepFull,
        writeAll: true,
        realHaystack: mode === 'real',
        ...busyOptions(),
        ...(scene === 'camera' ? { camera: cameraGatePattern(DEFAULT_CAMERA) } : {}),
        onProgress: (done, total) => {
          if (done % 50 === 0) log(`  ${mode} ${done}/${total}`);
        },
      });
      const s = build.session;
      const stats = s.store.stats();
      results.stillBytes = build.stillBytes;
      const answer = await askNeedle(s, needle.background, needle.square, retrieve);
      const again = await askNeedle(s, needle.background, needle.square, retrieve);
      results[mode] = {
        buildS: round1((performance.now() - started) / 1000),
        chunks: stats.chunkCount,
        diskBytes: stats.diskBytes,
        bytesByDtype: stats.bytesByDtype,
        spans: s.horizon().spans.map((x) => ({ tier: x.tier, seconds: x.to - x.from + 1, chunks: x.chunks })),
        needleTier: tierOf(s.store.tierSpans(), build.needleChunkIds[0], stats.lastChunkId),
        answer: answer.answer,
        correct: answer.correct,
        margin: answer.margin,
        ttftMs: round1(Math.min(answer.ttftMs, again.ttftMs)),
        index: s.index.stats().size,
      };
      await s.dispose();
    }
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    await model.dispose();
  }
}

/** The busy scene's frame options: photo footage is rendered once (300 frames, used in turn). */
function busyOptions(): { busyFrames: 'noise' | 'scene' | 'photo'; busyPhotos?: RawRgb[] } {
  const kind = values['busy-frames'];
  if (kind !== 'noise' && kind !== 'scene' && kind !== 'photo') throw new Error(`--busy-frames must be noise, scene or photo, got ${kind}`);
  if (kind !== 'photo') return { busyFrames: kind };
  const photos = values.photos?.split(',');
  photoFrames ??= photoFootage({ frames: 300, width: FRAME_W, height: FRAME_H, noise: true, ...(photos?.length === 2 ? { photos: [photos[0]!, photos[1]!] as const } : {}) });
  return { busyFrames: kind, busyPhotos: photoFrames };
}
