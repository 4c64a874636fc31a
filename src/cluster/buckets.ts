/**
 * The cluster's JetStream KV buckets (docs/scale-out.md, "Buckets"): what each holds and how it is
 * made. A bucket that exists already is bound as it is (its first creator chose its replicas and
 * TTL); every node passes the same settings, so that is the same bucket.
 */
import type { JetStreamManager, KV } from 'nats';
import { isVigilError, VigilError } from '../../common/errors.js';
import { type ClusterConnection, isClusterSettling } from './natsConnection.js';

export const BUCKETS = {
  /** Live nodes: key `node.<id>`, removed by the bucket's TTL (max age) when its heartbeats stop. */
  nodes: 'vigil_nodes',
  /** Desired state: key `stream.<id>`, the stream's settings and watches; written by any node. */
  desired: 'vigil_desired',
  /** Ownership: key `stream.<id>`, `{owner, epoch, expiresAt}`; never deleted (the epoch must only grow). */
  leases: 'vigil_leases',
} as const;

export interface BucketOptions {
  /** JetStream replicas of each bucket: 1 on a single NATS server, 3 on a 3-server cluster (survives one loss). Default 1. */
  replicas?: number;
  /** How long a node's registration outlives its last heartbeat, ms. Default 5000. */
  nodeTtlMs?: number;
}

export interface ClusterBuckets {
  /** For listings (asked of each bucket's stream leader, see listKeys). */
  jsm: JetStreamManager;
  nodes: KV;
  desired: KV;
  leases: KV;
  nodeTtlMs: number;
}

export const DEFAULT_NODE_TTL_MS = 5000;

/** Opens (creating when missing) the three buckets. */
export async function openBuckets(conn: ClusterConnection, options: BucketOptions = {}): Promise<ClusterBuckets> {
  const replicas = options.replicas ?? 1;
  const nodeTtlMs = options.nodeTtlMs ?? DEFAULT_NODE_TTL_MS;
  const kv = conn.js.views;
  // Registry and lease reads go to each bucket's stream leader (no direct get): a replica that lags
  // could otherwise show a lease as still ours after it moved. Desired state may be read from any replica.
  const nodes = await kv.kv(BUCKETS.nodes, { history: 1, replicas, ttl: nodeTtlMs, allow_direct: false });
  const desired = await kv.kv(BUCKETS.desired, { history: 1, replicas });
  const leases = await kv.kv(BUCKETS.leases, { history: 1, replicas, allow_direct: false });
  // The bucket's own TTL rules (an existing bucket keeps the one it was made with): heartbeats follow it.
  const ttl = (await nodes.status()).ttl;
  return { jsm: conn.jsm, nodes, desired, leases, nodeTtlMs: ttl > 0 ? ttl : nodeTtlMs };
}

/**
 * Runs `open` (bucket creation or binding) again while the cluster is still settling, up to `waitMs`.
 * Nodes started beside a NATS cluster that has just formed create its replicated buckets at once,
 * and a 3-replica create can outlast one request timeout while the peers elect the stream's leader
 * (seen as a bare TIMEOUT that stopped `vigil serve --cluster` at start). Creating is idempotent:
 * a retry binds a bucket the timed-out request did make.
 */
export async function openWhenSettled<T>(open: () => Promise<T>, waitMs: number): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await open();
    } catch (error) {
      const text = error instanceof Error ? `${error.message} ${String((error as { code?: unknown }).code ?? '')}` : String(error);
      if (isVigilError(error) || !isClusterSettling(text) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/**
 * The keys of a bucket under `prefix` (e.g. `node.`), as its stream leader counts them (stream info
 * with a subject filter: one request, no consumer). nats.js's keys() reads through an ephemeral
 * consumer, which was seen to come back empty while a NATS cluster moved a stream's leader.
 * A deleted key may be listed (its delete marker): callers get() each key and skip those.
 */
export async function listKeys(jsm: JetStreamManager, bucket: string, prefix: string): Promise<string[]> {
  const subjectPrefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${subjectPrefix}${prefix}>` });
  return Object.keys(info.state.subjects ?? {})
    .map((subject) => subject.slice(subjectPrefix.length))
    .sort();
}

/** Whether a KV write failed its compare-and-set (JetStream "wrong last sequence", 10071). */
export function isRevisionConflict(error: unknown): boolean {
  const api = (error as { api_error?: { err_code?: number } } | null)?.api_error;
  return api?.err_code === 10071 || /wrong last sequence/i.test(error instanceof Error ? error.message : '');
}

/**
 * A request to NATS (KV, stream info): a failure that is not Vigil's own is CLUSTER_UNAVAILABLE
 * (503, retry in 2 s) with the client's reason, never a bare client error.
 */
export async function clusterRequest<T>(request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    if (isVigilError(error)) throw error;
    throw Object.assign(new VigilError('CLUSTER_UNAVAILABLE', `the cluster's NATS does not answer (${(error as Error).message}); retry`, { cause: error }), { retryAfterS: 2 });
  }
}

/** JSON bytes of a value. */
export function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** The JSON a KV entry holds, or undefined when it is not JSON. */
export function decodeJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch {
    return undefined;
  }
}
