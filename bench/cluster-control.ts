/**
 * The cluster's control plane at 1,000 cameras (issue 18): what leases, desired state, the registry
 * and the node reports cost NATS when --streams streams are owned by --nodes nodes. A real
 * nats-server (JetStream, file storage) on 127.0.0.1; --nodes LeaseManagers (one connection each,
 * as nodes have) take --streams / --nodes leases each and renew them on their timers (TTL 5 s,
 * every 1.67 s) for --seconds, while one node's per-second reads are timed as its control loop
 * makes them: desired state unchanged (one request), changed (a full listing), the registry and
 * the reports, and a full cluster status (every lease read, as GET /v1/cluster does).
 *
 *   node --import tsx bench/cluster-control.ts [--streams 1000] [--nodes 10] [--seconds 30]
 *
 * Prints: renewals per second the NATS server absorbed, renew latency (p50/p95/max, from the
 * managers' KV revisions), leases lost (must be 0), and each read's time (median of rounds).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OutboundPolicy } from '../ingest/net/outboundPolicy.js';
import { openBuckets } from '../src/cluster/buckets.js';
import { publishReport, readClusterStatus, readReports } from '../src/cluster/clusterStatus.js';
import { DesiredState } from '../src/cluster/desiredState.js';
import { type LeaseEvent, LeaseManager } from '../src/cluster/leases.js';
import { type ClusterConnection, connectNats } from '../src/cluster/natsConnection.js';
import { NodeRegistry } from '../src/cluster/nodeRegistry.js';
import { freePort } from '../test/helpers/freePort.js';

const { values } = parseArgs({ options: { streams: { type: 'string', default: '1000' }, nodes: { type: 'string', default: '10' }, seconds: { type: 'string', default: '30' } } });
const STREAMS = Number(values.streams);
const NODES = Number(values.nodes);
const SECONDS = Number(values.seconds);

/** User + system CPU seconds of a process (Linux /proc; clock ticks at 100 Hz). */
function serverCpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await f();
  return [value, performance.now() - t0];
}

const store = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-control-'));
const port = await freePort();
const server = spawn('/usr/sbin/nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store], { stdio: 'ignore' });
const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const conns: ClusterConnection[] = [];
const managers: LeaseManager[] = [];
const registries: NodeRegistry[] = [];
const nodeBuckets: Awaited<ReturnType<typeof openBuckets>>[] = [];
try {
  await new Promise((r) => setTimeout(r, 500));
  const connect = async () => {
    const conn = await connectNats({ servers: `nats://127.0.0.1:${port}`, policy });
    conns.push(conn);
    return conn;
  };
  const admin = await openBuckets(await connect());
  const desired = new DesiredState(admin);
  const ids = Array.from({ length: STREAMS }, (_, i) => `cam${String(i).padStart(4, '0')}`);
  process.stderr.write(`desired state: ${STREAMS} streams...\n`);
  for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((id) => desired.put({ id, settings: { source: `rtsp://camera-${id}.example/stream`, fps: 1 }, watches: [] })));

  let lost = 0;
  process.stderr.write(`${NODES} nodes take ${STREAMS / NODES} leases each...\n`);
  for (let n = 0; n < NODES; n++) {
    const buckets = await openBuckets(await connect());
    const nodeId = `n${n + 1}`;
    registries.push(await NodeRegistry.join(buckets, { nodeId, capacity: Math.ceil(STREAMS / NODES), startedAt: new Date().toISOString(), apiUrl: `http://127.0.0.1:${8000 + n}` }));
    nodeBuckets.push(buckets);
    const leases = new LeaseManager(buckets.leases, { nodeId });
    leases.on((e: LeaseEvent) => {
      if (e.kind === 'lost') lost++;
    });
    managers.push(leases);
    const mine = ids.filter((_, i) => i % NODES === n);
    for (let i = 0; i < mine.length; i += 25) await Promise.all(mine.slice(i, i + 25).map((id) => leases.acquire(id)));
  }
  // Each node publishes its report every second (its control loop), as the bucket's TTL requires.
  const publishAll = () =>
    Promise.all(
      nodeBuckets.map((buckets, n) =>
        publishReport(buckets, {
          nodeId: `n${n + 1}`,
          at: Date.now(),
          streams: ids.filter((_, i) => i % NODES === n).map((id) => ({ id, epoch: 1, state: 'live', lagSec: 3, recoveryPoint: null, bytesPerSec: 0, snapshots: 1, failures: 0 })),
        }),
      ),
    );
  await publishAll();
  const reporter = setInterval(() => void publishAll().catch(() => undefined), 1000);

  // Renew latency: each renew's revision moves; sample the managers' held revisions over time.
  const revisionsAt = () => managers.flatMap((m) => m.heldStreams().map((id) => m.holding(id)!.revision));
  const startRevisionSum = revisionsAt().length;
  const leaseInfo0 = await admin.jsm.streams.info('KV_vigil_leases');
  const rounds: Record<string, number[]> = { snapshotUnchanged: [], snapshotChanged: [], registry: [], reports: [], status: [] };
  const loop0 = process.cpuUsage();
  const serverCpu0 = serverCpuSeconds(server.pid!);
  const t0 = performance.now();
  let round = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    rounds.snapshotUnchanged!.push((await timed(() => desired.snapshot()))[1]);
    rounds.registry!.push((await timed(() => NodeRegistry.list(admin)))[1]);
    rounds.reports!.push((await timed(() => readReports(admin)))[1]);
    if (round % 10 === 0) {
      await desired.put({ id: ids[round % ids.length]!, settings: { source: 'rtsp://changed.example/', fps: 1 }, watches: [] });
      rounds.snapshotChanged!.push((await timed(() => desired.snapshot()))[1]);
      rounds.status!.push((await timed(() => readClusterStatus(admin, desired, managers[0]!)))[1]);
    }
    round++;
    await new Promise((r) => setTimeout(r, 200));
  }
  clearInterval(reporter);
  const elapsed = (performance.now() - t0) / 1000;
  const leaseInfo1 = await admin.jsm.streams.info('KV_vigil_leases');
  const renewals = leaseInfo1.state.last_seq - leaseInfo0.state.last_seq;
  const cpu = process.cpuUsage(loop0);
  const serverCpu = serverCpuSeconds(server.pid!) - serverCpu0;
  const reportCount = (await readReports(admin)).size;
  const held = revisionsAt().length;

  const line = (name: string, xs: number[]) => `| ${name} | ${xs.length} | ${median(xs).toFixed(1)} | ${quantile(xs, 0.95).toFixed(1)} |`;
  process.stdout.write(`\nControl plane: ${STREAMS} streams on ${NODES} nodes, one nats-server (file storage), ${elapsed.toFixed(0)} s, load ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')}\n\n`);
  process.stdout.write(`leases held ${held} of ${startRevisionSum} at the start; lost ${lost}; renewals absorbed ${(renewals / elapsed).toFixed(0)}/s (expected ${(STREAMS / (5 / 3)).toFixed(0)}/s)\n`);
  process.stdout.write(`CPU: nats-server ${(serverCpu / elapsed).toFixed(2)} cores; bench process (all ${NODES} lease managers + the reads) ${((cpu.user + cpu.system) / 1e6 / elapsed).toFixed(2)} cores; reports read ${reportCount}\n\n`);
  process.stdout.write('| read (one node, one control-loop pass) | rounds | median ms | p95 ms |\n|---|---:|---:|---:|\n');
  process.stdout.write(`${line('desired state, unchanged (stream info)', rounds.snapshotUnchanged!)}\n`);
  process.stdout.write(`${line(`desired state, changed (list ${STREAMS} keys + drains)`, rounds.snapshotChanged!)}\n`);
  process.stdout.write(`${line(`registry (${NODES} nodes)`, rounds.registry!)}\n`);
  process.stdout.write(`${line(`reports (${NODES} nodes)`, rounds.reports!)}\n`);
  process.stdout.write(`${line(`full cluster status (${STREAMS} leases read)`, rounds.status!)}\n`);
  process.stdout.write(
    `${JSON.stringify({ streams: STREAMS, nodes: NODES, seconds: elapsed, lost, renewalsPerSec: renewals / elapsed, medianMs: Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, median(v)])) })}\n`,
  );
} finally {
  for (const m of managers) await m.close().catch(() => undefined);
  for (const r of registries) await r.close().catch(() => undefined);
  for (const c of conns) await c.close().catch(() => undefined);
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  fs.rmSync(store, { recursive: true, force: true });
}
