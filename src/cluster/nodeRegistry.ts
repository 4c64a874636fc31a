/**
 * Which nodes are alive (docs/scale-out.md, "Nodes"): each node keeps `node.<id>` in the nodes
 * bucket, written at join with create() (so a second node with the same id, while the first is
 * alive, is refused) and rewritten every heartbeat with a compare-and-set on its revision. The
 * bucket's TTL (max age, ~5 s) removes the entry of a node whose heartbeats stopped: a dead node
 * leaves the list by itself, and its id is free again.
 *
 * A heartbeat whose compare-and-set fails means the entry changed under us: when it expired (NATS
 * was out of reach longer than the TTL) the node registers again; when another process registered
 * the same id meanwhile, this node has lost its identity and says so (`lost`), once.
 */
import crypto from 'node:crypto';
import type { KV } from 'nats';
import { z } from 'zod';
import { VigilError } from '../../common/errors.js';
import { BUCKETS, type ClusterBuckets, decodeJson, encodeJson, isRevisionConflict, listKeys } from './buckets.js';

/** A node id: letters, digits, "-" and "_" (a KV key part and a file name), up to 64. */
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export interface NodeInfo {
  nodeId: string;
  /** How many streams it may own. */
  capacity: number;
  /** ISO time the node joined. */
  startedAt: string;
  /** Where its HTTP API answers (requests are forwarded there). */
  apiUrl: string;
}

const recordSchema = z.object({
  nodeId: z.string().regex(NODE_ID),
  capacity: z.number().int().min(0),
  startedAt: z.string(),
  apiUrl: z.string(),
  /** Random per process: tells this process's own writes from another's with the same id. */
  instance: z.string(),
  /** Epoch ms of the write (the writer's clock). */
  heartbeatAt: z.number(),
});
type NodeRecord = z.infer<typeof recordSchema>;

export type RegistryEvent = { kind: 'lost'; nodeId: string; reason: string } | { kind: 'rejoined'; nodeId: string };

export interface RegistryOptions {
  /** Heartbeat period, ms. Default a third of the bucket's TTL. */
  heartbeatMs?: number;
  /** One line per noteworthy event. */
  log?: (line: string) => void;
  /** The registration was lost to another process, or made again after it expired. */
  onEvent?: (event: RegistryEvent) => void;
}

export function nodeKey(nodeId: string): string {
  return `node.${nodeId}`;
}

/** A valid registration, or null (a foreign or damaged value is not a node). */
function parseRecord(bytes: Uint8Array): NodeRecord | null {
  const parsed = recordSchema.safeParse(decodeJson(bytes));
  return parsed.success ? parsed.data : null;
}

/** Checks a node's declared identity: BAD_CONFIG naming the field. */
export function checkNodeInfo(info: NodeInfo): NodeInfo {
  if (typeof info.nodeId !== 'string' || !NODE_ID.test(info.nodeId)) {
    throw new VigilError('BAD_CONFIG', `node id '${String(info.nodeId)}' is not valid: use 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
  }
  if (!Number.isInteger(info.capacity) || info.capacity < 0) throw new VigilError('BAD_CONFIG', `node capacity must be a whole number >= 0, got ${String(info.capacity)}`);
  return info;
}

/** This node's registration; the parent closes it (which removes the entry). */
export class NodeRegistry {
  private readonly key: string;
  private readonly instance = crypto.randomUUID();
  private revision: number;
  private timer: NodeJS.Timeout | null = null;
  private beating = false;
  private failing = false;
  private closed = false;
  private lostIt = false;

  private constructor(
    private readonly kv: KV,
    readonly info: NodeInfo,
    private readonly options: RegistryOptions,
    revision: number,
    heartbeatMs: number,
  ) {
    this.key = nodeKey(info.nodeId);
    this.revision = revision;
    this.timer = setInterval(() => {
      this.heartbeat().catch((error: unknown) => this.log(`registry: heartbeat failed: ${(error as Error).message}`));
    }, heartbeatMs);
  }

  /** Registers the node; BAD_CONFIG when a live node already has this id. */
  static async join(buckets: ClusterBuckets, info: NodeInfo, options: RegistryOptions = {}): Promise<NodeRegistry> {
    checkNodeInfo(info);
    const heartbeatMs = options.heartbeatMs ?? Math.max(100, Math.floor(buckets.nodeTtlMs / 3));
    const registry = new NodeRegistry(buckets.nodes, info, options, 0, heartbeatMs);
    try {
      registry.revision = await registry.create(buckets.nodes);
    } catch (error) {
      registry.stop();
      if (!isRevisionConflict(error)) throw error;
      const holder = await buckets.nodes.get(nodeKey(info.nodeId));
      const other = holder ? parseRecord(holder.value) : null;
      const detail = other ? ` (joined ${other.startedAt}, API ${other.apiUrl})` : '';
      throw new VigilError(
        'BAD_CONFIG',
        `node id '${info.nodeId}' is in use by a live node${detail}: give this node another --node-id, or stop that one (its entry expires ${buckets.nodeTtlMs} ms after it stops)`,
        { cause: error },
      );
    }
    return registry;
  }

  /** The live nodes, by id (entries that do not parse are skipped). */
  static async list(buckets: ClusterBuckets): Promise<NodeInfo[]> {
    const nodes: NodeInfo[] = [];
    for (const key of await listKeys(buckets.jsm, BUCKETS.nodes, 'node.')) {
      const entry = await buckets.nodes.get(key);
      if (!entry || entry.operation !== 'PUT') continue;
      const record = parseRecord(entry.value);
      if (record && nodeKey(record.nodeId) === key) nodes.push(publicInfo(record));
    }
    return nodes.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  }

  /** Whether the registration is still this process's (false once lost to another process). */
  get registered(): boolean {
    return !this.lostIt && !this.closed;
  }

  /** Stops the heartbeat and removes the entry (compare-and-set: never another process's). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    if (this.lostIt) return;
    try {
      await this.kv.delete(this.key, { previousSeq: this.revision });
    } catch (error) {
      // Unreachable NATS or a changed entry: the TTL removes ours anyway.
      this.log(`registry: could not remove ${this.key} (${(error as Error).message}); it expires by itself`);
    }
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private record(): NodeRecord {
    return { ...this.info, instance: this.instance, heartbeatAt: Date.now() };
  }

  private create(kv: KV): Promise<number> {
    return kv.create(this.key, encodeJson(this.record()));
  }

  private async heartbeat(): Promise<void> {
    if (this.beating || this.closed || this.lostIt) return;
    this.beating = true;
    try {
      this.revision = await this.kv.update(this.key, encodeJson(this.record()), this.revision);
      if (this.failing) this.log(`registry: heartbeats of ${this.key} go through again`);
      this.failing = false;
    } catch (error) {
      try {
        if (!isRevisionConflict(error)) throw error;
        await this.reconcile();
      } catch (failure) {
        // NATS unreachable (or slow): the next heartbeat tries again; the TTL decides meanwhile.
        if (!this.failing) this.log(`registry: heartbeat of ${this.key} failed (${(failure as Error).message}); retrying`);
        this.failing = true;
      }
    } finally {
      this.beating = false;
    }
  }

  /** The entry changed under us: our own late write, expired (join again), or another process's. */
  private async reconcile(): Promise<void> {
    const entry = await this.kv.get(this.key);
    const record = entry && entry.operation === 'PUT' ? parseRecord(entry.value) : null;
    if (entry && record?.instance === this.instance) {
      this.revision = entry.revision;
      return;
    }
    if (!record) {
      try {
        this.revision = await this.create(this.kv);
        this.failing = false;
        this.log(`registry: ${this.key} had expired (NATS out of reach longer than its TTL); registered again`);
        this.options.onEvent?.({ kind: 'rejoined', nodeId: this.info.nodeId });
        return;
      } catch (error) {
        if (!isRevisionConflict(error)) throw error;
      }
    }
    this.lostIt = true;
    this.stop();
    const reason = `another process registered node id '${this.info.nodeId}' while this one was out of reach`;
    this.log(`registry: ${reason}`);
    this.options.onEvent?.({ kind: 'lost', nodeId: this.info.nodeId, reason });
  }

  private log(line: string): void {
    this.options.log?.(line);
  }
}

function publicInfo(record: NodeRecord): NodeInfo {
  return { nodeId: record.nodeId, capacity: record.capacity, startedAt: record.startedAt, apiUrl: record.apiUrl };
}
