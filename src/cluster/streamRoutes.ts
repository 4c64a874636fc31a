// Where a stream-bound API call is served in cluster mode (docs/scale-out.md, "Routing"): the
// interface the API's forwarding middleware (api/clusterProxy.ts) asks, implemented by the node's
// control loop (clusterNode.ts) from the leases and the node registry.
import type { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import type { CreateStreamRequest, StreamStatus } from '../engine/streamManager.js';
import type { ClusterStatus, StreamReport } from './clusterStatus.js';

/** Where a stream-bound API call is served. */
export type StreamRoute =
  /** This node owns the stream, or no node knows it (the local handler answers, e.g. 404). */
  | { kind: 'local' }
  /** Another node owns it: its API base URL, e.g. http://127.0.0.1:8081. */
  | { kind: 'remote'; nodeId: string; url: string }
  /** The stream is desired but has no live owner now (a failover in progress). */
  | { kind: 'moving'; retryAfterS: number };

export interface ClusterRouting {
  readonly nodeId: string;
  route(streamId: string): Promise<StreamRoute>;
  /** Where a new stream (POST /v1/streams) is created: this node ('local') or another one. */
  placeNew(): Promise<StreamRoute>;
  /** The other live nodes (for listings that merge every node's streams). */
  peers(): Promise<Array<{ nodeId: string; url: string }>>;
  /** Every forwarded connection's address is checked by this policy (resolve() before connecting). */
  readonly outbound: OutboundPolicy;
}

/** Set on a forwarded request: the receiving node answers locally and never forwards it again. */
export const FORWARDED_HEADER = 'x-vigil-forwarded-by';

/**
 * What the owner node does for the stream calls that change the cluster's desired state (the API's
 * stream and watch routes call these in cluster mode instead of the manager's own).
 */
export interface ClusterStreams {
  createStream(request: CreateStreamRequest): Promise<StreamStatus>;
  removeStream(id: string, options?: { purge?: boolean }): Promise<void>;
  setStopped(id: string, stopped: boolean): Promise<StreamStatus>;
  watchesChanged(id: string): Promise<void>;
  status(): Promise<ClusterStatus>;
  /** Asks a node to hand its streams over and take no new ones; `on` false undoes it. */
  drain(nodeId: string, on?: boolean): Promise<void>;
  /** Streams this node owns, with their replication (for /metrics). */
  ownedStreams(): StreamReport[];
  readonly nodeId: string;
}
