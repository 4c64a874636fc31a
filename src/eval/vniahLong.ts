/**
 * V-NIAH over days (issue 15): needles at depths 0-100% of a days-long stream (busy or camera-like),
 * built by fast-forward (src/eval/longStream.ts) under a disk budget, answered by rekv. Each needle
 * lands in the tier its age puts it in (the stream dtype for the last keepFullSec, then kivi4, then
 * the archive, or forgotten); two more needles are placed in the middle of the float32 and kivi4
 * bands so every tier is asked. Output: per-tier accuracy and answer-logit margin, per-needle rows,
 * and a heatmap (needle rows x tier columns).
 *
 * `--scale F` runs the same stream with budget/F, keepFullSec/F and duration/F: every band's span is
 * proportional to the budget, so a needle at depth d lands in the same tier as at full scale
 * (bench/horizon.ts checks the proportionality at two scales).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { parseByteSize } from '../../common/byteSize.js';
import { VigilError } from '../../common/errors.js';
import { chunkRecordBytes } from '../../memory/store/budget.js';
import { frameTokens } from '../engine/manager/streamBudget.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { NEEDLE_COLORS, type NeedleColor } from '../model/probe/needleLayout.js';
import { cameraGatePattern, type CameraGatePattern, DEFAULT_CAMERA, type LongNeedle, type LongScene, LONG_SCENES } from './longScene.js';
import { askNeedle, buildLongStream, kvSpanChunks, type LongStreamBuild, type NeedleAnswer, tierOf } from './longStream.js';
import type { StoreStats } from '../../memory/store/index.js';
import type { MemoryHorizon } from '../engine/memoryHorizon.js';
import { machineInfo, type MachineInfo, median } from './metrics.js';
import { STILL_QUALITY } from '../engine/stills.js';

export interface LongVniahSettings {
  days: number;
  scene: LongScene;
  depthsPct: number[];
  /** Full-scale budget (bytes); the run uses budget / scale. */
  budgetBytes: number;
  /** Full-scale keepFullSec; the run uses keepFullSec / scale. */
  keepFullSec: number;
  kvShare: number;
  scale: number;
  retrieve: number;
  windowFrames: number;
  sinkFrames: number;
  /** Also place a needle in the middle of the float32 and kivi4 bands. */
  tierNeedles: boolean;
  camera: { eventEverySec: number; eventSec: number };
  /** Busy scene frames: gray noise (the archive's worst case) or a moving scene that compresses like footage. */
  busyFrames: 'noise' | 'scene';
}

export const DEFAULT_LONG_VNIAH: LongVniahSettings = {
  days: 7,
  scene: 'busy',
  depthsPct: [0, 25, 50, 75, 100],
  budgetBytes: 20e9,
  keepFullSec: 1800,
  kvShare: 0.4,
  scale: 1,
  retrieve: 4,
  windowFrames: 16,
  sinkFrames: 1,
  tierNeedles: true,
  camera: { eventEverySec: DEFAULT_CAMERA.eventEverySec, eventSec: DEFAULT_CAMERA.eventSec },
  busyFrames: 'noise',
};

export interface LongVniahFlags {
  days?: string;
  scene?: string;
  depths?: string;
  budget?: string;
  keepFullSec?: string;
  kvShare?: string;
  scale?: string;
  retrieve?: string;
  window?: string;
  sinks?: string;
  busyFrames?: string;
}

function num(flag: string, text: string, ok: (n: number) => boolean, what: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new VigilError('BAD_INPUT', `--${flag} must be ${what}, got '${text}'`);
  return n;
}

export function longVniahSettingsFromFlags(flags: LongVniahFlags): LongVniahSettings {
  const s: LongVniahSettings = structuredClone(DEFAULT_LONG_VNIAH);
  if (flags.days !== undefined) s.days = num('days', flags.days, (n) => n > 0 && n <= 366, 'a number of days in (0, 366]');
  if (flags.scene !== undefined) {
    if (!(LONG_SCENES as readonly string[]).includes(flags.scene)) throw new VigilError('BAD_INPUT', `--scene must be one of ${LONG_SCENES.join(', ')}, got '${flags.scene}'`);
    s.scene = flags.scene as LongScene;
  }
  if (flags.depths !== undefined) {
    s.depthsPct = flags.depths.split(',').map((d) => num('depths', d, (n) => n >= 0 && n <= 100, 'a comma list of depths in 0..100'));
    s.depthsPct.sort((a, b) => a - b);
  }
  if (flags.budget !== undefined) s.budgetBytes = parseByteSize(flags.budget, '--budget');
  if (flags.keepFullSec !== undefined) s.keepFullSec = num('keep-full-sec', flags.keepFullSec, (n) => n >= 0, 'seconds >= 0');
  if (flags.kvShare !== undefined) s.kvShare = num('kv-share', flags.kvShare, (n) => n > 0 && n <= 1, 'a share in (0, 1]');
  if (flags.scale !== undefined) s.scale = num('scale', flags.scale, (n) => n >= 1, 'a factor >= 1 (budget, keepFullSec and duration are divided by it)');
  if (flags.retrieve !== undefined) s.retrieve = num('retrieve', flags.retrieve, (n) => Number.isInteger(n) && n >= 1, 'an integer >= 1');
  if (flags.window !== undefined) s.windowFrames = num('window', flags.window, (n) => Number.isInteger(n) && n >= 1, 'an integer >= 1');
  if (flags.busyFrames !== undefined) {
    if (flags.busyFrames !== 'noise' && flags.busyFrames !== 'scene') throw new VigilError('BAD_INPUT', `--busy-frames must be noise or scene, got '${flags.busyFrames}'`);
    s.busyFrames = flags.busyFrames;
  }
  if (flags.sinks !== undefined) s.sinkFrames = num('sinks', flags.sinks, (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0');
  return s;
}

export interface LongVniahRow {
  /** 'depth 50%' or 'float32 band' / 'kivi4 band'. */
  label: string;
  depthPct: number | null;
  /** Stream time of the needle (s, in the run's scaled stream) and its age at question time. */
  t: number;
  ageS: number;
  background: NeedleColor;
  square: NeedleColor;
  /** float32 / kivi4 / archive / window / forgotten. */
  tier: string;
  result: NeedleAnswer;
}

export interface LongVniahTier {
  tier: string;
  needles: number;
  correct: number;
  accuracy: number;
  minMargin: number | null;
  meanMargin: number | null;
  medianTtftMs: number;
}

export interface LongVniahResults {
  kind: 'vigil-vniah-long';
  version: 1;
  createdAt: string;
  commandLine: string;
  settings: LongVniahSettings;
  model: { dir: string; numLayers: number };
  machine: MachineInfo;
  run: {
    durationS: number;
    budgetBytes: number;
    keepFullSec: number;
    chunks: number;
    stillBytes: number;
    written: { kv: number; archived: number; skipped: number; realEncoded: number };
    archiveAvailable: boolean;
    buildS: number;
    encodeS: number;
    horizon: { from: number | null; to: number | null; spans: Array<{ tier: string; from: number; to: number; chunks: number }> };
    bytesByDtype: Record<string, number>;
    diskBytes: number;
    camera: { sampled: number; encoded: number; events: number; eventsKept: number; periodic: boolean; encodedFraction: number } | null;
  };
  rows: LongVniahRow[];
  tiers: LongVniahTier[];
  notes: string[];
  totalSeconds: number;
}

const TIER_ORDER = ['float32', 'float16', 'int8', 'kivi4', 'archive', 'window', 'forgotten'];

export async function runLongVniah(
  model: VisionLanguageModel,
  options: { settings: LongVniahSettings; modelDir: string; memoryDir?: string; commandLine?: string; onStage?: (label: string, done: number, total: number) => void },
): Promise<LongVniahResults> {
  const s = options.settings;
  const started = performance.now();
  const stage = options.onStage ?? (() => {});
  const durationS = Math.round((s.days * 86400) / s.scale);
  const budgetBytes = Math.round(s.budgetBytes / s.scale);
  const keepFullSec = Math.round(s.keepFullSec / s.scale);
  const notes: string[] = [];
  let camera: CameraGatePattern | undefined;
  if (s.scene === 'camera') {
    stage('frame gate on the camera scene', 0, 1);
    camera = cameraGatePattern({ ...DEFAULT_CAMERA, ...s.camera, gateSeconds: Math.max(DEFAULT_CAMERA.gateSeconds, DEFAULT_CAMERA.firstEventAt + 3 * s.camera.eventEverySec) });
    if (!camera.periodic) notes.push('the gate decisions were not periodic over the gate run: the planned camera stream repeats its second period anyway');
  }
  // Needles: one per depth, start after the sinks, end before the last second.
  const lead = s.sinkFrames + 2;
  const usable = durationS - lead - 2;
  if (usable < s.depthsPct.length * 4) throw new VigilError('BAD_INPUT', `the stream (${durationS} s after --scale) is too short for ${s.depthsPct.length} needles`);
  const colors = NEEDLE_COLORS.slice(0, -1); // the last palette color is never shown: a control
  const needleAt = (i: number, t: number): LongNeedle => ({ t, seconds: 1, background: colors[i % colors.length]!, square: colors[(i + 3) % colors.length]! });
  const needles: LongNeedle[] = [];
  const labels: Array<{ label: string; depthPct: number | null }> = [];
  s.depthsPct.forEach((d, i) => {
    needles.push(needleAt(i, lead + Math.round((d / 100) * usable)));
    labels.push({ label: `depth ${d}%`, depthPct: d });
  });
  if (s.tierNeedles && keepFullSec > 4) {
    // (the needles' colors are assigned per round below)
    // Chunks per second of the scene (camera: the gate's rate) to turn the kivi4 band's chunks into seconds.
    const rate = camera ? camera.periodOffsets.length / camera.spec.eventEverySec : 1;
    const f32Ages = Math.round(keepFullSec / 2);
    needles.push(needleAt(needles.length, durationS - 1 - f32Ages));
    labels.push({ label: 'float32 band', depthPct: null });
    // The kivi4 band from the model's record sizes.
    const { numLayers, numKvHeads, headDim } = model.decoder.info;
    const tokens = frameTokens(model);
    const f32 = chunkRecordBytes({ numLayers, numKvHeads, headDim }, 'float32', tokens);
    const k4 = chunkRecordBytes({ numLayers, numKvHeads, headDim }, 'kivi4', tokens);
    const kvChunks = kvSpanChunks(budgetBytes, Math.round(keepFullSec * rate), f32, k4, s.kvShare, true);
    const kivi4S = Math.max(0, kvChunks - Math.round(keepFullSec * rate)) / rate;
    if (kivi4S > 8) {
      // Just past the float32 band: under the default shares kivi4 is a thin band (keepFullSec at
      // float32 takes most of the KV share: 6.4 of 8 GB at full scale), measured 34 s at 1/20.
      needles.push(needleAt(needles.length, durationS - 1 - Math.round(keepFullSec * 1.1 + Math.min(kivi4S / 2, 2 + keepFullSec * 0.05))));
      labels.push({ label: 'kivi4 band', depthPct: null });
    }
  }
  // Needles must not overlap (two at the same second, or a depth needle on a band needle).
  const order = needles.map((n, i) => ({ n, i })).sort((a, b) => a.n.t - b.n.t);
  for (let k = 1; k < order.length; k++) if (order[k]!.n.t <= order[k - 1]!.n.t + 1) order[k]!.n.t = order[k - 1]!.n.t + 2;

  // The needle model knows 8 colors (one kept for the control): a stream holds at most 7 needles
  // with distinct backgrounds, so a longer list is asked over several identical streams (rounds).
  const perRound = colors.length;
  const rounds: number[][] = [];
  for (let i = 0; i < needles.length; i += perRound) rounds.push(needles.map((_, k) => k).slice(i, i + perRound));
  for (const round of rounds) {
    round.forEach((k, j) => {
      needles[k]!.background = colors[j]!;
      needles[k]!.square = colors[(j + 3) % colors.length]!;
    });
  }

  const memoryDir = options.memoryDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-vniah-long-'));
  const rows: LongVniahRow[] = [];
  let first: { build: LongStreamBuild; stats: StoreStats; horizon: MemoryHorizon } | null = null;
  try {
    for (let r = 0; r < rounds.length; r++) {
      const round = rounds[r]!;
      const dir = path.join(memoryDir, `${s.scene}-${s.days}d-${r}`);
      const build = await buildLongStream(model, {
        dir,
        scene: s.scene,
        durationS,
        needles: round.map((k) => needles[k]!),
        budgetBytes,
        keepFullSec,
        kvShare: s.kvShare,
        windowFrames: s.windowFrames,
        sinkFrames: s.sinkFrames,
        busyFrames: s.busyFrames,
        ...(camera ? { camera } : {}),
        onProgress: (done, total, label) => stage(`build ${rounds.length > 1 ? `(${r + 1}/${rounds.length}) ` : ''}${label}`, done, total),
      });
      const session = build.session;
      try {
        const stats = session.store.stats();
        const spans = session.store.tierSpans();
        first ??= { build, stats, horizon: session.horizon() };
        // Warm-up (first question of a session pays one-off costs); the control color was never shown.
        await askNeedle(session, NEEDLE_COLORS.at(-1)!, 'unknown', s.retrieve);
        for (let j = 0; j < round.length; j++) {
          const i = round[j]!;
          const n = needles[i]!;
          stage('questions', rows.length, needles.length);
          const tier = tierOf(spans, build.needleChunkIds[j], stats.lastChunkId);
          const result = await askNeedle(session, n.background, n.square, s.retrieve);
          rows.push({ ...labels[i]!, t: n.t, ageS: durationS - 1 - n.t, background: n.background, square: n.square, tier, result });
        }
      } finally {
        await session.dispose();
        if (!options.memoryDir) fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    const { build, stats, horizon } = first!;
    if (!build.archiveAvailable) notes.push('no archive tier in this engine (StreamSession.addArchivedChunk missing): history beyond the KV tiers is not held');
    if (rounds.length > 1) notes.push(`${needles.length} needles over ${rounds.length} identical streams (the needle model has ${colors.length} needle colors)`);
    rows.sort((a, b) => b.ageS - a.ageS);
    const tiers: LongVniahTier[] = [];
    for (const tier of TIER_ORDER) {
      const rs = rows.filter((r) => r.tier === tier);
      if (rs.length === 0) continue;
      const margins = rs.map((r) => r.result.margin).filter((m): m is number => m !== null);
      tiers.push({
        tier,
        needles: rs.length,
        correct: rs.filter((r) => r.result.correct).length,
        accuracy: rs.filter((r) => r.result.correct).length / rs.length,
        minMargin: margins.length ? Math.min(...margins) : null,
        meanMargin: margins.length ? margins.reduce((a, b) => a + b, 0) / margins.length : null,
        medianTtftMs: median(rs.map((r) => r.result.ttftMs)),
      });
    }
    const encodedFraction = camera ? build.plan.length / durationS : 1;
    return {
      kind: 'vigil-vniah-long',
      version: 1,
      createdAt: new Date().toISOString(),
      commandLine: options.commandLine ?? '',
      settings: s,
      model: { dir: options.modelDir, numLayers: model.decoder.info.numLayers },
      machine: machineInfo(),
      run: {
        durationS,
        budgetBytes,
        keepFullSec,
        chunks: build.plan.length,
        stillBytes: build.stillBytes,
        written: build.written,
        archiveAvailable: build.archiveAvailable,
        buildS: build.buildS,
        encodeS: build.encodeS,
        horizon: { from: horizon.from, to: horizon.to, spans: horizon.spans.map((x) => ({ tier: x.tier, from: x.from, to: x.to, chunks: x.chunks })) },
        bytesByDtype: { ...stats.bytesByDtype },
        diskBytes: stats.diskBytes,
        camera: camera ? { sampled: camera.sampled, encoded: camera.encoded.length, events: camera.events, eventsKept: camera.eventsKept, periodic: camera.periodic, encodedFraction } : null,
      },
      rows,
      tiers,
      notes,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    if (!options.memoryDir) fs.rmSync(memoryDir, { recursive: true, force: true });
  }
}

const fmt = (x: number | null, d = 2) => (x === null ? '-' : x.toFixed(d));
const dur = (sec: number) => (sec >= 86400 ? `${(sec / 86400).toFixed(2)} d` : sec >= 3600 ? `${(sec / 3600).toFixed(2)} h` : `${Math.round(sec)} s`);

/** The markdown report: the run, the per-tier table, then one row per needle. */
export function longVniahTable(r: LongVniahResults): string {
  const s = r.settings;
  const lines: string[] = [];
  lines.push(`# V-NIAH over days: ${s.scene}, ${s.days} days${s.scale !== 1 ? ` at scale 1/${s.scale} (${dur(r.run.durationS)} of stream, budget ${(r.run.budgetBytes / 1e6).toFixed(0)} MB, keepFullSec ${r.run.keepFullSec})` : ''}`);
  lines.push('');
  lines.push(`${path.basename(r.model.dir)}, rekv r = ${s.retrieve}, window ${s.windowFrames} + ${s.sinkFrames} sink; ${r.run.chunks} chunks planned (${r.run.written.kv} with KV, ${r.run.written.archived} archived, ${r.run.written.skipped} not written); build ${r.run.buildS.toFixed(0)} s`);
  if (r.run.camera) lines.push(`camera: gate encoded ${r.run.camera.encoded}/${r.run.camera.sampled} sampled frames in its run, ${r.run.camera.eventsKept}/${r.run.camera.events} events kept; the stream: ${(100 * r.run.camera.encodedFraction).toFixed(2)}% of frames encoded`);
  lines.push(`scene stills (WebP q${STILL_QUALITY} at the model's tile side, as ingest writes them): ${(r.run.stillBytes / 1024).toFixed(1)} KiB a frame${s.scene === 'busy' ? ` (${s.busyFrames} frames)` : ''}`);
  lines.push(`horizon: ${r.run.horizon.spans.map((x) => `${x.tier} ${dur(x.to - x.from + 1)} (${x.chunks} chunks)`).join(', ') || 'empty'}`);
  lines.push('');
  lines.push('| tier | needles | accuracy | min margin | mean margin | median TTFT ms |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const t of r.tiers) lines.push(`| ${t.tier === 'forgotten' ? 'forgotten (deleted by the budget)' : t.tier} | ${t.needles} | ${t.correct}/${t.needles} | ${fmt(t.minMargin)} | ${fmt(t.meanMargin)} | ${t.medianTtftMs.toFixed(0)} |`);
  lines.push('');
  lines.push(`| needle | age${s.scale !== 1 ? ' (run) | age at full scale' : ''} | tier | expected | answer | margin | TTFT ms | re-encoded |`);
  lines.push(`|---|---:|${s.scale !== 1 ? '---:|' : ''}---|---|---|---:|---:|---:|`);
  for (const row of r.rows) {
    const a = row.result.archive;
    lines.push(`| ${row.label} | ${dur(row.ageS)}${s.scale !== 1 ? ` | ${dur(row.ageS * s.scale)}` : ''} | ${row.tier} | ${row.square} | ${row.result.answer}${row.result.correct ? '' : row.tier === 'forgotten' && row.result.answer === 'unknown' ? ' (deleted: right to say so)' : ' (wrong)'} | ${fmt(row.result.margin)} | ${row.result.ttftMs.toFixed(0)} | ${a ? `${a.reencoded}/${a.retrieved}` : '-'} |`);
  }
  for (const n of r.notes) lines.push(`\nnote: ${n}`);
  return `${lines.join('\n')}\n`;
}

const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Heatmap: needles (rows, oldest first) x tiers (columns); a cell is filled where the needle was held in that tier. */
export function longVniahSvg(r: LongVniahResults): string {
  const tiers = TIER_ORDER.filter((t) => r.rows.some((x) => x.tier === t));
  const rows = [...r.rows].sort((a, b) => b.ageS - a.ageS);
  const cw = 92;
  const ch = 24;
  const left = 170;
  const top = 84;
  const width = Math.max(left + tiers.length * cw + 20, 760);
  const height = top + rows.length * ch + 40;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(`V-NIAH over ${r.settings.days} days, ${r.settings.scene} scene: answer by tier`)}</text>`);
  out.push(`<text x="10" y="38" font-size="11" fill="#444">${esc(`${path.basename(r.model.dir)}, rekv r=${r.settings.retrieve}${r.settings.scale !== 1 ? `, run at scale 1/${r.settings.scale}, ages at full scale` : ''}`)}</text>`);
  out.push(`<text x="10" y="54" font-size="11" fill="#444">${esc('cell: answer-logit margin (green: right, red: wrong, gray: deleted by the budget and answered unknown)')}</text>`);
  tiers.forEach((t, j) => out.push(`<text x="${left + j * cw + cw / 2}" y="${top - 8}" font-size="12" text-anchor="middle">${esc(t)}</text>`));
  rows.forEach((row, i) => {
    const y = top + i * ch;
    out.push(`<text x="${left - 6}" y="${y + 16}" font-size="11" text-anchor="end">${esc(`${row.label} (${dur(row.ageS * r.settings.scale)} ago)`)}</text>`);
    tiers.forEach((t, j) => {
      const x = left + j * cw;
      const here = row.tier === t;
      // A needle the budget deleted is not a wrong answer when the model says 'unknown': gray.
      const fill = !here ? '#eeeeee' : row.result.correct ? '#1a9850' : t === 'forgotten' && row.result.answer === 'unknown' ? '#8c8c8c' : '#d73027';
      out.push(`<rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" fill="${fill}"/>`);
      if (here) out.push(`<text x="${x + cw / 2}" y="${y + 16}" font-size="11" text-anchor="middle" fill="white">${esc(row.result.margin === null ? row.result.answer : row.result.margin.toFixed(2))}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n');
}

export async function writeLongVniahOutputs(outDir: string, r: LongVniahResults): Promise<{ resultsJson: string; tableMd: string; heatmapPng: string }> {
  fs.mkdirSync(outDir, { recursive: true });
  const base = `long-${r.settings.scene}-${r.settings.days}d`;
  const files = { resultsJson: path.join(outDir, `${base}.json`), tableMd: path.join(outDir, `${base}.md`), heatmapPng: path.join(outDir, `${base}.png`) };
  fs.writeFileSync(files.resultsJson, `${JSON.stringify(r, null, 2)}\n`);
  fs.writeFileSync(files.tableMd, longVniahTable(r));
  fs.writeFileSync(files.heatmapPng, await sharp(Buffer.from(longVniahSvg(r)), { density: 144 }).png({ palette: true, compressionLevel: 9 }).toBuffer());
  return files;
}
