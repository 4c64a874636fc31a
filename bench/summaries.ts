/**
 * How summaries cut a range into events on a probe model (docs/api.md, "Summaries"): a generated
 * clip with three needle scenes in a noisy haystack (noise changing twice a second), ingested through
 * the StreamManager (real model, store, index), then one summary of the whole clip. Prints the
 * consecutive representative distances (median, p90, at the scene boundaries), the calibrated
 * threshold and the events found, next to the scheduled scenes.
 *
 *   node --import tsx bench/summaries.ts [--model probe-random-tiny] [--gate off|default] [--json]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedProbeClip, type Needle } from '../ingest/probeClip.js';
import { StreamManager } from '../src/engine/streamManager.js';
import { scanRange } from '../src/engine/summaries/rangeScan.js';
import { buildProbeModel } from '../src/model/probe/probeModelFolder.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'probe-random-tiny' },
    gate: { type: 'string', default: 'off' },
    json: { type: 'boolean', default: false },
  },
});

const CLIP_S = 60;
const NEEDLES: Needle[] = [
  { start: 10, duration: 4, background: 'red', square: 'green' },
  { start: 30, duration: 4, background: 'blue', square: 'yellow' },
  { start: 45, duration: 6, background: 'white', square: 'orange' },
];
const boundaries = NEEDLES.flatMap((n) => [n.start, n.start + n.duration]);

const clip = await cachedProbeClip({ durationS: CLIP_S, width: 320, height: 180, needles: NEEDLES });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-summaries-'));
fs.copyFileSync(clip.clip, path.join(dir, 'clip.mp4'));
const manager = await StreamManager.open({
  dataDir: path.join(dir, 'data'),
  model: buildProbeModel(values.model as Parameters<typeof buildProbeModel>[0], { seed: 0 }).dir,
  policy: { filesDir: dir },
  store: { fsync: 'none' },
  ...(values.gate === 'off' ? { defaults: { gate: 'off' as const } } : {}),
});
try {
  await manager.create({ id: 's', source: 'clip.mp4', window: 4 });
  for (;;) {
    const s = manager.status('s');
    if (s.state === 'failed') throw new Error(`ingest failed: ${JSON.stringify(s.error)}`);
    if (s.state === 'ended') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  // The distances the summary calibrates on (read here from the stream's store, as the summary does).
  const store = (manager as unknown as { streams: Map<string, { session: { store: Parameters<typeof scanRange>[0] } }> }).streams.get('s')!.session.store;
  const units = scanRange(store, 0, CLIP_S, 4096).units;
  const sorted = units.slice(1).map((u) => u.distance).sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const atBoundaries = units.filter((u) => boundaries.includes(Math.round(u.tStart))).map((u) => ({ t: u.tStart, distance: u.distance }));
  const summary = await manager.summarize('s', { from: 0, to: CLIP_S, maxTokens: 4 });
  const events = summary.events.map((e) => ('gap' in e ? e : { from: e.from, to: e.to, startedBy: e.startedBy, chunks: e.chunks }));
  const result = {
    model: values.model,
    gate: values.gate,
    chunks: units.length,
    distances: { median: at(0.5), p90: at(0.9), max: sorted.at(-1) ?? 0, atBoundaries },
    segmentation: summary.segmentation,
    scenes: [0, ...boundaries].map((from, i, all) => ({ from, to: all[i + 1] ?? CLIP_S })),
    events,
    timing: summary.timing,
  };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    const f = (x: number) => x.toFixed(3);
    console.log(`${values.model}, gate ${values.gate}: ${units.length} chunks; distances median ${f(result.distances.median)}, p90 ${f(result.distances.p90)}, max ${f(result.distances.max)}`);
    console.log(`at the scene boundaries: ${atBoundaries.map((b) => `${b.t} s ${f(b.distance)}`).join(', ')}`);
    console.log(`threshold ${summary.segmentation.threshold}, ${summary.segmentation.changes} changes before merging; ${events.length} events:`);
    for (const e of events) console.log('  ', JSON.stringify(e));
    console.log(`scheduled scenes: ${result.scenes.map((s) => `${s.from}-${s.to}`).join(', ')}`);
    console.log(`timing: ${JSON.stringify(summary.timing)}`);
  }
} finally {
  await manager.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
}
