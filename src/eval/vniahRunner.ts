/**
 * Runs the V-NIAH grid through the real pipeline: one probe clip per length (cached), ingested once
 * per storage dtype into a fresh stream memory, then every needle question and the control question
 * asked in every mode measured on that dtype. Each answer becomes one cell.
 */
import fs from 'node:fs';
import path from 'node:path';
import { cachedProbeClip } from '../../ingest/probeClip.js';
import type { KvStorageDtype } from '../../memory/frameChunk.js';
import type { ChunkTimes } from '../../retrieval/baselines.js';
import { ingestIntoSession } from '../engine/ingestToSession.js';
import { needleQuestion } from '../engine/needleDemo.js';
import { type AnswerMode, type AskOptions, type SessionAnswer, StreamSession } from '../engine/streamSession.js';
import { VigilError } from '../../common/errors.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { type ClipPlan, planClip } from './clipPlan.js';
import { contextRecall, gradeAnswer, machineInfo, type MachineInfo, median, needleChunkIds } from './metrics.js';
import { modesFor, sessionDtypes, type VniahSettings } from './vniahSettings.js';

export interface VniahCell {
  lengthMin: number;
  durationS: number;
  kind: 'needle' | 'control';
  /** null for the control question. */
  depthPct: number | null;
  mode: AnswerMode;
  dtype: KvStorageDtype;
  question: string;
  expected: string;
  /** null when the cell was skipped. */
  answer: string | null;
  correct: boolean | null;
  skipped: string | null;
  needle: { start: number; end: number; background: string; square: string } | null;
  needleChunkIds: number[];
  /** Share of the needle's chunks in the signal layer's context (sinks + chosen chunks [+ window]). */
  recall: number | null;
  /** The same over the union of all layers' contexts. */
  recallUnion: number | null;
  /** Chunks chosen for the signal layer besides sinks/window (rekv: r; window: 0; full: all others). */
  chosenAtSignalLayer: number | null;
  contextTokens: number | null;
  /** Medians over `settings.repeats` asks; ttftMsRuns has every run. */
  ttftMs: number | null;
  ttftMsRuns: number[];
  /** The parts of the fastest ask, the one least disturbed by other work on the machine. */
  best: { ttftMs: number; retrievalMs: number; loadMs: number; prefillMs: number } | null;
  totalMs: number | null;
  retrievalMs: number | null;
  loadMs: number | null;
  prefillMs: number | null;
  /** Process RSS right after the answer. */
  rssBytes: number | null;
}

export interface VniahClip {
  lengthMin: number;
  durationS: number;
  clip: string;
  /** Seconds spent getting the clip; near 0 on a cache hit. */
  seconds: number;
  cached: boolean;
  needles: ClipPlan['needles'];
  control: string;
}

export interface VniahIngest {
  lengthMin: number;
  dtype: KvStorageDtype;
  frames: number;
  seconds: number;
  tokensPerFrame: number;
  storedBytes: number;
  rssBytes: number;
  memoryDir: string | null;
}

export interface VniahResults {
  kind: 'vigil-vniah';
  version: 1;
  createdAt: string;
  commandLine: string;
  settings: VniahSettings;
  model: { dir: string; numLayers: number };
  machine: MachineInfo;
  clips: VniahClip[];
  ingests: VniahIngest[];
  cells: VniahCell[];
  notes: string[];
  totalSeconds: number;
}

export interface VniahRunOptions {
  settings: VniahSettings;
  modelDir: string;
  /** Parent folder of the per-(length, dtype) stream memories. */
  memoryRoot: string;
  /** Keep each memory after its questions (else removed as soon as it is done). */
  keepMemory?: boolean;
  commandLine?: string;
  onStage?: (label: string, done: number, total: number) => void;
}

export async function runVniah(model: VisionLanguageModel, options: VniahRunOptions): Promise<VniahResults> {
  const { settings } = options;
  const stage = options.onStage ?? (() => {});
  const numLayers = model.decoder.info.numLayers;
  if (settings.signalLayer >= numLayers) {
    throw new VigilError('BAD_INPUT', `--signal-layer ${settings.signalLayer} is out of range: the model has ${numLayers} layers (0..${numLayers - 1})`);
  }
  // Plan every clip before any work, so a grid that cannot be laid out fails at once.
  // The needles start after the sink frames (at 1 frame per second of stream), which every mode keeps.
  const leadInS = Math.ceil(settings.sinkFrames / settings.fps);
  const plans = settings.lengthsMin.map((m) => planClip(m, settings.depthsPct, settings.needleSeconds, leadInS));
  const started = performance.now();
  const results: VniahResults = {
    kind: 'vigil-vniah',
    version: 1,
    createdAt: new Date().toISOString(),
    commandLine: options.commandLine ?? '',
    settings,
    model: { dir: options.modelDir, numLayers },
    machine: machineInfo(),
    clips: [],
    ingests: [],
    cells: [],
    notes: [],
    totalSeconds: 0,
  };

  for (const plan of plans) {
    const label = `${plan.lengthMin} min`;
    stage(`clip ${label}`, 0, plan.durationS);
    const clipStarted = performance.now();
    const wallBefore = Date.now();
    const clip = await cachedProbeClip({
      durationS: plan.durationS,
      ...settings.clip,
      needles: plan.needles.map(({ start, duration, background, square }) => ({ start, duration, background, square })),
      onProgress: (done, total) => stage(`clip ${label}`, Math.round(done), total),
    });
    // A cache hit returns the sidecar an earlier run wrote; a generated clip's sidecar is newer than this call.
    const cached = fs.statSync(clip.truthPath).mtimeMs < wallBefore;
    results.clips.push({
      lengthMin: plan.lengthMin,
      durationS: plan.durationS,
      clip: clip.clip,
      seconds: (performance.now() - clipStarted) / 1000,
      cached,
      needles: plan.needles,
      control: plan.control,
    });

    for (const dtype of sessionDtypes(settings)) {
      const dir = path.join(options.memoryRoot, `${String(plan.lengthMin).replace('.', '_')}min-${dtype}`);
      fs.rmSync(dir, { recursive: true, force: true });
      const session = await StreamSession.open(model, {
        dir,
        sinkFrames: settings.sinkFrames,
        windowFrames: settings.windowFrames,
        storageDtype: dtype,
        // Eval memories are scratch: durability costs time and measures nothing here.
        fsync: 'none',
        // Retrieval fidelity over every sampled frame (a needle scene is several chunks), as the
        // published tables were measured; gating is measured by bench/frame-gate.ts.
        gate: 'off',
      });
      try {
        const ingestStarted = performance.now();
        const expectedFrames = Math.ceil(plan.durationS * settings.fps);
        const ingest = await ingestIntoSession(session, clip.clip, {
          fps: settings.fps,
          onProgress: (p) => stage(`ingest ${label} ${dtype}`, p.framesEncoded, Math.max(expectedFrames, p.framesEncoded)),
        });
        const times: ChunkTimes[] = session.memory.chunkTimes();
        const lastT = times.at(-1)?.tStart ?? 0;
        const tokensPerFrame = session.encoder.frameTokenIds(lastT).length;
        results.ingests.push({
          lengthMin: plan.lengthMin,
          dtype,
          frames: ingest.framesEncoded,
          seconds: (performance.now() - ingestStarted) / 1000,
          tokensPerFrame,
          storedBytes: session.stats().storedBytes,
          rssBytes: process.memoryUsage().rss,
          memoryDir: options.keepMemory ? dir : null,
        });
        await askAll(session, plan, dtype, times, tokensPerFrame, results, settings, (done, total) => stage(`ask ${label} ${dtype}`, done, total));
      } finally {
        await session.dispose();
        if (!options.keepMemory) fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  results.totalSeconds = (performance.now() - started) / 1000;
  return results;
}

async function askAll(
  session: StreamSession,
  plan: ClipPlan,
  dtype: KvStorageDtype,
  times: ChunkTimes[],
  tokensPerFrame: number,
  results: VniahResults,
  settings: VniahSettings,
  progress: (done: number, total: number) => void,
): Promise<void> {
  const questions = [
    ...plan.needles.map((n) => ({ kind: 'needle' as const, needle: n, background: n.background as string, expected: n.square as string })),
    { kind: 'control' as const, needle: null, background: plan.control as string, expected: 'unknown' },
  ];
  const modes = modesFor(settings, dtype);
  const sinkIds = session.memory.window.sinkChunks.map((c) => c.chunkId);
  const windowIds = session.memory.window.windowChunks.map((c) => c.chunkId);
  const fullTokens = times.length * tokensPerFrame;
  for (const n of plan.needles) {
    const onSink = needleChunkIds(times, n).filter((id) => sinkIds.includes(id));
    const note = `depth ${n.depthPct}%: the needle covers sink frame(s), which every mode keeps in context`;
    if (onSink.length > 0 && !results.notes.includes(note)) results.notes.push(note);
  }
  // The first question of a session pays one-off costs (allocations, first onnxruntime run at a new
  // context size); an unrecorded warm-up keeps them out of the first cell's TTFT.
  await session.ask({ question: needleQuestion(plan.control), mode: 'rekv', retrieve: settings.retrieve, maxNewTokens: settings.maxNewTokens });

  const total = modes.length * questions.length;
  let done = 0;
  for (const mode of modes) {
    const skip =
      mode === 'full' && fullTokens > settings.fullLimitTokens
        ? `full context would be ${times.length} frames x ${tokensPerFrame} tokens = ${fullTokens} tokens > --full-limit ${settings.fullLimitTokens}`
        : null;
    if (skip && !results.notes.some((n) => n.startsWith(`full skipped at ${plan.lengthMin} min`))) results.notes.push(`full skipped at ${plan.lengthMin} min: ${skip}`);
    for (const q of questions) {
      progress(done++, total);
      const question = needleQuestion(q.background);
      const needleIds = q.needle ? needleChunkIds(times, q.needle) : [];
      const cell: VniahCell = {
        lengthMin: plan.lengthMin,
        durationS: plan.durationS,
        kind: q.kind,
        depthPct: q.needle?.depthPct ?? null,
        mode,
        dtype,
        question,
        expected: q.expected,
        answer: null,
        correct: null,
        skipped: skip,
        needle: q.needle ? { start: q.needle.start, end: q.needle.end, background: q.needle.background, square: q.needle.square } : null,
        needleChunkIds: needleIds,
        recall: null,
        recallUnion: null,
        chosenAtSignalLayer: null,
        contextTokens: null,
        ttftMs: null,
        ttftMsRuns: [],
        best: null,
        totalMs: null,
        retrievalMs: null,
        loadMs: null,
        prefillMs: null,
        rssBytes: null,
      };
      if (!skip) {
        const ask: AskOptions = { question, mode, retrieve: settings.retrieve, maxNewTokens: settings.maxNewTokens };
        // Ground truth for the oracle: the needle's times; the control question has none.
        if (mode === 'oracle') ask.oracleTimes = q.needle ? [{ start: q.needle.start, end: q.needle.end }] : [];
        const runs: SessionAnswer[] = [];
        for (let i = 0; i < settings.repeats; i++) runs.push(await session.ask(ask));
        const rssBytes = process.memoryUsage().rss;
        const a = runs[0]!;
        const graded = gradeAnswer(a.text, q.expected);
        // Greedy decoding over the same context must repeat itself; a difference is a finding, not noise.
        const texts = new Set(runs.map((x) => x.text));
        if (texts.size > 1) results.notes.push(`${mode} ${dtype} ${plan.lengthMin} min '${question}': repeated asks answered differently: ${[...texts].map((t) => `'${t}'`).join(', ')}`);
        const med = (key: 'ttftMs' | 'totalMs' | 'retrievalMs' | 'loadMs' | 'prefillMs') => median(runs.map((x) => x[key]));
        const includeWindow = mode === 'window' || mode === 'full';
        const base = [...sinkIds, ...(includeWindow ? windowIds : [])];
        const perLayer = a.layerChunkIds.map((ids) => new Set([...base, ...ids]));
        const signal = perLayer[settings.signalLayer] ?? new Set(base);
        const union = new Set(perLayer.flatMap((s) => [...s]));
        const finite = (x: number) => (Number.isFinite(x) ? x : null);
        const measured: Partial<VniahCell> = {
          answer: graded.answer,
          correct: graded.correct,
          recall: q.needle ? finite(contextRecall(needleIds, signal)) : null,
          recallUnion: q.needle ? finite(contextRecall(needleIds, union)) : null,
          chosenAtSignalLayer: a.layerChunkIds[settings.signalLayer]?.length ?? 0,
          contextTokens: a.contextTokens,
          ttftMs: med('ttftMs'),
          ttftMsRuns: runs.map((x) => x.ttftMs),
          best: (({ ttftMs, retrievalMs, loadMs, prefillMs }) => ({ ttftMs, retrievalMs, loadMs, prefillMs }))(runs.reduce((x, y) => (y.ttftMs < x.ttftMs ? y : x))),
          totalMs: med('totalMs'),
          retrievalMs: med('retrievalMs'),
          loadMs: med('loadMs'),
          prefillMs: med('prefillMs'),
          rssBytes,
        };
        Object.assign(cell, measured);
      }
      results.cells.push(cell);
    }
  }
  progress(total, total);
}
