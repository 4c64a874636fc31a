// One Vigil node in a cluster (docs/scale-out.md): joins NATS, registers, and keeps the streams it
// owns in its local StreamManager in line with the cluster's desired state. Every second
// (`reconcileMs`) it reads the live nodes, the desired streams, their leases and drain requests,
// runs place(), and acts on its own share only: it takes the leases of streams assigned to it
// (restoring their memory from the object store when its own copy is not the newest), hands over
// streams when it is drained, and drops streams nobody wants any more. A lease lost (taken, or not
// renewed within its TTL) stops the stream here at once; the manager's commit fence refuses any
// frame in between, and the replicator's fence refuses any snapshot. Races between nodes are
// settled by the leases' compare-and-set, never by this loop's timing.
import { randomBytes } from 'node:crypto';
import type { ObjectStore } from 'nats';
import { isVigilError, VigilError } from '../../common/errors.js';
import type { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { checkStreamId, streamDir } from '../engine/dataLayout.js';
import { type CreateStreamRequest, OverloadedError, type StreamManager, type StreamManagerOptions, type StreamStatus } from '../engine/streamManager.js';
import { type ClusterBuckets, clusterRequest, openBuckets, openWhenSettled } from './buckets.js';
import { type ClusterStatus, publishReport, readClusterStatus, readReports, type StreamReport } from './clusterStatus.js';
import { type DesiredEntry, DesiredState } from './desiredState.js';
import type { EpochFence } from './fencing.js';
import { type HeldLease, LeaseManager, type LeaseEvent } from './leases.js';
import { ClusterConnection, type NatsConnectOptions } from './natsConnection.js';
import { checkNodeInfo, NodeRegistry, type NodeInfo } from './nodeRegistry.js';
import { place } from './placement.js';
import { StreamReplicator } from './replication.js';
import type { ClusterRouting, ClusterStreams, StreamRoute } from './streamRoutes.js';
import { prepareTenureFolder, recordTenure } from './tenureFolder.js';

/** The object store bucket of replicated stream memories. */
export const MEMORY_BUCKET = 'vigil_memory';

export interface ClusterNodeOptions {
  /** `nats://host[:port]`, comma-separated or a list. */
  servers: string | readonly string[];
  nodeId: string;
  /** How many streams this node may own. */
  capacity: number;
  /** Every NATS connection and every forwarded API call is checked by this policy. */
  policy: OutboundPolicy;
  /** NATS credentials (from the environment, never argv). */
  user?: string;
  pass?: string;
  /** JetStream replicas of the buckets: 3 on a 3-server NATS cluster. Default 1. */
  replicas?: number;
  leaseTtlMs?: number;
  skewMs?: number;
  nodeTtlMs?: number;
  /** How often the node compares desired state with what it runs, ms. Default 1000. */
  reconcileMs?: number;
  /** A snapshot of each owned stream's memory at most this often, seconds. Default 5. */
  replicationIntervalSec?: number;
  /** NATS connection tuning (timeouts, reconnect wait). */
  connection?: Pick<NatsConnectOptions, 'connectTimeoutMs' | 'reconnectWaitMs' | 'requestTimeoutMs' | 'jetStreamWaitMs'>;
  log?: (line: string) => void;
}

interface Owned {
  epoch: number;
  fence: EpochFence;
  replicator: StreamReplicator;
  /**
   * The lease lapsed (no renew reached NATS within the TTL) and this node is taking it back: frames
   * wait (commitGate) until it has, or until another node turns out to hold it.
   */
  lapsed: { since: number; wake: Array<() => void> } | null;
}

const DEFAULT_RECONCILE_MS = 1000;
const DEFAULT_REPLICATION_INTERVAL_S = 5;
/**
 * A stream this node failed to open is not tried again here for a while (another node may manage):
 * long when the stream itself is at fault (its source refused, its settings no longer fit), short
 * when NATS or the object store was (a leader election in progress).
 */
const ADOPT_BACKOFF_MS = { stream: 15_000, transient: 2000 };
/** A restore gives up on an object that sends nothing for this long (then tries again after the short backoff). */
const RESTORE_OBJECT_TIMEOUT_MS = 10_000;
/** How long a starting node retries creating its buckets while a new NATS cluster settles. */
const BUCKETS_SETTLE_MS = 20_000;
/** How long a node that just got NATS back leaves other nodes' lapsed streams to them (two heartbeats and a reconcile). */
const QUIET_AFTER_OUTAGE_MS = 4000;
const TRANSIENT_CODES = new Set(['STORE_IO', 'CLUSTER_UNAVAILABLE', 'STORE_CORRUPT', 'INTERNAL', 'DISPOSED']);
/** Leases read side by side in one reconcile. */
const LEASE_READ_BATCH = 32;

export class ClusterNode implements ClusterRouting, ClusterStreams {
  readonly nodeId: string;
  readonly outbound: OutboundPolicy;
  private readonly log: (line: string) => void;
  private readonly desired: DesiredState;
  private readonly leases: LeaseManager;
  private manager: StreamManager | null = null;
  private registry: NodeRegistry | null = null;
  private readonly owned = new Map<string, Owned>();
  /** Streams being opened, handed over or dropped here (one operation per stream at a time). */
  private readonly busy = new Set<string>();
  private readonly backoff = new Map<string, number>();
  private nodes: NodeInfo[] = [];
  private timer: NodeJS.Timeout | null = null;
  private reconciling: Promise<void> | null = null;
  private readonly pending = new Set<Promise<void>>();
  private unsubscribeLeases: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private lastReconcileError = '';
  private quietUntil = 0;

  private constructor(
    private readonly options: ClusterNodeOptions,
    private readonly conn: ClusterConnection,
    private readonly buckets: ClusterBuckets,
    private readonly memory: ObjectStore,
  ) {
    this.nodeId = options.nodeId;
    this.outbound = options.policy;
    this.log = options.log ?? (() => {});
    this.desired = new DesiredState(buckets, this.log);
    this.leases = new LeaseManager(buckets.leases, {
      nodeId: options.nodeId,
      ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}),
      ...(options.skewMs !== undefined ? { skewMs: options.skewMs } : {}),
      log: this.log,
    });
  }

  /**
   * Connects to NATS and opens the buckets (BAD_CONFIG naming the servers when NATS does not answer
   * or has no JetStream). Nothing is registered yet: join() does that once the API listens.
   */
  static async connect(options: ClusterNodeOptions): Promise<ClusterNode> {
    checkNodeInfo({ nodeId: options.nodeId, capacity: options.capacity, startedAt: '', apiUrl: '' });
    const conn = await ClusterConnection.open({
      servers: options.servers,
      policy: options.policy,
      name: `vigil-${options.nodeId}`,
      ...(options.user !== undefined ? { user: options.user, pass: options.pass ?? '' } : {}),
      ...options.connection,
      ...(options.log ? { log: options.log } : {}),
    });
    try {
      const replicas = options.replicas ?? 1;
      const buckets = await openWhenSettled(() => openBuckets(conn, { replicas, ...(options.nodeTtlMs !== undefined ? { nodeTtlMs: options.nodeTtlMs } : {}) }), BUCKETS_SETTLE_MS);
      const memory = await openWhenSettled(() => conn.js.views.os(MEMORY_BUCKET, { replicas }), BUCKETS_SETTLE_MS);
      return new ClusterNode(options, conn, buckets, memory);
    } catch (error) {
      await conn.close();
      throw error;
    }
  }

  /**
   * What the node's StreamManager must be opened with: no stream opened by itself (the node opens
   * those whose leases it takes), every frame through the lease gate and fence.
   */
  managerOptions(): Required<Pick<StreamManagerOptions, 'openRecorded' | 'commitFence' | 'commitGate'>> {
    return { openRecorded: false, commitFence: (id) => this.assertOwner(id), commitGate: (id, signal) => this.awaitLease(id, signal) };
  }

  /**
   * The manager's commit fence: throws unless this node holds the stream's lease, renewed within
   * its TTL (no I/O). Passed to the manager as `commitFence`.
   */
  assertOwner(streamId: string): void {
    const owned = this.owned.get(streamId);
    if (owned) return owned.fence.assertCurrent();
    // Opening: the lease is held, the stream is not recorded as owned yet.
    this.leases.fence(streamId).assertCurrent();
  }

  /**
   * The manager's commit gate: waits while the stream's lease lapsed and this node is taking it
   * back (NATS out of reach); throws when the stream is no longer this node's.
   */
  async awaitLease(streamId: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      const owned = this.owned.get(streamId);
      if (!owned) throw new VigilError('STREAM_UNAVAILABLE', `stream '${streamId}': this node no longer owns it`);
      if (!owned.lapsed) return;
      signal.throwIfAborted();
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        owned.lapsed!.wake.push(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Registers this node (BAD_CONFIG when a live node has its id) and starts following desired state. */
  async join(manager: StreamManager, apiUrl: string): Promise<void> {
    this.manager = manager;
    this.registry = await NodeRegistry.join(
      this.buckets,
      { nodeId: this.nodeId, capacity: this.options.capacity, startedAt: new Date().toISOString(), apiUrl },
      { log: this.log, onEvent: (event) => this.log(`cluster: registry ${event.kind}${'reason' in event ? ` (${event.reason})` : ''}`) },
    );
    this.unsubscribeLeases = this.leases.on((event) => this.onLease(event));
    this.log(`cluster: node ${this.nodeId} joined (capacity ${this.options.capacity}, API ${apiUrl})`);
    this.timer = setInterval(() => this.reconcileSoon(), this.options.reconcileMs ?? DEFAULT_RECONCILE_MS);
    this.reconcileSoon();
  }

  // ---- routing (api/clusterProxy.ts asks) -------------------------------------------------

  async route(streamId: string): Promise<StreamRoute> {
    if (this.owned.has(streamId)) return { kind: 'local' };
    const lease = await this.kv(() => this.leases.read(streamId));
    const owner = lease && !this.leases.isFree(lease.value) ? lease.value.owner : null;
    if (owner === this.nodeId) return this.busy.has(streamId) ? { kind: 'moving', retryAfterS: 1 } : { kind: 'local' };
    if (owner !== null) {
      const node = this.nodes.find((n) => n.nodeId === owner) ?? (await this.refreshNodes()).find((n) => n.nodeId === owner);
      if (node) return { kind: 'remote', nodeId: node.nodeId, url: node.apiUrl };
    }
    const desired = await this.kv(() => this.desired.get(streamId));
    return desired ? { kind: 'moving', retryAfterS: Math.ceil((this.leases.ttlMs + this.leases.skewMs) / 1000) } : { kind: 'local' };
  }

  async placeNew(): Promise<StreamRoute> {
    const status = await this.kv(() => readClusterStatus(this.buckets, this.desired, this.leases));
    const nodes = status.nodes.map((n) => ({ nodeId: n.nodeId, capacity: n.capacity, draining: n.draining }));
    const owners = Object.fromEntries(status.streams.map((s) => [s.id, s.owner]));
    const probe = '\u{10FFFF}new';
    const plan = place({ nodes, streams: [...status.streams.map((s) => s.id), probe], owners });
    const target = plan.assignments.find((a) => a.streamId === probe)?.nodeId;
    if (target === undefined) throw new OverloadedError(`every node of the cluster is at capacity (${nodes.length} nodes): add a node or raise --capacity`, 30);
    if (target === this.nodeId) return { kind: 'local' };
    const node = status.nodes.find((n) => n.nodeId === target)!;
    return { kind: 'remote', nodeId: node.nodeId, url: node.apiUrl };
  }

  async peers(): Promise<Array<{ nodeId: string; url: string }>> {
    return (await this.refreshNodes()).filter((n) => n.nodeId !== this.nodeId).map((n) => ({ nodeId: n.nodeId, url: n.apiUrl }));
  }

  // ---- stream operations on the owner (routed here by the API) ----------------------------

  /** Creates a stream owned by this node: its lease, its desired state, then its memory and ingest. */
  async createStream(request: CreateStreamRequest): Promise<StreamStatus> {
    this.joined();
    if (request.upload) throw new VigilError('BAD_INPUT', 'uploads are not supported in cluster mode (a node\'s uploaded file would not survive a failover): give a source URL');
    const id = request.id !== undefined ? checkStreamId(request.id) : `s${randomBytes(4).toString('hex')}`;
    if (await this.kv(() => this.desired.get(id))) throw new VigilError('STREAM_EXISTS', `a stream with id '${id}' already exists`);
    // The lease first: the other nodes' loops then see the new stream as owned, and leave it be.
    const lease = await this.kv(() => this.leases.acquire(id));
    if (!lease) throw new VigilError('STREAM_EXISTS', `a stream with id '${id}' already exists (another node holds it)`);
    this.busy.add(id);
    try {
      const settings: Omit<CreateStreamRequest, 'id'> = { ...request };
      delete (settings as CreateStreamRequest).id;
      try {
        await this.desired.put({ id, settings: settings as Record<string, unknown>, watches: [] }, 0);
      } catch (error) {
        throw new VigilError('STREAM_EXISTS', `a stream with id '${id}' already exists`, { cause: error });
      }
      try {
        return await this.open(id, lease, { id, settings: settings as Record<string, unknown>, watches: [], updatedAt: Date.now() });
      } catch (error) {
        await this.desired.delete(id).catch((e: unknown) => this.log(`cluster: stream ${id}: desired state not removed after a failed create: ${(e as Error).message}`));
        throw error;
      }
    } catch (error) {
      await this.leases.release(id);
      throw error;
    } finally {
      this.busy.delete(id);
    }
  }

  /** Deletes a stream this node owns: here, from desired state, and its lease. */
  async removeStream(id: string, options: { purge?: boolean } = {}): Promise<void> {
    const manager = this.joined();
    this.busy.add(id);
    try {
      await manager.remove(id, options);
      await this.forget(id);
      await this.kv(() => this.desired.delete(id));
      await this.leases.release(id);
    } finally {
      this.busy.delete(id);
    }
  }

  /** Stops or starts a stream this node owns, and records it in desired state (a new owner keeps it so). */
  async setStopped(id: string, stopped: boolean): Promise<StreamStatus> {
    const manager = this.joined();
    const status = stopped ? await manager.stop(id) : await manager.start(id);
    await this.updateDesired(id, (state) => ({ ...state, stopped }));
    return status;
  }

  /** After a watch was added or removed here: desired state lists the stream's watches (for the cluster status). */
  async watchesChanged(id: string): Promise<void> {
    const manager = this.joined();
    const watches = manager.listWatches(id).map((w) => ({ id: w.id, ...('question' in w ? { question: w.question } : {}), ...('condition' in w ? { condition: w.condition } : {}) }));
    await this.updateDesired(id, (state) => ({ ...state, watches }));
  }

  /** Asks a node to hand its streams over and take no new ones (undo: drain(nodeId, false)). BAD_INPUT for a node that is not live. */
  async drain(nodeId: string, on = true): Promise<void> {
    if (on && !(await this.refreshNodes()).some((n) => n.nodeId === nodeId)) throw new VigilError('BAD_INPUT', `no live node '${nodeId}' in the cluster`);
    await this.kv(() => (on ? this.desired.requestDrain(nodeId) : this.desired.cancelDrain(nodeId)));
    this.log(`cluster: node ${nodeId} ${on ? 'asked to drain' : 'no longer draining'}`);
  }

  /** The cluster as KV has it now. */
  status(): Promise<ClusterStatus> {
    return this.kv(() => readClusterStatus(this.buckets, this.desired, this.leases));
  }

  /** Streams this node owns and their replication (for /metrics and its report). */
  ownedStreams(): StreamReport[] {
    const out: StreamReport[] = [];
    for (const [id, owned] of this.owned) {
      const r = owned.replicator.status();
      let state = 'unknown';
      try {
        state = this.manager?.status(id).state ?? state;
      } catch {
        // Being released: the report says 'unknown' once.
      }
      out.push({ id, epoch: owned.epoch, state, lagSec: r.snapshots > 0 ? r.lagSec : null, recoveryPoint: r.recoveryPoint, bytesPerSec: r.bytesPerSec, snapshots: r.snapshots, failures: r.failures });
    }
    return out;
  }

  /** Hands every stream over (leases released after a last snapshot), leaves the registry, closes NATS. */
  dispose(): Promise<void> {
    this.closing ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      await this.reconciling;
      await Promise.allSettled([...this.pending]);
      this.unsubscribeLeases?.();
      await Promise.allSettled([...this.owned.keys()].map((id) => this.handOver(id)));
      await this.leases.close();
      await this.registry?.close().catch((error: unknown) => this.log(`cluster: leaving the registry failed: ${(error as Error).message}`));
      await this.conn.close();
    })();
    return this.closing;
  }

  // ---- the loop -----------------------------------------------------------------------------

  private reconcileSoon(): void {
    if (this.reconciling || this.closing) return;
    this.reconciling = this.reconcile()
      .then(
        () => {
          this.lastReconcileError = '';
        },
        (error: unknown) => {
          // After NATS was out of reach for this node, it takes no other node's streams for a moment:
          // when the outage was everyone's, their owners take them back first (see reconcile()).
          this.quietUntil = Date.now() + QUIET_AFTER_OUTAGE_MS;
          // NATS out of reach: what runs here keeps running (within its leases); said once per cause.
          const message = (error as Error).message;
          if (message !== this.lastReconcileError) this.log(`cluster: reconcile failed: ${message}`);
          this.lastReconcileError = message;
        },
      )
      .finally(() => {
        this.reconciling = null;
      });
  }

  private async reconcile(): Promise<void> {
    // Requests per second of each node: one for desired state (unless it changed), the registry and
    // the reports (one per node), and the leases of streams no live node reports as its own: not
    // one read per stream (docs/scale-out.md, "Up to 1,000 cameras").
    const [nodes, { entries, draining }, reports] = await Promise.all([this.refreshNodes(), this.desired.snapshot(), readReports(this.buckets)]);
    const byId = new Map(entries.map((e) => [e.state.id, e]));
    const owners: Record<string, string | null> = {};
    const ids = [...byId.keys()];
    const now = Date.now();
    const stays = new Set(nodes.filter((n) => !draining.has(n.nodeId)).map((n) => n.nodeId));
    const live = new Set(nodes.map((n) => n.nodeId));
    const claims = new Map<string, string[]>();
    for (const report of reports.values()) {
      if (!live.has(report.nodeId) || report.nodeId === this.nodeId) continue;
      for (const s of report.streams) claims.set(s.id, [...(claims.get(s.id) ?? []), report.nodeId]);
    }
    for (const id of this.owned.keys()) claims.set(id, [...(claims.get(id) ?? []), this.nodeId]);
    const unclaimed: string[] = [];
    for (const id of ids) {
      const by = claims.get(id);
      if (by?.length === 1) owners[id] = by[0]!;
      else unclaimed.push(id);
    }
    for (let i = 0; i < unclaimed.length; i += LEASE_READ_BATCH) {
      const batch = unclaimed.slice(i, i + LEASE_READ_BATCH);
      const leases = await Promise.all(batch.map((id) => this.leases.read(id)));
      batch.forEach((id, j) => {
        const lease = leases[j]?.value;
        // A lease that lapsed a moment ago while its owner is alive (NATS was out of reach for
        // everyone, e.g. a NATS leader election) stays with that owner, which takes it back and
        // keeps its local memory, rather than being shuffled among the nodes; a dead owner's goes.
        const sticky = lease?.owner != null && stays.has(lease.owner) && now <= lease.expiresAt + this.leases.skewMs + this.leases.ttlMs;
        owners[id] = lease && (!this.leases.isFree(lease, now) || sticky) ? lease.owner : null;
      });
    }
    const plan = place({ nodes: nodes.map((n) => ({ nodeId: n.nodeId, capacity: n.capacity, draining: draining.has(n.nodeId) })), streams: ids, owners });
    // Right after an outage of its own, a node only takes back what was its own.
    const mine = now < this.quietUntil ? [] : plan.assignments.filter((a) => a.nodeId === this.nodeId).map((a) => a.streamId);
    // Streams KV still names this node for that it does not hold (lapsed, or held by this node's previous process).
    for (const id of ids) if (owners[id] === this.nodeId && !draining.has(this.nodeId)) mine.push(id);
    for (const streamId of mine) {
      if (this.owned.has(streamId) || this.busy.has(streamId) || (this.backoff.get(streamId) ?? 0) > now) continue;
      this.track(streamId, () => this.adopt(byId.get(streamId)!));
    }
    for (const [id, owned] of this.owned) {
      if (owned.lapsed && !this.busy.has(id)) this.track(id, () => this.takeBack(id, byId.get(id)?.state));
    }
    const unplaced = new Set(plan.unplaced);
    for (const { streamId, from } of plan.handOver) {
      // A draining node keeps what no other node has room for.
      if (from === this.nodeId && !unplaced.has(streamId) && this.owned.has(streamId) && !this.busy.has(streamId)) this.track(streamId, () => this.handOver(streamId));
    }
    // Deleted by a caller whose request did not reach this node (or while it was cut off).
    for (const id of this.owned.keys()) {
      if (!byId.has(id) && !this.busy.has(id)) this.track(id, () => this.handOver(id));
    }
    await publishReport(this.buckets, { nodeId: this.nodeId, at: now, streams: this.ownedStreams() });
  }

  /** Runs one operation on a stream in the background (at most one per stream), errors logged. */
  private track(streamId: string, operation: () => Promise<void>): void {
    this.busy.add(streamId);
    const done = operation()
      .catch((error: unknown) => this.log(`cluster: stream ${streamId}: ${(error as Error).message}`))
      .finally(() => {
        this.busy.delete(streamId);
        this.pending.delete(done);
      });
    this.pending.add(done);
  }

  /** Takes a stream placed on this node: its lease (or nothing, when another node won it), then its memory. */
  private async adopt(entry: DesiredEntry): Promise<void> {
    const id = entry.state.id;
    const lease = await this.leases.acquire(id);
    if (!lease) return;
    try {
      await this.open(id, lease, entry.state);
    } catch (error) {
      const transient = !isVigilError(error) || TRANSIENT_CODES.has(error.code);
      this.backoff.set(id, Date.now() + (transient ? ADOPT_BACKOFF_MS.transient : ADOPT_BACKOFF_MS.stream));
      await this.leases.release(id);
      throw new VigilError(isVigilError(error) ? error.code : 'INTERNAL', `could not be taken over: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Opens a stream under a lease this node holds: its folder for this tenure, the manager's stream, its replicator. */
  private async open(id: string, lease: HeldLease, state: DesiredEntry['state']): Promise<StreamStatus> {
    const manager = this.joined();
    const dir = streamDir(manager.dataDir, id);
    const origin = await prepareTenureFolder(this.memory, id, dir, this.nodeId, lease.epoch, RESTORE_OBJECT_TIMEOUT_MS);
    const fence = this.leases.fence(id);
    let status: StreamStatus;
    try {
      status = await manager.create({ ...(state.settings as CreateStreamRequest), id });
      if (state.stopped) status = await manager.stop(id);
    } catch (error) {
      await manager.release(id).catch(() => undefined);
      throw error;
    }
    manager.setOwnership(id, { owner: this.nodeId, epoch: lease.epoch });
    const replicator = new StreamReplicator({
      bucket: this.memory,
      streamId: id,
      dir,
      intervalSec: this.options.replicationIntervalSec ?? DEFAULT_REPLICATION_INTERVAL_S,
      // The fence of the tenure in force (a lease taken back after a lapse has a new epoch).
      beforeCommit: () => this.fenceOf(id).assertCurrentInKv(),
      onError: (error) => this.log(`cluster: stream ${id}: replication: ${error.message}`),
    }).start();
    this.owned.set(id, { epoch: lease.epoch, fence, replicator, lapsed: null });
    const how = origin.kind === 'restored' ? `restored from snapshot ${origin.report.seq} (${origin.report.files} files, ${(origin.report.bytes / 1e6).toFixed(1)} MB, ${Math.round(origin.report.ms)} ms${origin.report.gap ? `, gap ${(origin.report.gap.tEnd - origin.report.gap.tStart).toFixed(1)} s` : ''})` : origin.kind === 'kept' ? 'its local memory is the newest' : 'new';
    this.log(`cluster: stream ${id}: owned at epoch ${lease.epoch}, ${how}`);
    return { ...status, owner: this.nodeId, epoch: lease.epoch };
  }

  /** Lets a stream go in order: ingest stopped, a last snapshot while the lease is still ours, then the lease. */
  private async handOver(id: string): Promise<void> {
    const owned = this.owned.get(id);
    await this.manager?.release(id);
    if (owned) {
      try {
        await owned.replicator.snapshotNow({ handOver: true });
      } catch (error) {
        this.log(`cluster: stream ${id}: last snapshot before the hand-over failed (${(error as Error).message}); the next owner starts from the one before`);
      }
    }
    await this.forget(id);
    await this.leases.release(id);
    this.log(`cluster: stream ${id}: handed over`);
  }

  /**
   * A lease lost. Taken by another node: the stream stops here at once. Run out (no renew reached
   * NATS within the TTL): frames are held (the fence already refuses them) and the stream stays open
   * while this node tries to take the lease back (reconcile); it stops if another node has it.
   */
  private onLease(event: LeaseEvent): void {
    const owned = this.owned.get(event.streamId);
    if (event.kind !== 'lost' || !owned) return;
    const id = event.streamId;
    if (event.reason === 'expired') {
      owned.lapsed ??= { since: Date.now(), wake: [] };
      this.log(`cluster: stream ${id}: lease lapsed at epoch ${event.epoch} (NATS out of reach?); frames held until it is taken back`);
      return;
    }
    this.log(`cluster: stream ${id}: lease lost (${event.reason}${event.owner ? `, now ${event.owner} at epoch ${event.ownerEpoch}` : ''}); ingest stopped here`);
    this.track(id, () => this.letGo(id));
  }

  /** Takes a lapsed lease back (a new epoch, the same memory), or lets the stream go when another node holds it. */
  private async takeBack(id: string, state: DesiredEntry['state'] | undefined): Promise<void> {
    const owned = this.owned.get(id);
    if (!owned?.lapsed) return;
    const current = await this.leases.read(id);
    if (current && current.value.owner !== null && current.value.owner !== this.nodeId && !this.leases.isFree(current.value)) {
      this.log(`cluster: stream ${id}: ${current.value.owner} holds it now (epoch ${current.value.epoch}); ingest stopped here`);
      return this.letGo(id);
    }
    const lease = await this.leases.acquire(id);
    if (!lease) {
      // Not free yet by this node's clock (expiry plus skew), or another node won it just now.
      const now = await this.leases.read(id);
      if (now && now.value.owner !== this.nodeId && now.value.owner !== null && !this.leases.isFree(now.value)) return this.letGo(id);
      return;
    }
    const manager = this.joined();
    recordTenure(streamDir(manager.dataDir, id), this.nodeId, lease.epoch);
    owned.epoch = lease.epoch;
    owned.fence = this.leases.fence(id);
    const waiting = owned.lapsed.wake;
    const heldMs = Date.now() - owned.lapsed.since;
    owned.lapsed = null;
    manager.setOwnership(id, { owner: this.nodeId, epoch: lease.epoch });
    for (const wake of waiting) wake();
    // A frame that passed the gate as the lease ran out was refused by the fence, which ended the ingest: start it again.
    if (state?.stopped !== true && manager.status(id).state === 'failed') await manager.start(id);
    this.log(`cluster: stream ${id}: lease taken back at epoch ${lease.epoch} after ${(heldMs / 1000).toFixed(1)} s; held frames go on`);
  }

  /** The stream stops here: ingest and memory closed, replicator stopped, held frames dropped. */
  private async letGo(id: string): Promise<void> {
    const owned = this.owned.get(id);
    await this.manager?.release(id);
    await this.forget(id);
    for (const wake of owned?.lapsed?.wake.splice(0) ?? []) wake();
  }

  private fenceOf(id: string): EpochFence {
    const owned = this.owned.get(id);
    if (!owned) throw new VigilError('STREAM_UNAVAILABLE', `stream '${id}': this node no longer owns it`);
    return owned.fence;
  }

  private async forget(id: string): Promise<void> {
    const owned = this.owned.get(id);
    this.owned.delete(id);
    await owned?.replicator.dispose();
  }

  private async updateDesired(id: string, change: (state: DesiredEntry['state']) => DesiredEntry['state']): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await this.kv(() => this.desired.get(id));
      if (!entry) return;
      try {
        await this.desired.put(change(entry.state), entry.revision);
        return;
      } catch (error) {
        if (attempt === 4) throw error;
      }
    }
  }

  private async refreshNodes(): Promise<NodeInfo[]> {
    this.nodes = await NodeRegistry.list(this.buckets);
    return this.nodes;
  }

  private joined(): StreamManager {
    if (this.closing) throw new VigilError('CLUSTER_UNAVAILABLE', 'this node is leaving the cluster');
    if (!this.manager) throw new VigilError('CLUSTER_UNAVAILABLE', 'this node has not joined the cluster yet');
    return this.manager;
  }

  private kv<T>(request: () => Promise<T>): Promise<T> {
    return clusterRequest(request);
  }

}
