/**
 * The streams the cluster should run (docs/scale-out.md, "Desired state"): one key per stream,
 * `stream.<id>` in the desired bucket, holding its id, settings and watches. Any node writes it
 * (an API call lands on any node); the owner of each stream follows it (watch()). Every value is
 * checked when read: a value that is not a stream's desired state is STORE_CORRUPT on get(), and
 * skipped (and logged) by list() and watch(), so one bad key never hides the others.
 *
 * `settings` and each watch are kept as the API accepted them (the API validates them before they
 * are written); here only their shape is checked: an object, and watches with unique ids.
 */
import { type KV, type KvEntry, KvWatchInclude } from 'nats';
import { z } from 'zod';
import { VigilError } from '../../common/errors.js';
import { checkStreamId } from '../engine/dataLayout.js';
import { BUCKETS, type ClusterBuckets, decodeJson, encodeJson, listKeys } from './buckets.js';

const stateSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/),
    settings: z.record(z.string(), z.unknown()),
    watches: z.array(z.object({ id: z.string().min(1) }).catchall(z.unknown())),
    /** Stopped by a caller (POST /v1/streams/{id}/stop): its owner keeps the memory answerable but ingests nothing. */
    stopped: z.boolean().optional(),
    /** Epoch ms of the write (the writer's clock; informational). */
    updatedAt: z.number(),
  })
  .refine((s) => new Set(s.watches.map((w) => w.id)).size === s.watches.length, { message: 'watch ids must be unique' });

export type StreamDesired = z.infer<typeof stateSchema>;

export interface DesiredEntry {
  state: StreamDesired;
  /** KV revision: pass it to put() for a compare-and-set update. */
  revision: number;
}

/** A change seen by watch(): `state` null when the stream was deleted. */
export interface DesiredChange {
  id: string;
  state: StreamDesired | null;
  revision: number;
}

export function desiredKey(streamId: string): string {
  return `stream.${streamId}`;
}

/** A drain request (`vigil cluster drain NODE`) lives beside the streams' desired state. */
export function drainKey(nodeId: string): string {
  return `drain.${nodeId}`;
}

export class DesiredState {
  private readonly kv: KV;
  /** The last snapshot() and the bucket version it was read at. */
  private cached: { version: string; entries: DesiredEntry[]; draining: Set<string> } | null = null;

  constructor(
    private readonly buckets: Pick<ClusterBuckets, 'desired' | 'jsm'>,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.kv = buckets.desired;
  }

  /**
   * Writes a stream's desired state (BAD_INPUT when it is not one). With `revision`, only when the
   * key is still at that revision (0: only when it does not exist yet): a concurrent change on
   * another node fails the compare-and-set instead of being overwritten. Returns the new revision.
   */
  async put(state: Omit<StreamDesired, 'updatedAt'> & { updatedAt?: number }, revision?: number): Promise<number> {
    checkStreamId(state.id);
    const parsed = stateSchema.safeParse({ ...state, updatedAt: state.updatedAt ?? Date.now() });
    if (!parsed.success) throw new VigilError('BAD_INPUT', `stream '${state.id}': not a valid desired state (${parsed.error.issues.map((i) => i.message).join('; ')})`);
    const bytes = encodeJson(parsed.data);
    const key = desiredKey(state.id);
    if (revision === undefined) return this.kv.put(key, bytes);
    return revision === 0 ? this.kv.create(key, bytes) : this.kv.update(key, bytes, revision);
  }

  /** The stream's desired state, or null when there is none. STORE_CORRUPT for a value that is not one. */
  async get(streamId: string): Promise<DesiredEntry | null> {
    checkStreamId(streamId);
    const entry = await this.kv.get(desiredKey(streamId));
    if (!entry || entry.operation !== 'PUT') return null;
    const state = this.parse(entry);
    if (!state) throw new VigilError('STORE_CORRUPT', `the desired state of stream '${streamId}' in KV is not valid (revision ${entry.revision})`);
    return { state, revision: entry.revision };
  }

  /** Removes the stream from the desired state (nothing when absent). */
  async delete(streamId: string): Promise<void> {
    checkStreamId(streamId);
    await this.kv.delete(desiredKey(streamId));
  }

  /** Every stream's desired state, by id (invalid values skipped and logged). */
  async list(): Promise<DesiredEntry[]> {
    const out: DesiredEntry[] = [];
    for (const key of await listKeys(this.buckets.jsm, BUCKETS.desired, 'stream.')) {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== 'PUT') continue;
      const state = this.parse(entry);
      if (state) out.push({ state, revision: entry.revision });
    }
    return out;
  }

  /**
   * Calls `onChange` for every change from now on (and, with `includeCurrent`, once for each stream
   * that exists now, first). Returns the function that stops watching.
   */
  async watch(onChange: (change: DesiredChange) => void, options: { includeCurrent?: boolean } = {}): Promise<() => void> {
    const iter = await this.kv.watch({ key: 'stream.>', ...(options.includeCurrent ? {} : { include: KvWatchInclude.UpdatesOnly }) });
    const loop = (async () => {
      for await (const entry of iter) {
        const id = entry.key.slice('stream.'.length);
        if (entry.operation !== 'PUT') {
          onChange({ id, state: null, revision: entry.revision });
          continue;
        }
        const state = this.parse(entry);
        if (state) onChange({ id, state, revision: entry.revision });
      }
    })();
    loop.catch((error: unknown) => this.log(`desired state: the watch ended: ${(error as Error).message}`));
    return () => iter.stop();
  }

  /**
   * Every stream's desired state and the drain requests, read again only when the bucket changed
   * since the last call (one request when nothing did): what a node's loop reads every second.
   */
  async snapshot(): Promise<{ entries: DesiredEntry[]; draining: Set<string> }> {
    const info = await this.buckets.jsm.streams.info(`KV_${BUCKETS.desired}`);
    const version = `${info.state.last_seq}:${info.state.messages}`;
    if (this.cached?.version === version) return { entries: this.cached.entries, draining: new Set(this.cached.draining) };
    const [entries, draining] = await Promise.all([this.list(), this.draining()]);
    this.cached = { version, entries, draining };
    return { entries, draining: new Set(draining) };
  }

  /** Asks node `nodeId` to hand its streams over and take no new ones (`vigil cluster drain`); kept until undone. */
  async requestDrain(nodeId: string): Promise<void> {
    await this.kv.put(drainKey(nodeId), encodeJson({ nodeId, requestedAt: Date.now() }));
  }

  /** Undoes a drain request: the node takes streams again (those it handed over stay where they went). */
  async cancelDrain(nodeId: string): Promise<void> {
    await this.kv.delete(drainKey(nodeId));
  }

  /** Nodes asked to drain. */
  async draining(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const key of await listKeys(this.buckets.jsm, BUCKETS.desired, 'drain.')) {
      const entry = await this.kv.get(key);
      if (entry && entry.operation === 'PUT') out.add(key.slice('drain.'.length));
    }
    return out;
  }

  private parse(entry: KvEntry): StreamDesired | null {
    const parsed = stateSchema.safeParse(decodeJson(entry.value));
    if (parsed.success && desiredKey(parsed.data.id) === entry.key) return parsed.data;
    this.log(`desired state: ${entry.key} (revision ${entry.revision}) is not a valid stream state; skipped`);
    return null;
  }
}
