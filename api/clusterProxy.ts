// Cluster mode's routing of API calls (docs/scale-out.md, "Routing"): any node accepts any call; a
// call about a stream is served by the node that owns it, transparently to the client.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { isVigilError } from '../common/errors.js';
import { type ClusterRouting, FORWARDED_HEADER, type StreamRoute } from '../src/cluster/streamRoutes.js';
import { forwardCall } from './cluster/forward.js';
import { type Listing, mergedListing } from './cluster/listings.js';
import { NodeClient } from './cluster/nodeClient.js';
import { ApiError } from './errors.js';

export interface ClusterProxyOptions {
  log: (line: string) => void;
  /** From a forwarded call's start until the owner's response headers, ms. Default 120 s (a non-streamed answer's headers come with the answer). */
  timeoutMs?: number;
  /** TCP (and TLS) connection to the owner, ms. Default 5 s. */
  connectTimeoutMs?: number;
  /** A peer's whole answer to a merged listing, ms. Default 5 s. */
  listTimeoutMs?: number;
  /** Largest chat completion body read to find its stream (the chat route's limit). Default 64 KiB. */
  maxBodyBytes?: number;
}

/** The middleware, and `dispose()` for its kept-alive connections to other nodes. */
export type ClusterProxy = RequestHandler & { dispose(): void };

/** What a `/v1` request is, for routing. */
type Target = { kind: 'stream'; id: string } | { kind: 'chat' } | { kind: 'create' } | { kind: 'list'; listing: Listing } | { kind: 'local' };

/**
 * Mounted on `/v1` right after auth. A request that carries FORWARDED_HEADER came from another
 * node and is always answered here (the loop guard). Otherwise: calls about a stream go to its
 * owner (`routing.route`), `POST /streams` to the node placement picks, listings merge every
 * node's entries, and everything else is answered here.
 */
export function clusterProxy(routing: ClusterRouting, options: ClusterProxyOptions): ClusterProxy {
  const log = options.log;
  const headersTimeoutMs = options.timeoutMs ?? 120_000;
  const client = new NodeClient(routing.outbound, options.connectTimeoutMs ?? 5_000);
  const listing = { client, fromNode: routing.nodeId, peers: () => routing.peers(), timeoutMs: options.listTimeoutMs ?? 5_000, log };
  // The chat route's own parser (same limit and errors); the raw bytes are kept to forward them unchanged.
  const rawBodies = new WeakMap<Request, Buffer>();
  const chatBody = express.json({ limit: options.maxBodyBytes ?? 64 * 1024, verify: (req, _res, buf) => void rawBodies.set(req as Request, buf) });

  /** Answers here or at the node that owns stream `id` (null: a new stream, where placement puts it). */
  async function toOwner(id: string | null, req: Request, res: Response, next: NextFunction, body?: Buffer): Promise<void> {
    const subject = id === null ? 'the new stream' : `stream '${id}'`;
    let where: StreamRoute;
    try {
      where = await (id === null ? routing.placeNew() : routing.route(id));
    } catch (error) {
      log(`routing ${req.method} ${req.originalUrl.split('?')[0]}: the cluster state is unavailable: ${error instanceof Error ? error.message : String(error)}`);
      // The node's own word (CLUSTER_UNAVAILABLE: NATS out of reach, not joined yet) as it is; anything else as below.
      if (isVigilError(error)) throw error;
      throw new ApiError(503, 'STREAM_UNAVAILABLE', `cannot tell which node serves ${subject} now (the cluster state is unavailable); retry shortly`, { retryAfterS: 5 });
    }
    if (where.kind === 'local' || (where.kind === 'remote' && where.nodeId === routing.nodeId)) return next();
    if (where.kind === 'moving') {
      const why = id === null ? 'has no node to run it now (none live with room)' : 'is moving to another node (failover)';
      throw new ApiError(503, 'STREAM_UNAVAILABLE', `${subject} ${why}; retry in ${where.retryAfterS} s`, { retryAfterS: where.retryAfterS });
    }
    await forwardCall(where, req, res, { client, fromNode: routing.nodeId, headersTimeoutMs, log, subject, ...(body ? { body } : {}) });
  }

  const handler: RequestHandler = (req, res, next) => {
    if (req.get(FORWARDED_HEADER) !== undefined) return next();
    const target = classify(req);
    switch (target.kind) {
      case 'local':
        return next();
      case 'stream':
        return toOwner(target.id, req, res, next).catch(next);
      case 'list':
        return mergedListing(target.listing, req, res, next, listing);
      case 'create':
        // A node's uploaded file would not survive a failover: only sources the next owner can read again.
        if (req.is('multipart/form-data')) return next(new ApiError(400, 'BAD_INPUT', 'uploads are not supported in cluster mode: an uploaded file lives on one node and would be lost on a failover; give a source URL (JSON {"source": ...})'));
        if (!req.is('application/json')) return next();
        return toOwner(null, req, res, next).catch(next);
      case 'chat':
        return chatBody(req, res, (error?: unknown) => {
          if (error) return next(error);
          const model = (req.body as { model?: unknown } | undefined)?.model;
          // No stream named: the local route gives the validation error.
          if (typeof model !== 'string') return next();
          toOwner(model, req, res, next, rawBodies.get(req) ?? Buffer.alloc(0)).catch(next);
        });
    }
  };
  return Object.assign(handler, { dispose: () => client.dispose() });
}

/** Which kind of call this is (paths relative to `/v1`, as api/routes declare them). */
function classify(req: Request): Target {
  const path = req.path;
  const stream = /^\/streams\/([^/]+)(?:\/.*)?$/.exec(path);
  if (stream) {
    const id = decodeSegment(stream[1]!);
    return id === null ? { kind: 'local' } : { kind: 'stream', id };
  }
  if (/^\/streams\/?$/.test(path)) {
    if (req.method === 'POST') return { kind: 'create' };
    if (req.method === 'GET') return { kind: 'list', listing: 'streams' };
    return { kind: 'local' };
  }
  if (req.method === 'POST' && /^\/chat\/completions\/?$/.test(path)) return { kind: 'chat' };
  if (req.method === 'GET' && /^\/models\/?$/.test(path)) return { kind: 'list', listing: 'models' };
  if (/^\/alerts(\/events)?\/?$/.test(path)) {
    const id = req.query.stream;
    if (typeof id === 'string') return { kind: 'stream', id };
    // Without a stream: /alerts merges every node's; /alerts/events streams this node's alerts only.
    if (req.method === 'GET' && !path.startsWith('/alerts/events')) return { kind: 'list', listing: 'alerts' };
  }
  return { kind: 'local' };
}

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}
