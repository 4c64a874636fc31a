/**
 * Cameras per machine (issue 19): ONE `vigil serve` (a child process on 127.0.0.1, a temp data
 * folder) ingesting N live cameras, each its own GStreamer RTSP server on 127.0.0.1 serving a
 * camera-like probe clip (a static textured scene, 640x360 at 10 frames/s, with 4-s events: a
 * coloured screen with a square of another colour) sampled at 1 frame/s. For each N of the sweep
 * (a fresh serve each time) it samples every second, from the stream statuses and /proc:
 *   - lag: each stream's `ingest.lagMs` (how far ingest is behind the camera: the age of the oldest
 *     frame the source delivered that is not stored yet, queued or in the model);
 *   - frames encoded, gated, dropped (the live queue drops its oldest frame when the model is behind);
 *   - CPU of the serve process tree (serve + its ffmpeg children, user + system) as cores used, and
 *     RSS (serve alone, and the tree); the camera servers' CPU apart (they share the machine).
 * The first `--warmup` seconds (default 30: connecting, the first frames, onnxruntime's first calls)
 * are left out of every figure. At the end, once every stream has stored past its last event (two
 * minutes at most: a stream behind still is), it asks one question per event per camera
 * ("What color was the square on the <background> screen?", maxTokens 4) while the cameras still
 * stream: with a needle model the answer (from the model's logits) is scored against the clip's
 * truth; with a random-weight model answers mean nothing and are not scored, but whether an event
 * started a chunk of its own (the timeline's spans) is still checked: what gating must not lose.
 *
 *   node --import tsx bench/cameras.ts [--cameras 1,2,3,4] [--minutes 10] [--warmup 30]
 *     [--model probe-random-smolvlm2-256m] [--dtype fp32] [--gate on|off] [--events 6] [--fill] [--until-fail] [--out DIR]
 *
 * --events: events per camera (default 6, at most 6); 0 leaves every scene static: what is left
 * to encode is each stream's first frame and the gate's max-hold refreshes (docs/ingest.md, "Frame
 * gating"), so cameras created together show whether those refreshes fall together.
 * --fill: each clip opens with a busy stretch, FILL_SCENES scenes of FILL_SCENE_S seconds back to back
 * from 2 s (each a coloured screen unlike the one before), so that with the first frame each
 * stream encodes at least 17 frames and its context (16-frame window + 1 sink, serve's defaults) is
 * full before the measured run: RSS and lag with full windows. A scene outlasts the live queue (16
 * frames at 1 frame/s), so a loaded model that drops the oldest frames still encodes every scene.
 * The warm-up must cover it: --warmup >= 2 + FILL_SCENES x FILL_SCENE_S (386 s). The table shows
 * the context frames each stream held at the start and end of the measured run.
 * --until-fail: the sweep stops after the first N whose lag went past 5 s (a larger N would too).
 * --clips-only: make the cameras' clips (cached in the Vigil cache folder) and exit.
 *
 * --model default probe-random-smolvlm2-256m: its vision encoder is SigLIP-base/16 at 512 px, the
 * cost that bounds N (~80% of a frame). probe-needle-256m has the same decoder but a hand-built
 * colour classifier for a vision encoder (almost free), so it answers the events but understates a
 * frame's cost: run it for "events answered", not for N.
 *
 * Prints per N a table row and, at the end, the largest N whose lag stayed < 5 s on every stream for
 * the whole run after the warm-up, with its CPU and RSS; one JSON line; with --out, cameras.json and
 * two plots (lag vs time per N, max lag vs N). Only processes started here are signalled.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedProbeClip, type ColorName, type Needle, type ProbeClip } from '../ingest/index.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { parseGraphDtype } from '../src/model/graphFiles.js';
import { rtspAvailability, type RtspServer, startRtspServer } from '../test/fixtures/rtspServer.js';
import { type ServeProcess, startServe } from '../test/helpers/serveProcess.js';
import { writeLineChartPng } from './lineChart.js';
import { treeUsage } from './procTree.js';

const { values } = parseArgs({
  options: {
    cameras: { type: 'string', default: '1,2,3,4' },
    minutes: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '30' },
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    dtype: { type: 'string', default: 'fp32' },
    gate: { type: 'string', default: 'on' },
    events: { type: 'string', default: '6' },
    fill: { type: 'boolean', default: false },
    'until-fail': { type: 'boolean', default: false },
    'clips-only': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const COUNTS = values.cameras.split(',').map((n) => Number(n.trim()));
const RUN_S = Number(values.minutes) * 60;
const WARMUP_S = Number(values.warmup);
const DTYPE = parseGraphDtype(values.dtype);
const GATE = values.gate;
const LAG_BOUND_MS = 5000;
const TOKEN = 'bench-cameras-token-0123456789';
if (!COUNTS.every((n) => Number.isInteger(n) && n >= 1)) throw new Error(`--cameras must list positive integers, got '${values.cameras}'`);
if (!(RUN_S > 0 && WARMUP_S >= 0)) throw new Error('--minutes must be > 0 and --warmup >= 0');
if (GATE !== 'on' && GATE !== 'off') throw new Error(`--gate must be on or off, got '${GATE}'`);
/** --fill: scenes that with the first frame fill a 16-frame window and its sink (serve's defaults) during the warm-up. */
const FILL_SCENES = values.fill ? 16 : 0;
const FILL_SCENE_S = 24;
const FILL_END_S = 2 + FILL_SCENES * FILL_SCENE_S;
if (values.fill && WARMUP_S < FILL_END_S) throw new Error(`--fill needs --warmup >= ${FILL_END_S} (its scenes are in the warm-up)`);
/** Needle models answer "the square on the <colour> screen"; random-weight ones answer nothing meaningful. */
const SCORED = values.model.startsWith('probe-needle');

const began = performance.now();
const progress = (line: string): void => void process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(0)} s] ${line}\n`);
const load = (): number[] => os.loadavg().map((l) => Number(l.toFixed(2)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const maxOf = (xs: readonly number[]) => xs.reduce((a, b) => Math.max(a, b), 0);
const mib = (bytes: number) => round(bytes / 2 ** 20, 0);
/** The p-th percentile (nearest rank). */
function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

// Backgrounds the needle models name (docs/needle-model.md's palette; ffmpeg's orange is not the
// needle's #FFA500, so it is left out), one event per background per camera: a question names one.
const BACKGROUNDS: ColorName[] = ['red', 'blue', 'yellow', 'green', 'cyan', 'magenta', 'white'];
const MAX_EVENTS = Number(values.events);
if (!(Number.isInteger(MAX_EVENTS) && MAX_EVENTS >= 0 && MAX_EVENTS <= 6)) throw new Error(`--events must be 0..6, got '${values.events}'`);
/** First event (clip s): after the warm-up, so every event falls in the measured run. */
const FIRST_EVENT_S = WARMUP_S + 5;

/**
 * Camera `i`'s events: up to 6, 4 s each, spread over the measured run, backgrounds rotated per
 * camera. Cameras' events are staggered by 1/8 of the spacing (cameras 0-7, then again): unrelated
 * cameras do not all change at the same second (all at once would measure one burst, not the load).
 */
function eventsOf(i: number): Needle[] {
  const span = WARMUP_S + RUN_S - 10 - FIRST_EVENT_S;
  const count = Math.min(MAX_EVENTS, Math.max(1, Math.floor(span / 10)));
  const every = span / count;
  return Array.from({ length: count }, (_, k) => {
    const background = BACKGROUNDS[(i + k) % BACKGROUNDS.length]!;
    const square = BACKGROUNDS[(i + k + 3) % BACKGROUNDS.length]!;
    return { start: Math.round(FIRST_EVENT_S + (k + (i % 8) / 8) * every), duration: 4, background, square };
  });
}

/** --fill's busy start: scenes back to back from 2 s, each unlike the one before (never asked about). */
function fillOf(i: number): Needle[] {
  return Array.from({ length: FILL_SCENES }, (_, k) => ({
    start: 2 + k * FILL_SCENE_S,
    duration: FILL_SCENE_S,
    background: BACKGROUNDS[(i + k) % BACKGROUNDS.length]!,
    square: BACKGROUNDS[(i + k + 2) % BACKGROUNDS.length]!,
  }));
}

/** A static textured scene (the probe haystack's noise frozen) with the events; long enough to outlast the run. */
function cameraClip(i: number): Promise<ProbeClip> {
  const seconds = WARMUP_S + RUN_S + 90;
  return cachedProbeClip({ durationS: seconds, width: 640, height: 360, fps: 10, noiseFps: 1 / seconds, needles: [...fillOf(i), ...eventsOf(i)] });
}

/** The clip's events the bench asks about (not --fill's busy start). */
const eventsIn = (clip: ProbeClip) => clip.truth.needles.filter((e) => e.start >= FIRST_EVENT_S);

const headers = { Authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
async function call<T>(serve: ServeProcess, route: string, init: RequestInit = {}, timeoutMs = 30_000): Promise<T> {
  const res = await fetch(`${serve.url}${route}`, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${route}: ${res.status} ${text.slice(0, 300)}`);
  return (text ? JSON.parse(text) : null) as T;
}

interface ListedStatus {
  id: string;
  state: string;
  frames: number;
  ingest: { lagMs: number; drops: number; gated: number; fps: number } | null;
  memory: { contextFrames: number } | null;
}

interface Sample {
  /** Seconds since the streams were created. */
  s: number;
  /** Per stream: lag (ms), frames encoded, gated, dropped; absent while the stream has no ingest yet. */
  streams: Record<string, { lagMs: number; frames: number; gated: number; drops: number; state: string; contextFrames: number }>;
  cpuS: number;
  serveCpuS: number;
  serveRssBytes: number;
  treeRssBytes: number;
  camerasCpuS: number;
}

interface EventResult {
  camera: string;
  start: number;
  background: ColorName;
  square: ColorName;
  answer: string;
  correct: boolean | null;
  /** Whether a timeline span (a chunk) starts within the event. */
  ownChunk: boolean;
  ms: number;
}

interface RunResult {
  cameras: number;
  /** Over the measured run (after the warm-up), every stream. */
  lagMaxMs: number;
  lagP95Ms: number;
  lagP99Ms: number;
  lagMedianMs: number;
  lagMaxPerStreamMs: Record<string, number>;
  boundedLag: boolean;
  samples: number;
  sampledFrames: number;
  framesEncoded: number;
  framesGated: number;
  framesDropped: number;
  encodedPerS: number;
  cpuCores: number;
  serveCpuCores: number;
  camerasCpuCores: number;
  /** CPU seconds of the serve tree per encoded frame (onnxruntime's threads included). */
  cpuSPerEncodedFrame: number | null;
  serveRssMiBMax: number;
  /** serve's RSS at the first and last sample of the measured run. */
  serveRssMiBStart: number;
  serveRssMiBEnd: number;
  treeRssMiBMax: number;
  /** Frames in each stream's context (sinks + window) at the first and last sample of the measured run. */
  contextFramesStart: number[];
  contextFramesEnd: number[];
  events: EventResult[];
  /** Seconds waited after the run until every stream had stored past its last event (120 at most). */
  caughtUpS: number;
  eventsAnswered: number | null;
  eventsWithOwnChunk: number;
  load: { start: number[]; end: number[] };
  lagSeries: Array<[number, number]>;
}

/** serve's CPU and RSS, and the camera servers' CPU. */
function usage(serve: ServeProcess, cameras: RtspServer[]): Omit<Sample, 's' | 'streams'> | null {
  const tree = treeUsage(serve.pid);
  if (!tree) return null;
  const camerasCpuS = cameras.reduce((sum, c) => sum + (treeUsage(c.process.pid!)?.cpuS ?? 0), 0);
  return { cpuS: tree.cpuS, serveCpuS: tree.rootCpuS, serveRssBytes: tree.rootRssBytes, treeRssBytes: tree.treeRssBytes, camerasCpuS };
}

async function sample(serve: ServeProcess, cameras: RtspServer[], t0: number): Promise<Sample | null> {
  const listed = await call<{ streams: ListedStatus[] }>(serve, '/v1/streams');
  const use = usage(serve, cameras);
  if (!use) return null;
  const streams: Sample['streams'] = {};
  for (const st of listed.streams) {
    if (st.ingest) streams[st.id] = { lagMs: st.ingest.lagMs, frames: st.frames, gated: st.ingest.gated, drops: st.ingest.drops, state: st.state, contextFrames: st.memory?.contextFrames ?? 0 };
  }
  return { s: (performance.now() - t0) / 1000, streams, ...use };
}

/** One question per event per camera; the timeline around each event. */
async function askEvents(serve: ServeProcess, clips: ProbeClip[]): Promise<EventResult[]> {
  const results: EventResult[] = [];
  for (const [i, clip] of clips.entries()) {
    const id = `cam${i + 1}`;
    for (const e of eventsIn(clip)) {
      const t = performance.now();
      const body = JSON.stringify({ question: `What color was the square on the ${e.background} screen?`, maxTokens: 4 });
      const answer = (await call<{ text: string }>(serve, `/v1/streams/${id}/questions`, { method: 'POST', body }, 120_000)).text.trim();
      const ms = performance.now() - t;
      // Stream time of a live camera starts with its first frame, about when the RTSP server began
      // the clip: a chunk starting within a second of the event's span is the event's own.
      const timeline = await call<{ spans: Array<{ from: number; to: number }> }>(serve, `/v1/streams/${id}/timeline?from=${Math.max(0, e.start - 2)}&to=${e.end + 2}`);
      const ownChunk = timeline.spans.some((s) => s.from >= e.start - 1 && s.from < e.end);
      results.push({ camera: id, start: e.start, background: e.background, square: e.square, answer, correct: SCORED ? answer === e.square : null, ownChunk, ms: Math.round(ms) });
    }
  }
  return results;
}

async function runCameras(count: number, python: string, scratch: string): Promise<RunResult> {
  const clips: ProbeClip[] = [];
  for (let i = 0; i < count; i++) clips.push(await cameraClip(i));
  const cameras: RtspServer[] = [];
  let serve: ServeProcess | null = null;
  const startLoad = load();
  try {
    for (const clip of clips) cameras.push(await startRtspServer(python, { file: clip.clip }));
    const args = ['--port', '0', '--data', path.join(scratch, `data-${count}`), '--model', modelDir, '--dtype', DTYPE, '--allow-network', '127.0.0.0/8', '--quiet'];
    if (GATE === 'off') args.push('--gate', 'off');
    serve = await startServe(args, TOKEN);
    const s = serve;
    progress(`N=${count}: serve ${s.url} (${values.model}, ${DTYPE}, gate ${GATE}); cameras ${cameras.map((c) => c.port).join(', ')}; load ${startLoad.join(' / ')}`);
    // Stream settings are the service's defaults (window 16, sinks 1, float32 KV, the gate of --gate).
    for (const [i, camera] of cameras.entries()) {
      await call(s, '/v1/streams', { method: 'POST', body: JSON.stringify({ id: `cam${i + 1}`, source: camera.url, fps: 1 }) });
    }
    const t0 = performance.now();
    const samples: Sample[] = [];
    const endS = WARMUP_S + RUN_S;
    let nextLog = 30;
    for (let k = 1; ; k++) {
      await sleep(Math.max(0, t0 + k * 1000 - performance.now()));
      const got = await sample(s, cameras, t0).catch((error: unknown) => {
        progress(`sample failed: ${(error as Error).message}`);
        return null;
      });
      if (got) samples.push(got);
      const elapsed = (performance.now() - t0) / 1000;
      if (got && elapsed >= nextLog) {
        nextLog += 30;
        const lags = Object.values(got.streams).map((x) => x.lagMs);
        progress(`N=${count} ${elapsed.toFixed(0)} s: lag max ${(maxOf(lags) / 1000).toFixed(1)} s, frames ${Object.values(got.streams).map((x) => `${x.frames}+${x.gated}g-${x.drops}d`).join(' ')}, RSS ${mib(got.serveRssBytes)} MiB, load ${load().join(' / ')}`);
      }
      if (elapsed >= endS) break;
    }
    const measured = samples.filter((x) => x.s >= WARMUP_S);
    const first = measured[0];
    const last = measured.at(-1);
    if (!first || !last || last.s - first.s < 1) throw new Error(`N=${count}: no samples after the warm-up`);
    const ids = clips.map((_, i) => `cam${i + 1}`);
    const lagsOf = (id: string) => measured.map((x) => x.streams[id]?.lagMs ?? NaN).filter(Number.isFinite);
    const allLags = ids.flatMap(lagsOf);
    // A stream not yet ingesting after the warm-up has no lag figure: that is not a bounded lag.
    const missing = ids.filter((id) => measured.some((x) => !x.streams[id] || x.streams[id].state !== 'live'));
    const delta = (get: (x: Sample) => number) => get(last) - get(first);
    const sum = (x: Sample, field: 'frames' | 'gated' | 'drops') => ids.reduce((n, id) => n + (x.streams[id]?.[field] ?? 0), 0);
    const wall = last.s - first.s;
    const encoded = delta((x) => sum(x, 'frames'));
    const gated = delta((x) => sum(x, 'gated'));
    const dropped = delta((x) => sum(x, 'drops'));
    const cpu = delta((x) => x.cpuS);
    // Questions once every stream has stored past its last event (a stream behind is still behind:
    // waiting tells an event not yet stored from one lost), two minutes at most.
    const waitStart = performance.now();
    const ends = new Map(clips.map((c, i) => [`cam${i + 1}`, maxOf(eventsIn(c).map((e) => e.end)) + 1]));
    for (;;) {
      const listed = await call<{ streams: Array<{ id: string; progress: { t: number } }> }>(s, '/v1/streams');
      if (listed.streams.every((st) => st.progress.t >= (ends.get(st.id) ?? 0)) || performance.now() - waitStart > 120_000) break;
      await sleep(1000);
    }
    const caughtUpS = round((performance.now() - waitStart) / 1000, 1);
    progress(`N=${count}: asking ${clips.reduce((n, c) => n + eventsIn(c).length, 0)} questions (one per event per camera) after waiting ${caughtUpS} s for the last events to be stored`);
    const events = await askEvents(s, clips);
    const lagMaxMs = maxOf(allLags);
    return {
      cameras: count,
      lagMaxMs,
      lagP95Ms: pct(allLags, 95),
      lagP99Ms: pct(allLags, 99),
      lagMedianMs: pct(allLags, 50),
      lagMaxPerStreamMs: Object.fromEntries(ids.map((id) => [id, maxOf(lagsOf(id))])),
      boundedLag: missing.length === 0 && lagMaxMs < LAG_BOUND_MS,
      samples: measured.length,
      sampledFrames: encoded + gated + dropped,
      framesEncoded: encoded,
      framesGated: gated,
      framesDropped: dropped,
      encodedPerS: round(encoded / wall, 3),
      cpuCores: round(cpu / wall),
      serveCpuCores: round(delta((x) => x.serveCpuS) / wall),
      camerasCpuCores: round(delta((x) => x.camerasCpuS) / wall, 3),
      cpuSPerEncodedFrame: encoded > 0 ? round(cpu / encoded, 3) : null,
      serveRssMiBMax: mib(maxOf(measured.map((x) => x.serveRssBytes))),
      serveRssMiBStart: mib(first.serveRssBytes),
      serveRssMiBEnd: mib(last.serveRssBytes),
      contextFramesStart: ids.map((id) => first.streams[id]?.contextFrames ?? 0),
      contextFramesEnd: ids.map((id) => last.streams[id]?.contextFrames ?? 0),
      treeRssMiBMax: mib(maxOf(measured.map((x) => x.treeRssBytes))),
      events,
      caughtUpS,
      eventsAnswered: SCORED ? events.filter((e) => e.correct).length : null,
      eventsWithOwnChunk: events.filter((e) => e.ownChunk).length,
      load: { start: startLoad, end: load() },
      lagSeries: samples.map((x) => [round(x.s, 1), round(maxOf(Object.values(x.streams).map((v) => v.lagMs)) / 1000)]),
    };
  } finally {
    const code = await serve?.stop();
    if (code !== undefined && code !== 0) progress(`N=${count}: serve exited with ${code}: ${serve!.stderr().slice(-2000)}`);
    for (const c of cameras) await c.kill();
  }
}

if (values['clips-only']) {
  for (let i = 0; i < maxOf(COUNTS); i++) progress(`camera ${i + 1}: ${(await cameraClip(i)).clip}`);
  process.exit(0);
}
let modelDir = values.model;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-cameras-'));
try {
  const python = rtspAvailability().python;
  if (!python) throw new Error(rtspAvailability().reason);
  // Built (or found) here, once: serve's start-up then only loads it.
  modelDir = resolveModelDir(values.model, { dtype: DTYPE });
  const results: RunResult[] = [];
  for (const count of COUNTS) {
    const r = await runCameras(count, python, scratch);
    results.push(r);
    progress(`N=${count}: lag max ${(r.lagMaxMs / 1000).toFixed(1)} s, dropped ${r.framesDropped}, ${r.cpuCores} cores, RSS ${r.serveRssMiBMax} MiB; events answered ${r.eventsAnswered ?? 'n/a'}, own chunk ${r.eventsWithOwnChunk}/${r.events.length}`);
    if (values['until-fail'] && !r.boundedLag) {
      progress(`N=${count} did not keep lag < ${LAG_BOUND_MS / 1000} s: --until-fail ends the sweep`);
      break;
    }
  }
  const held = results.filter((r) => r.boundedLag).sort((a, b) => b.cameras - a.cameras)[0] ?? null;
  const settings = `${values.model} ${DTYPE}, gate ${GATE}${MAX_EVENTS !== 6 ? `, ${MAX_EVENTS} events per camera` : ''}${values.fill ? `, --fill (${FILL_SCENES} scenes of ${FILL_SCENE_S} s first)` : ''}, ${values.minutes} min per N after a ${WARMUP_S}-s warm-up (left out), 1 frame/s, window 16 (serve defaults)`;
  console.log(`\nCameras per machine: ${settings}; ${os.cpus().length} cores; ${((performance.now() - began) / 1000).toFixed(0)} s`);
  console.log('\n| N | lag max (s) | lag p99 (s) | lag p95 (s) | lag median (s) | encoded / gated / dropped frames | encoded/s | CPU cores (serve tree) | CPU s per encoded frame | serve RSS max (MiB) | serve RSS start -> end (MiB) | tree RSS max (MiB) | context frames per stream, start -> end | cameras\' CPU (cores) | wait for last events (s) | events: own chunk | events answered | load 1/5/15 start -> end |');
  console.log('|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---|');
  for (const r of results) {
    console.log(
      `| ${r.cameras} | ${(r.lagMaxMs / 1000).toFixed(1)} | ${(r.lagP99Ms / 1000).toFixed(1)} | ${(r.lagP95Ms / 1000).toFixed(1)} | ${(r.lagMedianMs / 1000).toFixed(1)} | ${r.framesEncoded} / ${r.framesGated} / ${r.framesDropped} | ${r.encodedPerS} | ${r.cpuCores} | ${r.cpuSPerEncodedFrame ?? '-'} | ${r.serveRssMiBMax} | ${r.serveRssMiBStart} -> ${r.serveRssMiBEnd} | ${r.treeRssMiBMax} | ${r.contextFramesStart.join(', ')} -> ${r.contextFramesEnd.join(', ')} | ${r.camerasCpuCores} | ${r.caughtUpS} | ${r.eventsWithOwnChunk}/${r.events.length} | ${r.eventsAnswered === null ? 'not scored (random weights)' : `${r.eventsAnswered}/${r.events.length}`} | ${r.load.start.join(' / ')} -> ${r.load.end.join(' / ')} |`,
    );
  }
  console.log(
    held
      ? `\nLargest N with lag < ${LAG_BOUND_MS / 1000} s on every stream for the whole run (first ${WARMUP_S} s left out): N = ${held.cameras}, at ${held.cpuCores} cores (serve tree) and ${held.serveRssMiBMax} MiB RSS (serve; ${held.treeRssMiBMax} MiB with ffmpeg).`
      : `\nNo N of ${values.cameras} kept lag < ${LAG_BOUND_MS / 1000} s on every stream for the whole run (first ${WARMUP_S} s left out).`,
  );
  const summary = { bench: 'cameras', options: { ...values, warmup: WARMUP_S }, largestBoundedN: held?.cameras ?? null, results: results.map(({ lagSeries: _series, ...r }) => r) };
  console.log(JSON.stringify(summary));
  if (values.out) {
    fs.mkdirSync(values.out, { recursive: true });
    fs.writeFileSync(path.join(values.out, 'cameras.json'), `${JSON.stringify({ ...summary, lagSeries: Object.fromEntries(results.map((r) => [r.cameras, r.lagSeries])) }, null, 2)}\n`);
    await writeLineChartPng(
      {
        title: `Stream lag vs time, N cameras on one vigil serve (${values.model} ${DTYPE}, gate ${GATE})`,
        xLabel: 'seconds since the streams were created',
        panels: [{ yLabel: 'lag, worst stream (s)', series: results.map((r) => ({ name: `N=${r.cameras}`, points: r.lagSeries })) }],
      },
      path.join(values.out, 'cameras-lag.png'),
    );
    await writeLineChartPng(
      {
        title: `Max lag after the ${WARMUP_S}-s warm-up vs cameras (${values.model} ${DTYPE}, gate ${GATE})`,
        xLabel: 'cameras (N)',
        panels: [
          { yLabel: 'max lag (s)', series: [{ name: 'max lag', points: results.map((r) => [r.cameras, r.lagMaxMs / 1000]) }, { name: `bound (${LAG_BOUND_MS / 1000} s)`, points: results.map((r) => [r.cameras, LAG_BOUND_MS / 1000]) }] },
          { yLabel: 'CPU cores (serve tree)', series: [{ name: 'cores', points: results.map((r) => [r.cameras, r.cpuCores]) }] },
        ],
      },
      path.join(values.out, 'cameras-max-lag.png'),
    );
    progress(`wrote ${values.out}/cameras.json, cameras-lag.png, cameras-max-lag.png`);
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
