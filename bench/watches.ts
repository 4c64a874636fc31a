/**
 * Watches benchmark (docs/watches.md):
 *
 * 1. prefilter: the per-frame cost of N watches' prefilter (scores + calibration, WatchEngine.onFrame)
 *    at smolvlm2-256m geometry (30 layers, 3 KV heads x 64 = 192 values per layer), synthetic
 *    representatives: a steady scene (a base vector plus frame noise) with a 3-frame event every 60
 *    frames; model checks are a fake that answers at once, so only the prefilter is timed. Also the
 *    share of frames that ask for a check.
 * 2. needles (probe-needle, a generated clip at 1 fps, real model, store and index): a watch per
 *    needle screen color (answer-matches its square color) plus watches that must never fire; alert
 *    latency in frames (alert t - needle start), precision and recall, model checks per frame.
 *    With the `delivery` part: each alert also goes through a Notifier (persisted outbox) to a webhook
 *    receiver on 127.0.0.2 and, via a real mosquitto on 127.0.0.1, to an MQTT subscriber; the wall
 *    time from the needle's first frame being handed to the session (addFrame) to the alert being
 *    raised, received by the webhook receiver and by the MQTT subscriber (ms; frames are handed as
 *    fast as the model takes them, not at the clip's 1 fps).
 * 3. --model-frames N: the same clip's first N frames through probe-random-smolvlm2-256m (random
 *    weights, real geometry: scores with real-looking noise), 8 watches: the share of frames that
 *    cost a check when nothing is to be found, and the prefilter time measured inside addFrame.
 *
 *   node --import tsx bench/watches.ts [--frames 5000] [--watches 1,8,16] [--model-frames 0] [--parts prefilter,needles,random,delivery] [--json]
 *   VIGIL_KERNELS=js node --import tsx bench/watches.ts     # the JavaScript kernels instead of the C addon
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedProbeClip, type Needle } from '../ingest/probeClip.js';
import { OutboundPolicy } from '../ingest/net/outboundPolicy.js';
import { nativeKernels } from '../kernels/native.js';
import type { FrameChunk } from '../memory/frameChunk.js';
import { ingestIntoSession } from '../src/engine/ingestToSession.js';
import { Notifier } from '../src/engine/notify/notifier.js';
import { StreamSession } from '../src/engine/streamSession.js';
import { WatchEngine } from '../src/engine/watches/watchEngine.js';
import { parseWatchSpec } from '../src/engine/watches/parseWatchSpec.js';
import type { Alert, WatchCheck } from '../src/engine/watches/types.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { listenLoopback } from '../test/helpers/loopbackServer.js';
import { MOSQUITTO_MISSING, startMosquitto, subscribe } from '../test/helpers/mosquitto.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '5000' },
    watches: { type: 'string', default: '1,8,16' },
    'model-frames': { type: 'string', default: '0' },
    parts: { type: 'string', default: 'prefilter,needles,random' },
    json: { type: 'boolean', default: false },
  },
});
const PARTS = new Set(values.parts.split(','));
const FRAMES = Number(values.frames);
const WATCH_COUNTS = values.watches.split(',').map(Number);
const MODEL_FRAMES = Number(values['model-frames']);
const log = (line: string) => process.stderr.write(`${line}\n`);
const kernels = nativeKernels() ? 'native' : 'js';

// smolvlm2-256m: 30 layers, 3 KV heads, head dim 64.
const L = 30;
const DIM = 3 * 64;

function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

/** Median and max of the measured values; `missing` counts the events never received. */
function spread(values: Array<number | null>): { median: number | null; max: number | null; missing: number } {
  const got = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (got.length === 0) return { median: null, max: null, missing: values.length };
  const mid = got.length >> 1;
  return { median: got.length % 2 ? got[mid]! : (got[mid - 1]! + got[mid]!) / 2, max: got.at(-1)!, missing: values.length - got.length };
}

async function prefilterBench(watches: number) {
  const g = gaussian(watches);
  const vector = (scale: number) => Array.from({ length: L }, () => Float32Array.from({ length: DIM }, () => scale * g()));
  const base = vector(1);
  const event = vector(1);
  let checks = 0;
  const engine = new WatchEngine({
    stream: 'bench',
    numLayers: L,
    dim: DIM,
    check: (_question, started) => {
      started();
      checks++;
      return Promise.resolve({ answer: 'no', checkMs: 0 });
    },
    // A window of 4 frames after one sink, as a stream would hold.
    contextChunkIds: () => new Set([0, frame - 3, frame - 2, frame - 1, frame]),
  });
  let frame = 0;
  for (let w = 0; w < watches; w++) engine.activate(parseWatchSpec({ question: `q${w}`, trigger: 'yes', maxIntervalSec: 1e4 }), vector(1), false);
  const times: number[] = [];
  for (let i = 0; i < FRAMES; i++) {
    frame = i;
    const inEvent = i % 60 >= 30 && i % 60 < 33;
    const source = inEvent ? event : base;
    const representatives = source.map((layer) => Float32Array.from(layer, (v) => v + 0.05 * g()));
    const chunk: FrameChunk = { chunkId: i, tStart: i, tEnd: i, wallTime: i * 1000, tokenCount: 64, numLayers: L, numKvHeads: 3, headDim: 64, keys: [], values: [], representatives };
    const t0 = performance.now();
    engine.onFrame(chunk);
    times.push(performance.now() - t0);
    await engine.idle();
  }
  const warm = times.slice(100);
  const events = Math.floor(FRAMES / 60);
  const byReason: Record<string, number> = {};
  for (const st of Object.values(engine.stats())) for (const [k, v] of Object.entries(st.checksByReason)) byReason[k] = (byReason[k] ?? 0) + v;
  return {
    watches,
    byReason,
    meanMs: warm.reduce((a, b) => a + b, 0) / warm.length,
    p50Ms: quantile(warm, 0.5),
    p99Ms: quantile(warm, 0.99),
    checkFraction: checks / (watches * FRAMES),
    // Each event is 2 changes (in, out); the first frame is a check too.
    expectedChecks: watches * (1 + 2 * events),
    checks,
  };
}

interface NeedleRow {
  question: string;
  pattern: string | null;
  needleStarts: number[];
  alerts: number[];
  latencyFrames: number[];
  truePositives: number;
  falsePositives: number;
  checks: number;
}

/** Wall ms from a needle's first frame handed to the session to its alert raised / received. */
interface DeliveryRow {
  alertId: string;
  needleStart: number;
  raisedMs: number;
  webhookMs: number | null;
  mqttMs: number | null;
}

/**
 * The receiving side of the delivery part: a Notifier (own outbox folder) with one webhook (an HTTP
 * receiver on 127.0.0.2) and one MQTT broker (mosquitto on 127.0.0.1, a subscriber to its alerts),
 * each recording when every alert id arrived (performance.now(), this process's clock).
 */
async function deliveryRig(dir: string) {
  if (MOSQUITTO_MISSING) throw new Error(MOSQUITTO_MISSING);
  const webhookAt = new Map<string, number>();
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { alert: { id: string } };
      if (!webhookAt.has(body.alert.id)) webhookAt.set(body.alert.id, performance.now());
      res.writeHead(204).end();
    });
  });
  const listening = await listenLoopback(receiver, '127.0.0.2');
  const broker = await startMosquitto();
  const subscriber = await subscribe(broker.url, 'vigil/+/alerts');
  const notifier = await Notifier.open({
    dir,
    policy: new OutboundPolicy({ allowNetworks: ['127.0.0.1/32', '127.0.0.2/32'] }),
    webhooks: [{ id: 'hook', url: `http://127.0.0.2:${listening.port}/hook`, secret: 'bench-secret-0123456789' }],
    mqtt: [{ id: 'mqtt', url: broker.url }],
  });
  const connected = Date.now() + 10_000;
  while (!notifier.status().mqtt[0]!.connected) {
    if (Date.now() > connected) throw new Error('the notifier did not connect to mosquitto');
    await new Promise((r) => setTimeout(r, 20));
  }
  const mqttAt = (id: string) => subscriber.messages.find((m) => (JSON.parse(m.payload) as { id: string }).id === id)?.at ?? null;
  return {
    notifier,
    webhookAt: (id: string) => webhookAt.get(id) ?? null,
    mqttAt,
    /** Waits (up to 10 s) until both receivers have every alert. */
    async received(ids: string[]): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (!ids.every((id) => webhookAt.has(id) && mqttAt(id) !== null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
    async close(): Promise<void> {
      await notifier.close();
      await subscriber.close();
      await broker.stop();
      await listening.close();
    },
  };
}

async function needleBench(deliver: boolean) {
  const needles: Needle[] = [
    { start: 20, duration: 4, background: 'red', square: 'green' },
    { start: 60, duration: 3, background: 'blue', square: 'yellow' },
    { start: 100, duration: 4, background: 'red', square: 'green' },
    { start: 140, duration: 5, background: 'white', square: 'magenta' },
    { start: 180, duration: 3, background: 'blue', square: 'yellow' },
  ];
  const durationS = 220;
  const clip = await cachedProbeClip({ durationS, needles });
  const model = await VisionLanguageModel.load(buildProbeModel('probe-needle', { seed: 0 }).dir);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-watches-'));
  const rig = deliver ? await deliveryRig(path.join(scratch, 'notify')) : null;
  try {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'needles'), sinkFrames: 1, windowFrames: 1, gate: 'off' });
    // When each frame is handed to the session (the start of an event's latency).
    const handedAt = new Map<number, number>();
    const addFrame = session.addFrame.bind(session);
    session.addFrame = (image, t, wallTime, frame) => {
      handedAt.set(t, performance.now());
      return addFrame(image, t, wallTime, frame);
    };
    const raisedAt = new Map<string, number>();
    const enqueues: Array<Promise<unknown>> = [];
    const specs = [
      { background: 'red', square: 'green' },
      { background: 'blue', square: 'yellow' },
      { background: 'white', square: 'magenta' },
      // Must never fire: screens that never appear.
      { background: 'cyan', square: null },
      { background: 'orange', square: null },
    ];
    const watchIds: string[] = [];
    for (const s of specs) {
      const question = `What color was the square on the ${s.background} screen?`;
      const w = await session.addWatch(s.square ? { question, trigger: 'answer-matches', pattern: s.square, cooldownSec: 0 } : { question, trigger: 'answer-changes', cooldownSec: 0 });
      watchIds.push(w.id);
    }
    const checks: WatchCheck[] = [];
    session.watches.onCheck((c) => {
      checks.push(c);
      if (!c.alert) return;
      raisedAt.set(c.alert.id, performance.now());
      // As the manager does: handed to the outbox, not awaited by the watch engine.
      if (rig) enqueues.push(rig.notifier.enqueue(c.alert));
    });
    const started = performance.now();
    const ingest = await ingestIntoSession(session, clip.clip, { fps: 1 });
    await session.watches.idle();
    const wallS = (performance.now() - started) / 1000;
    const alerts: Alert[] = session.alerts();
    const stats = session.watches.stats();
    const rows: NeedleRow[] = specs.map((s, i) => {
      const mine = alerts.filter((a) => a.watchId === watchIds[i]);
      const starts = needles.filter((n) => n.background === s.background).map((n) => n.start);
      const matched = new Set<number>();
      let falsePositives = 0;
      const latencyFrames: number[] = [];
      for (const a of mine) {
        const needle = needles.find((n) => n.background === s.background && a.t >= n.start && a.t < n.start + n.duration);
        if (needle && !matched.has(needle.start)) {
          matched.add(needle.start);
          latencyFrames.push(a.t - needle.start);
        } else falsePositives++;
      }
      return { question: `${s.background} screen`, pattern: s.square, needleStarts: starts, alerts: mine.map((a) => a.t), latencyFrames, truePositives: matched.size, falsePositives, checks: stats[watchIds[i]!]!.checks };
    });
    const checkMs = alerts.map((a) => a.checkMs);
    const totalChecks = rows.reduce((n, r) => n + r.checks, 0);
    await Promise.all(enqueues);
    await rig?.received(alerts.map((a) => a.id));
    const delivery: DeliveryRow[] = [];
    for (const a of alerts) {
      const needle = needles.find((n) => a.t >= n.start && a.t < n.start + n.duration);
      // The needle's first frame: the earliest handed at or after its start.
      let firstFrame: number | undefined;
      for (const t of handedAt.keys()) if (needle && t >= needle.start && (firstFrame === undefined || t < firstFrame)) firstFrame = t;
      const handed = firstFrame === undefined ? undefined : handedAt.get(firstFrame);
      if (!needle || handed === undefined || !rig) continue;
      const since = (at: number | null) => (at === null ? null : at - handed);
      delivery.push({ alertId: a.id, needleStart: needle.start, raisedMs: since(raisedAt.get(a.id) ?? null)!, webhookMs: since(rig.webhookAt(a.id)), mqttMs: since(rig.mqttAt(a.id)) });
    }
    await session.dispose();
    return {
      clip: { durationS, needles: needles.length, framesEncoded: ingest.framesEncoded },
      rows,
      precision: rows.reduce((n, r) => n + r.truePositives, 0) / Math.max(1, rows.reduce((n, r) => n + r.truePositives + r.falsePositives, 0)),
      recall: rows.reduce((n, r) => n + r.truePositives, 0) / rows.reduce((n, r) => n + r.needleStarts.length, 0),
      checksPerWatchFrame: totalChecks / (specs.length * ingest.framesEncoded),
      meanCheckMs: checkMs.reduce((a, b) => a + b, 0) / Math.max(1, checkMs.length),
      prefilterMsPerFrame: session.watches.prefilterMsPerFrame,
      wallS,
      delivery: rig ? { rows: delivery, raised: spread(delivery.map((d) => d.raisedMs)), webhook: spread(delivery.map((d) => d.webhookMs)), mqtt: spread(delivery.map((d) => d.mqttMs)) } : null,
    };
  } finally {
    await rig?.close();
    await model.dispose();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

async function randomModelBench(frames: number) {
  const clip = await cachedProbeClip({ durationS: frames, needles: [] });
  const model = await VisionLanguageModel.load(buildProbeModel('probe-random-smolvlm2-256m', { seed: 0 }).dir);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-watches-random-'));
  try {
    const session = await StreamSession.open(model, { dir: path.join(scratch, 'random'), sinkFrames: 1, windowFrames: 4, gate: 'off' });
    const questions = ['Is there a person at the door?', 'Is a car parked in the driveway?', 'Is the garage door open?', 'Is there smoke?', 'Is a package on the porch?', 'Is anyone in the pool?', 'Is the light on?', 'Is there a dog in the yard?'];
    for (const question of questions) await session.addWatch({ question, trigger: 'yes', maxIntervalSec: 1e4 });
    const scoreCheckTimes: number[] = [];
    const checkMs: number[] = [];
    session.watches.onCheck((c) => {
      checkMs.push(c.checkMs);
      if (c.reason === 'score') scoreCheckTimes.push(c.t);
    });
    const ingest = await ingestIntoSession(session, clip.clip, { fps: 1 });
    await session.watches.idle();
    const stats = Object.values(session.watches.stats());
    const checks = stats.reduce((n, s) => n + s.checks, 0);
    const byReason = stats.reduce<Record<string, number>>((acc, s) => {
      for (const [k, v] of Object.entries(s.checksByReason)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    const result = {
      frames: ingest.framesEncoded,
      watches: questions.length,
      checkFraction: checks / (questions.length * ingest.framesEncoded),
      checkFractionAfterFirst: (checks - questions.length) / (questions.length * Math.max(1, ingest.framesEncoded - 1)),
      byReason,
      // Past the calibration's warmup (8 differences): score checks per watch-frame.
      steadyScoreCheckFraction: scoreCheckTimes.filter((t) => t > 8).length / (questions.length * Math.max(1, ingest.framesEncoded - 9)),
      scoreCheckTimes,
      checkMs: { mean: checkMs.reduce((a, b) => a + b, 0) / Math.max(1, checkMs.length), p50: quantile(checkMs, 0.5), max: Math.max(...checkMs) },
      prefilterMsPerFrame: session.watches.prefilterMsPerFrame,
      meanPhaseMs: session.stats().meanPhaseMs,
    };
    await session.dispose();
    return result;
  } finally {
    await model.dispose();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

const prefilter = [];
for (const n of PARTS.has('prefilter') ? WATCH_COUNTS : []) {
  const r = await prefilterBench(n);
  prefilter.push(r);
  log(`prefilter (${kernels} kernels), ${n} watches, ${FRAMES} frames: mean ${r.meanMs.toFixed(4)} ms/frame, p50 ${r.p50Ms.toFixed(4)}, p99 ${r.p99Ms.toFixed(4)}; checks ${r.checks} (${(100 * r.checkFraction).toFixed(2)}% of watch-frames; ${r.expectedChecks} = first + event in/out; by reason ${JSON.stringify(r.byReason)})`);
}
const needles = PARTS.has('needles') || PARTS.has('delivery') ? await needleBench(PARTS.has('delivery')) : null;
if (needles) {
  for (const r of needles.rows) log(`needles: ${r.question} /${r.pattern ?? '(answer-changes)'}/: needles at ${r.needleStarts.join(',') || '-'}, alerts at ${r.alerts.join(',') || '-'}, latency ${r.latencyFrames.join(',') || '-'} frames, TP ${r.truePositives} FP ${r.falsePositives}, ${r.checks} checks`);
  const ms = (v: number | null) => (v === null ? 'never' : `${v.toFixed(1)} ms`);
  for (const d of needles.delivery?.rows ?? []) log(`delivery: needle at ${d.needleStart} s: alert raised ${ms(d.raisedMs)}, webhook received ${ms(d.webhookMs)}, MQTT received ${ms(d.mqttMs)} after its first frame was handed to the session`);
  if (needles.delivery) {
    const { raised, webhook, mqtt } = needles.delivery;
    log(`delivery (${needles.delivery.rows.length} events): raised median ${ms(raised.median)}, max ${ms(raised.max)}; webhook median ${ms(webhook.median)}, max ${ms(webhook.max)} (${webhook.missing} missing); MQTT median ${ms(mqtt.median)}, max ${ms(mqtt.max)} (${mqtt.missing} missing)`);
  }
  log(`needles: precision ${needles.precision.toFixed(2)}, recall ${needles.recall.toFixed(2)}, ${(100 * needles.checksPerWatchFrame).toFixed(2)}% of watch-frames checked, mean check ${needles.meanCheckMs.toFixed(1)} ms, prefilter ${needles.prefilterMsPerFrame.toFixed(4)} ms/frame (5 watches, 2 layers), ${needles.clip.framesEncoded} frames in ${needles.wallS.toFixed(1)} s`);
}
const random = MODEL_FRAMES > 0 && PARTS.has('random') ? await randomModelBench(MODEL_FRAMES) : null;
if (random) log(`random 256m model, ${random.watches} yes-watches, ${random.frames} haystack frames: ${(100 * random.checkFraction).toFixed(1)}% of watch-frames checked (${(100 * random.checkFractionAfterFirst).toFixed(1)}% after the first frame; ${JSON.stringify(random.byReason)}; score checks past the warmup: ${(100 * random.steadyScoreCheckFraction).toFixed(1)}% of watch-frames, at t ${random.scoreCheckTimes.join(',')}), check ${random.checkMs.mean.toFixed(0)} ms mean (p50 ${random.checkMs.p50.toFixed(0)}, max ${random.checkMs.max.toFixed(0)}), encode ${(random.meanPhaseMs.totalMs ?? Object.values(random.meanPhaseMs).reduce((a, b) => a + b, 0)).toFixed(0)} ms/frame, prefilter ${random.prefilterMsPerFrame.toFixed(4)} ms/frame`);
if (values.json) process.stdout.write(`${JSON.stringify({ kernels, prefilter, needles, random }, null, 2)}\n`);
