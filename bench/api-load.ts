/**
 * API load test: question throughput and status polling against a real `vigil serve` process
 * (probe-needle model) while two streams ingest long probe clips, measured with autocannon from this
 * (separate) process. Three phases of `--duration` seconds each: questions alone, status polling
 * alone, then both at once. For each: requests/s, latency p50/p99, non-2xx (429 = queue full), and the
 * ingest rate of the two streams during the phase (frames encoded per second, both together), so
 * the cost of questions to ingest shows. okPerS counts 2xx answers only; 429s are the bounded question
 * queues refusing work (per stream 4, server 16 by default) and come back in about a millisecond.
 *
 *   node --import tsx bench/api-load.ts [--duration 10] [--connections 8] [--poll-rate 50] [--clip 600] [--fps 2] [--json]
 *
 * The clips (two needle clips of --clip seconds, 160x90) are generated once into the Vigil cache.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedProbeClip, type ProbeClip } from '../ingest/index.js';

interface CannonRequest {
  method?: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
}
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodeStats: Record<string, { count: number }>;
}
type Autocannon = (options: { url: string; connections: number; duration: number; overallRate?: number; requests: CannonRequest[] }) => Promise<CannonResult>;
// autocannon ships no type declarations: the few fields used here are typed above.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '8' },
    clip: { type: 'string', default: '600' },
    fps: { type: 'string', default: '2' },
    'poll-rate': { type: 'string', default: '50' },
    json: { type: 'boolean', default: false },
  },
});
const durationS = Number(values.duration);
const connections = Number(values.connections);
const clipS = Number(values.clip);
const fps = Number(values.fps);
const pollRate = Number(values['poll-rate']);
const log = (line: string) => process.stderr.write(`${line}\n`);
const token = randomBytes(24).toString('hex');
const auth = { Authorization: `Bearer ${token}` };

async function main(): Promise<void> {
  log(`making two ${clipS}-s probe clips (cached)...`);
  const clips: ProbeClip[] = [];
  for (const [background, square] of [['red', 'green'], ['blue', 'yellow']] as const) {
    clips.push(await cachedProbeClip({ durationS: clipS, width: 160, height: 90, needles: [{ start: 5, duration: 4, background, square }] }));
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-load-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [path.resolve('bin/vigil.js'), 'serve', '--port', String(port), '--data', dataDir, '--allow-files', path.dirname(clips[0]!.clip), '--quiet'], {
    env: { ...process.env, VIGIL_API_TOKENS: token },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let serverLog = '';
  server.stderr.on('data', (d: Buffer) => (serverLog += d.toString()));
  try {
    await until(async () => (await fetch(`${base}/readyz`).catch(() => null))?.ok === true, 60_000, () => serverLog);
    const ids = ['cam1', 'cam2'];
    for (const [i, clip] of clips.entries()) {
      const res = await fetch(`${base}/v1/streams`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ id: ids[i], source: path.basename(clip.clip), fps, window: 8 }),
      });
      if (res.status !== 201) throw new Error(`create stream: ${res.status} ${await res.text()}`);
    }
    // Past the needles (5-9 s) in both streams before measuring, so every answer can be checked.
    await until(async () => (await frames(base, ids)) >= 4 * 10 * fps, 60_000, () => serverLog);

    const question = (id: string, background: string): CannonRequest => ({
      method: 'POST',
      path: `/v1/streams/${id}/questions`,
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ question: `What color was the square on the ${background} screen?`, r: 8, maxTokens: 4 }),
    });
    const questions = [question('cam1', 'red'), question('cam2', 'blue')];
    const polling: CannonRequest[] = [
      { method: 'GET', path: '/v1/streams/cam1', headers: auth },
      { method: 'GET', path: '/v1/streams/cam2', headers: auth },
      { method: 'GET', path: '/v1/streams', headers: auth },
    ];
    const rows: Array<Record<string, unknown>> = [];
    for (const phase of ['questions', 'status', 'both'] as const) {
      const f0 = await frames(base, ids);
      const t0 = performance.now();
      const runs: Array<[string, Promise<CannonResult>]> = [];
      const cannon = (requests: CannonRequest[], overallRate?: number) =>
        autocannon({ url: base, connections, duration: durationS, requests, ...(overallRate ? { overallRate } : {}) });
      if (phase !== 'status') runs.push(['questions', cannon(questions)]);
      // Alone: as fast as it goes (capacity). With questions: a steady dashboard-like rate.
      if (phase !== 'questions') runs.push([phase === 'both' ? `status @${pollRate}/s` : 'status', cannon(polling, phase === 'both' ? pollRate : undefined)]);
      const results = await Promise.all(runs.map(([, p]) => p));
      const elapsed = (performance.now() - t0) / 1000;
      const ingestFps = ((await frames(base, ids)) - f0) / elapsed;
      const states = await Promise.all(ids.map(async (id) => ((await (await fetch(`${base}/v1/streams/${id}`, { headers: auth })).json()) as { state: string }).state));
      for (const [i, [kind]] of runs.entries()) {
        const r = results[i]!;
        rows.push({
          phase,
          load: kind,
          connections,
          reqPerS: round(r.requests.average),
          okPerS: round((r.requests.total - r.non2xx) / durationS),
          total: r.requests.total,
          p50ms: r.latency.p50,
          p99ms: r.latency.p99,
          non2xx: r.non2xx,
          status429: r.statusCodeStats['429']?.count ?? 0,
          errors: r.errors + r.timeouts,
          ingestFramesPerS: round(ingestFps),
          streamStates: states.join('/'),
        });
      }
    }
    const answer = (await (await fetch(`${base}/v1/streams/cam1/questions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ question: 'What color was the square on the red screen?', r: 8 }) })).json()) as { text: string };
    const meta = { node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, durationS, connections, pollRate, clipS, fps, model: 'probe-needle', checkAnswer: answer.text };
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ meta, rows }, null, 2)}\n`);
      return;
    }
    const cols = ['phase', 'load', 'reqPerS', 'okPerS', 'p50ms', 'p99ms', 'total', 'non2xx', 'status429', 'errors', 'ingestFramesPerS', 'streamStates'];
    process.stdout.write(`${cols.map((c) => `| ${c} `).join('')}|\n${cols.map(() => '|---').join('')}|\n`);
    for (const row of rows) process.stdout.write(`${cols.map((c) => `| ${String(row[c])} `).join('')}|\n`);
    process.stdout.write(`\n${JSON.stringify(meta)}\n`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Frames encoded by the given streams so far (both together). */
async function frames(base: string, ids: string[]): Promise<number> {
  let total = 0;
  for (const id of ids) {
    const s = (await (await fetch(`${base}/v1/streams/${id}`, { headers: auth })).json()) as { memory: { chunks: number } | null };
    total += s.memory?.chunks ?? 0;
  }
  return total;
}

async function until(check: () => Promise<boolean>, timeoutMs: number, context: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out; server log:\n${context()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

await main();
