// Forwards one stream-bound API call to the node that owns the stream and streams its answer back
// as it comes (JSON, Server-Sent Events, images), docs/scale-out.md "Routing".
import { pipeline } from 'node:stream';
import type { Request, Response } from 'express';
import { ApiError } from '../errors.js';
import { type NodeAddress, NodeCallError, type NodeClient, forwardedHeaders } from './nodeClient.js';

/** Response header naming the node that answered a forwarded call. */
export const NODE_HEADER = 'x-vigil-node';

/** Response headers not copied back: they describe the owner's connection, not the answer. */
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'trailer']);

/** Seconds a client is told to wait after an owner did not answer (about a failover at the default lease TTL). */
const UNREACHABLE_RETRY_S = 5;

export interface ForwardOptions {
  client: NodeClient;
  /** This node's id (the loop guard's value). */
  fromNode: string;
  headersTimeoutMs: number;
  log: (line: string) => void;
  /** What the call is about, for messages: "stream 'cam'" or "the new stream". */
  subject: string;
  /** A body this node already read (a chat completion's, to find its stream); else the request is piped. */
  body?: Buffer;
}

/**
 * Sends `req` to `node` (same method, path and query, end-to-end headers plus the loop guard) and
 * pipes the answer into `res`. Rejects with 503 STREAM_UNAVAILABLE when the owner cannot be
 * reached, is refused by the address policy, or sends no headers in time; once the answer has
 * begun, a failure cuts the response (the client sees it incomplete). The client leaving aborts
 * the call to the owner.
 */
export async function forwardCall(node: NodeAddress, req: Request, res: Response, options: ForwardOptions): Promise<void> {
  const abort = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const headers = forwardedHeaders(req.headers, options.fromNode);
  if (options.body) {
    // Already decoded by the body parser: sent as the plain bytes it read.
    delete headers['content-encoding'];
    headers['content-length'] = String(options.body.length);
  }
  let upstream;
  try {
    upstream = await options.client.call(node, {
      method: req.method,
      path: req.originalUrl,
      headers,
      body: options.body ?? req,
      headersTimeoutMs: options.headersTimeoutMs,
      signal: abort.signal,
    });
  } catch (error) {
    if (abort.signal.aborted) return;
    throw ownerUnavailable(node.nodeId, options.subject, error, options.log, `${req.method} ${req.originalUrl.split('?')[0]}`);
  }
  res.status(upstream.statusCode ?? 502);
  if (upstream.statusMessage) res.statusMessage = upstream.statusMessage;
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && !HOP_BY_HOP_RESPONSE.has(name)) res.setHeader(name, value);
  }
  res.setHeader(NODE_HEADER, node.nodeId);
  // Every piece goes out as it comes (no Nagle delay). A body of unknown length (an SSE token
  // stream) gets its headers at once too, as the owner sent them; a sized one sends them with its bytes.
  res.socket?.setNoDelay(true);
  if (upstream.headers['content-length'] === undefined) res.flushHeaders();
  pipeline(upstream, res, (error) => {
    if (error && !abort.signal.aborted) options.log(`forwarded ${req.method} ${req.originalUrl.split('?')[0]} from node ${node.nodeId} was cut: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
  });
}

/** The 503 for an owner that was not reached; the details (never a header or credential) go to the log. */
export function ownerUnavailable(nodeId: string, subject: string, error: unknown, log: (line: string) => void, what: string): ApiError {
  const reason = error instanceof NodeCallError ? error.reason : 'unreachable';
  log(`forwarding ${what} to node ${nodeId} failed: ${error instanceof Error ? error.message : String(error)}`);
  const why =
    reason === 'refused'
      ? "which this node may not connect to: the server's URL policy refuses its address (allowNetworks)"
      : reason === 'timeout'
        ? 'which did not answer in time'
        : 'which cannot be reached now';
  return new ApiError(503, 'STREAM_UNAVAILABLE', `${subject} is served by node '${nodeId}', ${why}; retry shortly`, { retryAfterS: UNREACHABLE_RETRY_S });
}
