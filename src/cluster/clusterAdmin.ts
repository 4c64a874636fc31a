// A process that is not a node (`vigil cluster status|drain`) looking at and steering a cluster
// (docs/scale-out.md, "Status and drain"). It connects to NATS, binds the cluster's buckets without
// ever creating them (a NATS that no node has used is "no Vigil cluster", not an empty one), reads
// the status as the nodes publish it, and writes drain requests. It holds no lease and registers
// nothing: the nodes act on a drain request in their own control loop.
import type { JetStreamManager, KV } from 'nats';
import { isVigilError, VigilError } from '../../common/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { BUCKETS, type ClusterBuckets, clusterRequest, DEFAULT_NODE_TTL_MS } from './buckets.js';
import { type ClusterStatus, readClusterStatus } from './clusterStatus.js';
import { DesiredState } from './desiredState.js';
import { DEFAULT_SKEW_MS, leaseIsFree, type LeaseState, type LeaseValue, readLease } from './leases.js';
import { ClusterConnection, type NatsConnectOptions } from './natsConnection.js';
import { NODE_ID, NodeRegistry } from './nodeRegistry.js';

export interface ClusterAdminOptions {
  /** `nats://host[:port]`, comma-separated or a list. */
  servers: string | readonly string[];
  /** Default OutboundPolicy.trusted: the operator's own command, as for the CLI's sources. */
  policy?: OutboundPolicy;
  /** NATS credentials (from the environment, never argv). */
  user?: string;
  pass?: string;
  /** How long past a lease's expiry it still counts as held (the nodes' `skewMs`). Default 1000. */
  skewMs?: number;
  connection?: Pick<NatsConnectOptions, 'connectTimeoutMs' | 'reconnectWaitMs' | 'requestTimeoutMs' | 'jetStreamWaitMs'>;
}

export interface DrainProgress {
  /** Streams the node still owns. */
  owned: string[];
  status: ClusterStatus;
}

const POLL_MS = 1000;

export class ClusterAdmin {
  private readonly desired: DesiredState;
  private readonly leases: LeaseReader;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly conn: ClusterConnection,
    private readonly buckets: ClusterBuckets,
    skewMs: number,
  ) {
    this.desired = new DesiredState(buckets);
    this.leases = new LeaseReader(buckets.leases, skewMs);
  }

  /** Connects and binds the buckets: BAD_CONFIG when NATS does not answer, or holds no Vigil cluster. */
  static async open(options: ClusterAdminOptions): Promise<ClusterAdmin> {
    const conn = await ClusterConnection.open({
      servers: options.servers,
      policy: options.policy ?? OutboundPolicy.trusted,
      name: 'vigil-admin',
      ...(options.user !== undefined ? { user: options.user, pass: options.pass ?? '' } : {}),
      ...options.connection,
    });
    try {
      return new ClusterAdmin(conn, await bindBuckets(conn), options.skewMs ?? DEFAULT_SKEW_MS);
    } catch (error) {
      await conn.close();
      throw error;
    }
  }

  /** The cluster as KV has it now. */
  status(): Promise<ClusterStatus> {
    return this.kv(() => readClusterStatus(this.buckets, this.desired, this.leases));
  }

  /** Asks a live node to hand its streams over and take no new ones; BAD_INPUT for a node that is not live. */
  async drain(nodeId: string): Promise<void> {
    checkNodeId(nodeId);
    const nodes = await this.kv(() => NodeRegistry.list(this.buckets));
    if (!nodes.some((n) => n.nodeId === nodeId)) {
      throw new VigilError('BAD_INPUT', `no live node '${nodeId}' in the cluster (live: ${nodes.map((n) => n.nodeId).join(', ') || 'none'})`);
    }
    await this.kv(() => this.desired.requestDrain(nodeId));
  }

  /** Undoes a drain request (a node that is gone may be undrained too: its request would outlive it). */
  async undrain(nodeId: string): Promise<void> {
    checkNodeId(nodeId);
    await this.kv(() => this.desired.cancelDrain(nodeId));
  }

  /**
   * Polls the status until `nodeId` owns no stream: true, or false when `timeoutMs` passed first.
   * `onProgress` hears every poll.
   */
  async waitDrained(nodeId: string, options: { timeoutMs: number; pollMs?: number; onProgress?: (p: DrainProgress) => void }): Promise<{ drained: boolean; last: DrainProgress }> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const status = await this.status();
      const owned = status.streams.filter((s) => s.owner === nodeId).map((s) => s.id);
      const progress = { owned, status };
      options.onProgress?.(progress);
      if (owned.length === 0) return { drained: true, last: progress };
      if (Date.now() >= deadline) return { drained: false, last: progress };
      await new Promise((r) => setTimeout(r, Math.min(options.pollMs ?? POLL_MS, Math.max(0, deadline - Date.now()))));
    }
  }

  dispose(): Promise<void> {
    this.closing ??= this.conn.close();
    return this.closing;
  }

  private kv<T>(request: () => Promise<T>): Promise<T> {
    return clusterRequest(request);
  }

}

function checkNodeId(nodeId: string): void {
  if (!NODE_ID.test(nodeId)) throw new VigilError('BAD_INPUT', `'${nodeId}' is not a node id (1-64 letters, digits, '-' or '_', starting with a letter or digit)`);
}

/**
 * The three buckets as the nodes made them, bound without creating anything: BAD_CONFIG "no Vigil
 * cluster on this NATS" when one is missing. Registry and lease reads go to the stream leader, as
 * the nodes' own do (buckets.ts).
 */
async function bindBuckets(conn: ClusterConnection): Promise<ClusterBuckets> {
  const bind = async (name: string, leaderReads: boolean): Promise<{ kv: KV; maxAgeMs: number }> => {
    const info = await streamInfo(conn.jsm, name);
    const kv = await conn.js.views.kv(name, { bindOnly: true, allow_direct: leaderReads ? false : info.config.allow_direct === true });
    return { kv, maxAgeMs: info.config.max_age / 1e6 };
  };
  const nodes = await bind(BUCKETS.nodes, true);
  const desired = await bind(BUCKETS.desired, false);
  const leases = await bind(BUCKETS.leases, true);
  return { jsm: conn.jsm, nodes: nodes.kv, desired: desired.kv, leases: leases.kv, nodeTtlMs: nodes.maxAgeMs > 0 ? nodes.maxAgeMs : DEFAULT_NODE_TTL_MS };
}

async function streamInfo(jsm: JetStreamManager, bucket: string) {
  try {
    return await jsm.streams.info(`KV_${bucket}`);
  } catch (error) {
    const api = (error as { api_error?: { err_code?: number } }).api_error;
    if (api?.err_code === 10059 || /stream not found/i.test((error as Error).message)) {
      throw new VigilError('BAD_CONFIG', `no Vigil cluster on this NATS (no ${bucket} bucket): is it the NATS the nodes were started with (vigil serve --cluster)?`, { cause: error });
    }
    throw new VigilError('CLUSTER_UNAVAILABLE', `the cluster's NATS does not answer (${(error as Error).message})`, { cause: error });
  }
}

/** Reads leases as LeaseManager does, without holding any (no renew timer to stop). */
class LeaseReader {
  constructor(
    private readonly kv: KV,
    private readonly skewMs: number,
  ) {}

  read(streamId: string): Promise<LeaseState | null> {
    return readLease(this.kv, streamId);
  }

  isFree(value: LeaseValue, now = Date.now()): boolean {
    return leaseIsFree(value, this.skewMs, now);
  }
}
