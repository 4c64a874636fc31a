// Listings that span the cluster (docs/scale-out.md, "Routing"): GET /v1/streams, /v1/models and
// /v1/alerts (without `stream`) answer with every live node's entries merged.
import type { NextFunction, Request, Response } from 'express';
import { ALERT_LIMIT } from '../schemas/watches.js';
import { type NodeAddress, type NodeClient, forwardedHeaders } from './nodeClient.js';

export type Listing = 'streams' | 'models' | 'alerts';

/** Response header naming the peers whose entries are missing from a merged listing. */
export const PARTIAL_HEADER = 'x-vigil-partial';

/** A peer's listing larger than this is treated as a failed answer (bounded memory per request). */
const MAX_PEER_LISTING_BYTES = 32 * 1024 * 1024;

export interface ListingOptions {
  client: NodeClient;
  fromNode: string;
  peers: () => Promise<NodeAddress[]>;
  /** A peer's whole answer (connect, headers, body). */
  timeoutMs: number;
  log: (line: string) => void;
}

type PeerAnswer = { nodeId: string; body: Record<string, unknown> } | { nodeId: string; failed: string };

/**
 * Answers a listing with this node's entries and every peer's. This node's answer comes from the
 * local route itself: its `res.json` is taken over for this one response, so the local handler
 * runs unchanged and no loopback call is made; the peers are asked meanwhile (same path, query and
 * credentials, with the loop guard so they answer with their own entries). A local error (a bad
 * query, a node still starting) is sent as it is. A peer that fails is left out and named in
 * `x-vigil-partial`.
 */
export function mergedListing(listing: Listing, req: Request, res: Response, next: NextFunction, options: ListingOptions): void {
  const answers = askPeers(req, options);
  const send = res.json.bind(res);
  res.json = (local: unknown) => {
    res.json = send;
    if (res.statusCode >= 400 || typeof local !== 'object' || local === null) return send(local);
    answers.then(
      (peers) => {
        const failed = peers.flatMap((p) => ('failed' in p ? [p.nodeId] : []));
        const bodies = [local as Record<string, unknown>];
        for (const p of peers) if ('body' in p) bodies.push(p.body);
        if (failed.length > 0) res.setHeader(PARTIAL_HEADER, failed.join(','));
        send(merge(listing, bodies, req.query));
      },
      (error: unknown) => next(error),
    );
    return res;
  };
  next();
}

/** Every peer's answer; never rejects (a failure is an answer that names why). */
async function askPeers(req: Request, options: ListingOptions): Promise<PeerAnswer[]> {
  let peers: NodeAddress[];
  try {
    peers = (await options.peers()).filter((p) => p.nodeId !== options.fromNode);
  } catch (error) {
    options.log(`merged listing: the peer list is unavailable (${error instanceof Error ? error.message : String(error)}); answering with this node's entries`);
    return [];
  }
  return await Promise.all(peers.map((peer) => askPeer(peer, req, options)));
}

async function askPeer(peer: NodeAddress, req: Request, options: ListingOptions): Promise<PeerAnswer> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs);
  try {
    const headers = forwardedHeaders(req.headers, options.fromNode);
    delete headers['accept-encoding']; // read as plain JSON
    const response = await options.client.call(peer, { method: 'GET', path: req.originalUrl, headers, body: null, headersTimeoutMs: options.timeoutMs, signal: abort.signal });
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > MAX_PEER_LISTING_BYTES) throw new Error(`its listing is larger than ${MAX_PEER_LISTING_BYTES} bytes`);
      chunks.push(chunk);
    }
    if (response.statusCode !== 200) throw new Error(`it answered ${response.statusCode}`);
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (typeof body !== 'object' || body === null) throw new Error('its answer is not a JSON object');
    return { nodeId: peer.nodeId, body: body as Record<string, unknown> };
  } catch (error) {
    const why = abort.signal.aborted ? `no answer within ${options.timeoutMs} ms` : error instanceof Error ? error.message : String(error);
    options.log(`merged listing ${req.originalUrl.split('?')[0]}: node ${peer.nodeId} left out: ${why}`);
    return { nodeId: peer.nodeId, failed: why };
  } finally {
    clearTimeout(timer);
  }
}

/** One listing from each node's (the first is this node's). */
function merge(listing: Listing, bodies: Array<Record<string, unknown>>, query: Request['query']): unknown {
  switch (listing) {
    case 'streams':
      return { ...bodies[0], streams: concat(bodies, 'streams').sort(byId) };
    case 'models':
      return { ...bodies[0], data: concat(bodies, 'data').sort(byId) };
    case 'alerts':
      return mergeAlerts(bodies, query);
  }
}

type Entry = Record<string, unknown>;

function concat(bodies: Array<Record<string, unknown>>, field: string): Entry[] {
  const all: Entry[] = [];
  for (const body of bodies) {
    const entries = body[field];
    if (Array.isArray(entries)) for (const entry of entries as Entry[]) all.push(entry);
  }
  return all;
}

function byId(a: Entry, b: Entry): number {
  return String(a.id).localeCompare(String(b.id));
}

/**
 * Alerts in the order one node lists them (wall time, stream time, id) with the same page rule:
 * with `since` the oldest `limit`, without it the newest `limit`; `truncated` when any node's
 * page was, or the merge dropped some.
 */
function mergeAlerts(bodies: Array<Record<string, unknown>>, query: Request['query']): unknown {
  const limit = typeof query.limit === 'string' && /^\d+$/.test(query.limit) ? Number(query.limit) : ALERT_LIMIT.default;
  const all = concat(bodies, 'alerts').sort((a, b) => num(a.wallTime) - num(b.wallTime) || num(a.t) - num(b.t) || String(a.id).localeCompare(String(b.id)));
  const alerts = query.since !== undefined ? all.slice(0, limit) : all.slice(Math.max(0, all.length - limit));
  const truncated = bodies.some((b) => b.truncated === true) || alerts.length < all.length;
  return { ...bodies[0], alerts, truncated };
}

function num(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}
