// What the cluster looks like (docs/scale-out.md, "Status"): nodes, their streams, leases and each
// stream's replication lag, read from KV by any process (`vigil cluster status`, /metrics, a node's
// own view). Each node publishes a small report of the streams it runs beside its registration
// (`report.<nodeId>` in the nodes bucket, so the bucket's TTL removes it with the node).
import { z } from 'zod';
import { BUCKETS, type ClusterBuckets, decodeJson, encodeJson, listKeys } from './buckets.js';
import type { DesiredState } from './desiredState.js';
import { NodeRegistry } from './nodeRegistry.js';
import type { LeaseManager } from './leases.js';

const reportSchema = z.object({
  nodeId: z.string(),
  at: z.number(),
  streams: z.array(
    z.object({
      id: z.string(),
      epoch: z.number(),
      state: z.string(),
      /** Seconds of stream a failover now would lose (null: no replication yet). */
      lagSec: z.number().nullable(),
      recoveryPoint: z.object({ chunkId: z.number(), streamTime: z.number(), wallTime: z.number() }).nullable(),
      bytesPerSec: z.number(),
      snapshots: z.number(),
      failures: z.number(),
    }),
  ),
});
export type NodeReport = z.infer<typeof reportSchema>;
export type StreamReport = NodeReport['streams'][number];

export interface ClusterStatus {
  at: string;
  nodes: Array<{ nodeId: string; capacity: number; apiUrl: string; startedAt: string; draining: boolean; streams: string[] }>;
  streams: Array<{
    id: string;
    /** The lease's holder while it is live; null when nobody holds it (a failover in progress, or no room). */
    owner: string | null;
    epoch: number | null;
    stopped: boolean;
    state: string | null;
    lagSec: number | null;
    recoveryPoint: StreamReport['recoveryPoint'];
    bytesPerSec: number | null;
  }>;
}

const LEASE_READ_BATCH = 32;

export function reportKey(nodeId: string): string {
  return `report.${nodeId}`;
}

export async function publishReport(buckets: ClusterBuckets, report: NodeReport): Promise<void> {
  await buckets.nodes.put(reportKey(report.nodeId), encodeJson(report));
}

/** Every live node's latest report, by node id. */
export async function readReports(buckets: ClusterBuckets): Promise<Map<string, NodeReport>> {
  const out = new Map<string, NodeReport>();
  for (const key of await listKeys(buckets.jsm, BUCKETS.nodes, 'report.')) {
    const entry = await buckets.nodes.get(key);
    if (!entry || entry.operation !== 'PUT') continue;
    const parsed = reportSchema.safeParse(decodeJson(entry.value));
    if (parsed.success) out.set(parsed.data.nodeId, parsed.data);
  }
  return out;
}

/** The cluster as KV has it now (a few requests per node and per stream). */
export async function readClusterStatus(buckets: ClusterBuckets, desired: DesiredState, leases: Pick<LeaseManager, 'read' | 'isFree'>): Promise<ClusterStatus> {
  const [nodes, entries, draining, reports] = await Promise.all([NodeRegistry.list(buckets), desired.list(), desired.draining(), readReports(buckets)]);
  const live = new Set(nodes.map((n) => n.nodeId));
  const streams: ClusterStatus['streams'] = [];
  const sorted = entries.sort((a, b) => (a.state.id < b.state.id ? -1 : 1));
  // Leases read side by side, a bounded number at a time.
  const leaseOf = new Map<string, Awaited<ReturnType<LeaseManager['read']>>>();
  for (let i = 0; i < sorted.length; i += LEASE_READ_BATCH) {
    const batch = sorted.slice(i, i + LEASE_READ_BATCH);
    const read = await Promise.all(batch.map((e) => leases.read(e.state.id)));
    batch.forEach((e, j) => leaseOf.set(e.state.id, read[j] ?? null));
  }
  for (const { state } of sorted) {
    const lease = leaseOf.get(state.id) ?? null;
    const held = lease && !leases.isFree(lease.value) && lease.value.owner !== null && live.has(lease.value.owner) ? lease.value : null;
    const report = held ? reports.get(held.owner!)?.streams.find((s) => s.id === state.id && s.epoch === held.epoch) : undefined;
    streams.push({
      id: state.id,
      owner: held?.owner ?? null,
      epoch: held?.epoch ?? lease?.value.epoch ?? null,
      stopped: state.stopped === true,
      state: report?.state ?? null,
      lagSec: report?.lagSec ?? null,
      recoveryPoint: report?.recoveryPoint ?? null,
      bytesPerSec: report?.bytesPerSec ?? null,
    });
  }
  return {
    at: new Date().toISOString(),
    nodes: nodes.map((n) => ({
      nodeId: n.nodeId,
      capacity: n.capacity,
      apiUrl: n.apiUrl,
      startedAt: n.startedAt,
      draining: draining.has(n.nodeId),
      streams: streams.filter((s) => s.owner === n.nodeId).map((s) => s.id),
    })),
    streams,
  };
}
