/**
 * The cluster (issue 18), measured end to end: `--nodes` real `vigil serve --cluster` child processes
 * (`--model`, default probe-random-tiny) on one real nats-server (JetStream, loopback, a temp store),
 * `--streams` live cameras from the GStreamer RTSP test server (a probe clip from makeProbeClip),
 * every frame encoded (gate off). Half the streams store their KV as float32, the other half as
 * `--dtype2` (default int8): the storage "tier" here is the stream's KV dtype. It prints, each
 * measured in this run:
 *   1. placement balance: streams per node after creating all of them through one node;
 *   2. failover time: the node owning the most streams SIGKILLed; per stream, seconds until its lease
 *      is held elsewhere (GET /v1/cluster) and until it ingests again there (frames > 0); repeated
 *      `--failovers` times, a fresh node (a new --node-id) started after each kill;
 *   3. replication lag and bytes/s per stream (GET /v1/cluster every second over the whole run), by tier;
 *   4. routing overhead: GET /v1/streams/{id} and a question (maxTokens 4) asked on the owner vs
 *      through another node, interleaved, `--samples` each.
 *
 *   node --import tsx bench/cluster.ts [--nodes 3] [--streams 6] [--model probe-random-tiny] [--failovers 2] [--samples 100] [--fps 1] [--dtype2 int8] [--quick]
 *
 * --quick: one failover, 50 samples each, shorter settling (about 3 minutes on 2 cores).
 * A table, then one JSON line. Only processes started here are ever signalled; the temp folder goes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeProbeClip } from '../ingest/index.js';
import type { ClusterStatus } from '../src/cluster/clusterStatus.js';
import { rtspAvailability, type RtspServer, startRtspServer } from '../test/fixtures/rtspServer.js';
import { type NatsServer, startNats } from '../test/helpers/natsServer.js';
import { type ServeProcess, startServe } from '../test/helpers/serveProcess.js';
import type { ListedStream } from '../test/helpers/clusterListing.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    streams: { type: 'string', default: '6' },
    model: { type: 'string', default: 'probe-random-tiny' },
    failovers: { type: 'string' },
    samples: { type: 'string' },
    fps: { type: 'string', default: '1' },
    dtype2: { type: 'string', default: 'int8' },
    quick: { type: 'boolean', default: false },
  },
});

const NODES = Number(values.nodes);
const STREAMS = Number(values.streams);
const FAILOVERS = Number(values.failovers ?? (values.quick ? 1 : 2));
const SAMPLES = Number(values.samples ?? (values.quick ? 50 : 100));
/** Seconds of steady ingest before the routing samples and between failovers (replication catches up). */
const SETTLE_S = values.quick ? 8 : 20;
const TOKEN = 'bench-cluster-token-0123456789';
const QUESTION = 'What colour is the square shown on the red screen? Answer with one word.';
if (!(NODES >= 2 && STREAMS >= 2 && FAILOVERS >= 0 && SAMPLES >= 1)) throw new Error('need --nodes >= 2, --streams >= 2, --failovers >= 0, --samples >= 1');


const progress = (line: string): void => void process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(0)} s] ${line}\n`);
const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' / ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
/** The p-th percentile (nearest rank) of the values. */
function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const mean = (xs: readonly number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
const maxOf = (xs: readonly number[]) => xs.reduce((a, b) => Math.max(a, b), -Infinity);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

const began = performance.now();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-cluster-'));
const nodes = new Map<string, ServeProcess>();
let nats: NatsServer | null = null;
let rtsp: RtspServer | null = null;
let nodeCount = 0;
const startLoad = load();

const headers = { Authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
async function call<T>(node: string, route: string, init: RequestInit = {}): Promise<{ body: T; via: string | null }> {
  const res = await fetch(`${nodes.get(node)!.url}${route}`, { ...init, headers, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${route} on ${node}: ${res.status} ${text.slice(0, 300)}`);
  return { body: (text ? JSON.parse(text) : null) as T, via: res.headers.get('x-vigil-node') };
}
const clusterStatus = async (node: string) => (await call<ClusterStatus>(node, '/v1/cluster')).body;
const listed = async (node: string) => (await call<{ streams: ListedStream[] }>(node, '/v1/streams')).body.streams;

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error; // a node busy or just killed: asked again
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

async function startNode(): Promise<string> {
  const id = `n${++nodeCount}`;
  const args = ['--port', '0', '--data', path.join(scratch, `data-${id}`), '--model', values.model, '--allow-network', '127.0.0.0/8'];
  args.push('--cluster', nats!.url, '--node-id', id, '--capacity', String(STREAMS), '--quiet');
  nodes.set(id, await startServe(args, TOKEN));
  return id;
}
const anyNode = (except?: string) => [...nodes.keys()].find((n) => n !== except)!;
const perNode = (status: ClusterStatus) => Object.fromEntries(status.nodes.map((n) => [n.nodeId, status.streams.filter((s) => s.owner === n.nodeId).length]));

// Replication samples from GET /v1/cluster, taken every second for the whole run.
interface LagSample {
  id: string;
  epoch: number;
  lagSec: number;
  bytesPerSec: number;
  /** performance.now() when the answer came. */
  at: number;
  /** Taken between a SIGKILL and the cluster settling again (a dead owner's stream lags until taken over). */
  failingOver: boolean;
}
const lagSamples: LagSample[] = [];
let sampling = true;
let failingOver = false;
async function sampleReplication(): Promise<void> {
  while (sampling) {
    try {
      for (const s of (await clusterStatus(anyNode())).streams) {
        if (s.lagSec !== null && s.epoch !== null && s.bytesPerSec !== null) lagSamples.push({ id: s.id, epoch: s.epoch, lagSec: s.lagSec, bytesPerSec: s.bytesPerSec, at: performance.now(), failingOver });
      }
    } catch {
      // a node being killed or started: the next round asks again
    }
    await sleep(1000);
  }
}

interface FailoverResult {
  killed: string;
  streams: Array<{ id: string; newOwner: string; leaseTakenS: number; openedS: number; ingestingS: number; restoreMs: number | null; restoredMB: number | null; gapS: number | null }>;
  maxLeaseS: number;
  maxIngestS: number;
  replacement: string;
  replacementStartS: number;
  placementAfter: Record<string, number>;
}

/** What the new owner logged when it took the stream (clusterNode's "owned at epoch N, restored from snapshot ..." line). */
function restoreLogged(owner: string, id: string): { restoreMs: number | null; restoredMB: number | null; gapS: number | null } {
  const pattern = new RegExp(`stream ${id}: owned at epoch \\d+, restored from snapshot \\d+ \\(\\d+ files, ([\\d.]+) MB, (\\d+) ms(?:, gap ([\\d.]+) s)?`, 'g');
  const last = [...(nodes.get(owner)?.stderr() ?? '').matchAll(pattern)].at(-1);
  return last ? { restoredMB: Number(last[1]), restoreMs: Number(last[2]), gapS: last[3] === undefined ? null : Number(last[3]) } : { restoreMs: null, restoredMB: null, gapS: null };
}

/** SIGKILL the node owning the most streams; time each of its streams' takeover, seen from another node. */
async function failover(): Promise<FailoverResult> {
  const before = await clusterStatus(anyNode());
  const counts = perNode(before);
  const killed = Object.keys(counts).sort((a, b) => counts[b]! - counts[a]! || a.localeCompare(b))[0]!;
  const victims = before.streams.filter((s) => s.owner === killed).map((s) => s.id);
  const observer = anyNode(killed);
  const proc = nodes.get(killed)!;
  progress(`SIGKILL ${killed} (owns ${victims.join(', ')}); watching from ${observer}`);
  process.kill(proc.pid, 'SIGKILL');
  const killedAt = performance.now();
  await proc.exited;
  nodes.delete(killed);
  const taken = new Map<string, { at: number; owner: string }>();
  const ingesting = new Map<string, number>();
  // When the new owner has restored the memory and created the stream: its "owned at epoch" log line.
  const ownedLines = (node: string, id: string) => (nodes.get(node)?.stderr() ?? '').split(`stream ${id}: owned at epoch`).length - 1;
  const linesBefore = new Map(victims.flatMap((id) => [...nodes.keys()].map((n) => [`${n}/${id}`, ownedLines(n, id)] as const)));
  const opened = new Map<string, number>();
  await until(
    `${killed}'s streams ingesting elsewhere`,
    async () => {
      const status = await clusterStatus(observer);
      const now = performance.now();
      for (const s of status.streams) if (victims.includes(s.id) && s.owner && s.owner !== killed && !taken.has(s.id)) taken.set(s.id, { at: now - killedAt, owner: s.owner });
      for (const [id, t] of taken) if (!opened.has(id) && ownedLines(t.owner, id) > (linesBefore.get(`${t.owner}/${id}`) ?? 0)) opened.set(id, performance.now() - killedAt);
      const streams = await listed(observer);
      const now2 = performance.now();
      for (const s of streams) if (victims.includes(s.id) && taken.has(s.id) && s.owner && s.owner !== killed && s.frames > 0 && !ingesting.has(s.id)) ingesting.set(s.id, now2 - killedAt);
      return ingesting.size === victims.length ? true : undefined;
    },
    60_000,
    100,
  );
  const rows = victims.map((id) => ({ id, newOwner: taken.get(id)!.owner, leaseTakenS: round(taken.get(id)!.at / 1000), openedS: round((opened.get(id) ?? NaN) / 1000), ingestingS: round(ingesting.get(id)! / 1000), ...restoreLogged(taken.get(id)!.owner, id) }));
  for (const r of rows) progress(`  ${r.id}: lease on ${r.newOwner} after ${r.leaseTakenS} s, opened after ${r.openedS} s, ingesting after ${r.ingestingS} s (restore ${r.restoreMs ?? '?'} ms, ${r.restoredMB ?? '?'} MB, gap ${r.gapS ?? 'none'} s)`);
  const t0 = performance.now();
  const replacement = await startNode();
  await until(`${replacement} registered`, async () => ((await clusterStatus(replacement)).nodes.some((n) => n.nodeId === replacement) ? true : undefined), 30_000);
  const replacementStartS = round((performance.now() - t0) / 1000, 1);
  progress(`started ${replacement} in ${replacementStartS} s; load ${load()}`);
  return {
    killed,
    streams: rows,
    maxLeaseS: maxOf(rows.map((r) => r.leaseTakenS)),
    maxIngestS: maxOf(rows.map((r) => r.ingestingS)),
    replacement,
    replacementStartS,
    placementAfter: perNode(await clusterStatus(replacement)),
  };
}

/** Every stream owned, ingesting (frames > 0) and replicated at least once, seen from `node`. */
async function settled(node: string): Promise<void> {
  await until(
    'every stream owned, ingesting and replicated',
    async () => {
      const [status, streams] = await Promise.all([clusterStatus(node), listed(node)]);
      const ok = status.streams.length === STREAMS && status.streams.every((s) => s.owner && s.lagSec !== null) && streams.length === STREAMS && streams.every((s) => s.frames > 0);
      return ok ? true : undefined;
    },
    90_000,
  );
}

interface Timing {
  direct: number[];
  routed: number[];
}

/** GET /v1/streams/{id} and a question, on the owner and through another node, interleaved in rotating order. */
async function routing(id: string, owner: string, other: string): Promise<{ get: Timing; question: Timing }> {
  const get: Timing = { direct: [], routed: [] };
  const question: Timing = { direct: [], routed: [] };
  const body = JSON.stringify({ question: QUESTION, maxTokens: 4 });
  const cases: Array<[number[], () => Promise<{ via: string | null }>, boolean]> = [
    [get.direct, () => call(owner, `/v1/streams/${id}`), false],
    [get.routed, () => call(other, `/v1/streams/${id}`), true],
    [question.direct, () => call(owner, `/v1/streams/${id}/questions`, { method: 'POST', body }), false],
    [question.routed, () => call(other, `/v1/streams/${id}/questions`, { method: 'POST', body }), true],
  ];
  for (const [, run] of cases) await run(); // warm-up, not counted
  for (let i = 0; i < SAMPLES; i++) {
    for (let k = 0; k < cases.length; k++) {
      const [into, run, routed] = cases[(i + k) % cases.length]!;
      const t = performance.now();
      const { via } = await run();
      into.push(performance.now() - t);
      if (routed && via !== owner) throw new Error(`a routed call was answered by ${via ?? 'no node named'}, not the owner ${owner}`);
    }
  }
  return { get, question };
}

const ms = (xs: readonly number[]) => ({ p50: round(pct(xs, 50)), p95: round(pct(xs, 95)) });

try {
  const python = rtspAvailability().python;
  if (!python) throw new Error(rtspAvailability().reason);
  const clip = path.join(scratch, 'camera.mp4');
  // Long enough that no camera reaches its end: every takeover opens the RTSP source again from 0.
  await makeProbeClip({ out: clip, durationS: 1800, width: 160, height: 90, needles: [{ start: 2, duration: 4, background: 'red', square: 'green' }] });
  nats = await startNats();
  rtsp = await startRtspServer(python, { file: clip });
  progress(`nats-server ${nats.url}, RTSP ${rtsp.url}; starting ${NODES} nodes (${values.model}); load ${load()}`);
  for (let i = 0; i < NODES; i++) await startNode();
  const first = [...nodes.keys()][0]!;
  await until('every node registered', async () => ((await clusterStatus(first)).nodes.length === NODES ? true : undefined), 30_000);

  // 1. Placement: all streams created through the first node.
  const dtypes = ['float32', values.dtype2];
  const tierOf = new Map<string, string>();
  const createdAt = new Map<string, number>();
  for (let i = 0; i < STREAMS; i++) {
    const id = `cam${i + 1}`;
    const storage = dtypes[i < STREAMS / 2 ? 0 : 1]!;
    tierOf.set(id, storage);
    createdAt.set(id, performance.now());
    await call(first, '/v1/streams', { method: 'POST', body: JSON.stringify({ id, source: rtsp.url, window: 4, fps: Number(values.fps), storage, gate: 'off' }) });
  }
  const placement = await until(
    'every stream owned',
    async () => {
      const status = await clusterStatus(first);
      return status.streams.length === STREAMS && status.streams.every((s) => s.owner) ? perNode(status) : undefined;
    },
    60_000,
  );
  progress(`placement ${JSON.stringify(placement)}`);
  const sampler = sampleReplication();
  await settled(first);
  await sleep(SETTLE_S * 1000);

  // 4. Routing overhead, on a steady cluster.
  const status = await clusterStatus(first);
  const target = status.streams[0]!;
  const other = [...nodes.keys()].find((n) => n !== target.owner)!;
  progress(`routing: ${SAMPLES} x 4 calls on ${target.id} (owner ${target.owner}, routed through ${other}); load ${load()}`);
  const routed = await routing(target.id, target.owner!, other);
  const routingLoad = load();

  // 2. Failovers.
  const failovers: FailoverResult[] = [];
  for (let k = 0; k < FAILOVERS; k++) {
    await settled(anyNode());
    await sleep(SETTLE_S * 1000);
    failingOver = true;
    failovers.push(await failover());
    await settled(anyNode());
    failingOver = false;
  }
  sampling = false;
  await sampler;

  // 3. Replication by tier. Lag: steady samples (no failover under way) and, apart, the maximum over
  // every sample. bytes/s is the replicator's own mean since its tenure began: per stream the last
  // sample of its longest-sampled tenure (epoch).
  const bytesOf = (id: string): number => {
    const byEpoch = new Map<number, LagSample[]>();
    for (const s of lagSamples) {
      if (s.id !== id) continue;
      const list = byEpoch.get(s.epoch) ?? [];
      list.push(s);
      byEpoch.set(s.epoch, list);
    }
    const longest = [...byEpoch.values()].sort((a, b) => b.length - a.length)[0];
    return longest?.at(-1)?.bytesPerSec ?? NaN;
  };
  // The replicator's bytes/s is a mean since its start, start-up seconds included. The steady rate:
  // bytes sent (mean x seconds since the stream's creation, epoch 1) between a sample 20 s in and the
  // last one taken before a failover (after a SIGKILL the dead owner's last report stays until its
  // lease moves: the same mean, no more bytes).
  const steadyBytesOf = (id: string): number => {
    const created = createdAt.get(id)!;
    const first = lagSamples.filter((s) => s.id === id && s.epoch === 1 && !s.failingOver);
    const a = first.find((s) => s.at >= created + 20_000);
    const b = first.at(-1);
    if (!a || !b || b.at - a.at < 10_000) return NaN;
    return (b.bytesPerSec * (b.at - created) - a.bytesPerSec * (a.at - created)) / (b.at - a.at);
  };
  const tiers = dtypes.map((dtype) => {
    const ids = [...tierOf].filter(([, d]) => d === dtype).map(([id]) => id);
    const mine = lagSamples.filter((s) => ids.includes(s.id));
    const steady = mine.filter((s) => !s.failingOver).map((s) => s.lagSec);
    const bytes = Object.fromEntries(ids.map((id) => [id, Math.round(bytesOf(id))]));
    const steadyBytes = Object.fromEntries(ids.map((id) => [id, Math.round(steadyBytesOf(id))]));
    return {
      dtype,
      streams: ids.length,
      steadySamples: steady.length,
      lagMedianS: round(pct(steady, 50)),
      lagP95S: round(pct(steady, 95)),
      lagMaxS: round(maxOf(steady)),
      lagMaxWithFailoversS: round(maxOf(mine.map((s) => s.lagSec))),
      bytesPerSecMean: Math.round(mean(Object.values(bytes).filter((b) => Number.isFinite(b)))),
      bytesPerSecPerStream: bytes,
      steadyBytesPerSecMean: Math.round(mean(Object.values(steadyBytes).filter((b) => Number.isFinite(b)))),
      steadyBytesPerSecPerStream: steadyBytes,
    };
  });

  const placementValues = Object.values(placement);
  const result = {
    bench: 'cluster',
    nodes: NODES,
    streams: STREAMS,
    model: values.model,
    fps: Number(values.fps),
    quick: values.quick,
    placement: { perNode: placement, max: Math.max(...placementValues), min: Math.min(...placementValues) },
    failovers,
    replication: tiers,
    epochsSampled: Object.fromEntries([...tierOf.keys()].map((id) => [id, [...new Set(lagSamples.filter((s) => s.id === id).map((s) => s.epoch))]])),
    routing: {
      stream: target.id,
      owner: target.owner,
      via: other,
      samples: SAMPLES,
      getMs: { direct: ms(routed.get.direct), routed: ms(routed.get.routed) },
      questionMs: { direct: ms(routed.question.direct), routed: ms(routed.question.routed) },
      loadDuring: routingLoad,
    },
    load: { start: startLoad, end: load() },
    seconds: round((performance.now() - began) / 1000, 0),
  };

  console.log(`\nCluster bench: ${NODES} nodes, ${STREAMS} RTSP streams at ${values.fps} frame/s (gate off), ${values.model}, lease TTL 5 s and snapshots every 5 s (the defaults); load (1/5/15 min) ${startLoad} at start, ${result.load.end} at end; ${result.seconds} s`);
  console.log('\n| placement (created through ' + first + ') | ' + Object.keys(placement).join(' | ') + ' | max / min |');
  console.log('|---|' + Object.keys(placement).map(() => '---:|').join('') + '---:|');
  console.log('| streams | ' + placementValues.join(' | ') + ` | ${result.placement.max} / ${result.placement.min} |`);
  console.log('\n| failover | killed | stream -> new owner | lease taken (s) | restored + opened (s) | ingesting again (s) | restore (ms, MB) | gap recorded (s) |');
  console.log('|---|---|---|---:|---:|---:|---:|---:|');
  failovers.forEach((f, i) => {
    for (const s of f.streams) console.log(`| ${i + 1} | ${f.killed} | ${s.id} -> ${s.newOwner} | ${s.leaseTakenS} | ${s.openedS} | ${s.ingestingS} | ${s.restoreMs ?? '?'}, ${s.restoredMB ?? '?'} | ${s.gapS ?? '-'} |`);
    console.log(`| ${i + 1} | **max** | | **${f.maxLeaseS}** | | **${f.maxIngestS}** | | |`);
  });
  console.log(failovers.map((f, i) => `failover ${i + 1}: replacement ${f.replacement} registered ${f.replacementStartS} s after its start; placement after ${JSON.stringify(f.placementAfter)}`).join('\n'));
  console.log('\n| tier (KV dtype) | streams | steady lag samples | lag median (s) | lag p95 (s) | lag max (s) | lag max incl. failovers (s) | bytes/s per stream (tenure mean), mean | steady bytes/s, mean | steady bytes/s per stream |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const t of tiers) {
    const each = Object.entries(t.steadyBytesPerSecPerStream).map(([id, b]) => `${id} ${b}`).join(', ');
    console.log(`| ${t.dtype} | ${t.streams} | ${t.steadySamples} | ${t.lagMedianS} | ${t.lagP95S} | ${t.lagMaxS} | ${t.lagMaxWithFailoversS} | ${t.bytesPerSecMean} | ${t.steadyBytesPerSecMean} | ${each} |`);
  }
  const r = result.routing;
  console.log(`\n| routing (${SAMPLES} each, ${r.stream} on ${r.owner}, via ${r.via}; load ${routingLoad}) | direct p50 / p95 (ms) | routed p50 / p95 (ms) | added p50 (ms) |`);
  console.log('|---|---:|---:|---:|');
  console.log(`| GET /v1/streams/{id} | ${r.getMs.direct.p50} / ${r.getMs.direct.p95} | ${r.getMs.routed.p50} / ${r.getMs.routed.p95} | ${round(r.getMs.routed.p50 - r.getMs.direct.p50)} |`);
  console.log(`| POST .../questions (maxTokens 4) | ${r.questionMs.direct.p50} / ${r.questionMs.direct.p95} | ${r.questionMs.routed.p50} / ${r.questionMs.routed.p95} | ${round(r.questionMs.routed.p50 - r.questionMs.direct.p50)} |`);
  console.log(JSON.stringify(result));
} finally {
  sampling = false;
  await Promise.all([...nodes.values()].map((n) => n.stop()));
  await rtsp?.kill();
  await nats?.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
}
