// HTTP calls from this node to another node's API (docs/scale-out.md, "Routing"): the one place
// that opens them, so every connection goes through the outbound address policy.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { isVigilError } from '../../common/errors.js';
import type { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { FORWARDED_HEADER } from '../../src/cluster/streamRoutes.js';

/** A node's API, as the cluster's routing names it. */
export interface NodeAddress {
  nodeId: string;
  /** API base URL, e.g. http://127.0.0.1:8081. */
  url: string;
}

export interface NodeCall {
  method: string;
  /** Path and query, appended to the node's base URL (e.g. `/v1/streams/cam?x=1`). */
  path: string;
  headers: http.OutgoingHttpHeaders;
  /** The body: bytes already read, the client's request piped as it comes, or none. */
  body: Buffer | Readable | null;
  /** From the call's start until the node's response headers. */
  headersTimeoutMs: number;
  /** Aborting destroys the connection, before or after the response began. */
  signal: AbortSignal;
}

/** Why a node was not reached; `detail` is for the log (no URL path, no header). */
export class NodeCallError extends Error {
  override readonly name = 'NodeCallError';
  constructor(
    readonly reason: 'refused' | 'unreachable' | 'timeout' | 'aborted',
    readonly detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/**
 * Headers that describe one connection rather than the message (RFC 9110 7.6.1), plus `host`
 * (set to the node's own): never passed on, in either direction. Headers the Connection header
 * names are dropped too.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer']);

export function endToEndHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  }
  return out;
}

/** A request's headers as forwarded from node `fromNode`: end-to-end ones (Authorization included) and the loop guard. */
export function forwardedHeaders(headers: http.IncomingHttpHeaders, fromNode: string): http.OutgoingHttpHeaders {
  return { ...endToEndHeaders(headers), [FORWARDED_HEADER]: fromNode };
}

/**
 * Opens calls to other nodes. Each call resolves the node's host through the policy and connects
 * to a checked address only (never to the name, which could resolve anew); idle connections are
 * kept for the next call to the same address (already checked when they were opened).
 */
export class NodeClient {
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });

  constructor(
    private readonly policy: OutboundPolicy,
    private readonly connectTimeoutMs: number,
  ) {}

  /** Sends the call and resolves with the node's response (status and headers in, body still to read). */
  async call(node: NodeAddress, call: NodeCall): Promise<http.IncomingMessage> {
    const base = parseBase(node.url);
    const display = `node ${node.nodeId} (${base.protocol}//${base.host})`;
    if (call.signal.aborted) throw new NodeCallError('aborted', 'the client went away');
    let addresses: string[];
    try {
      addresses = await this.policy.resolve(base.hostname, display);
    } catch (error) {
      if (isVigilError(error) && error.code === 'SOURCE_FORBIDDEN') throw new NodeCallError('refused', error.message);
      throw new NodeCallError('unreachable', error instanceof Error ? error.message : String(error));
    }
    const bareHost = base.hostname.replace(/^\[(.*)\]$/, '$1');
    const tls = base.protocol === 'https:';
    const options: https.RequestOptions = {
      host: addresses[0]!,
      port: Number(base.port) || (tls ? 443 : 80),
      method: call.method,
      path: base.pathname.replace(/\/+$/, '') + call.path,
      headers: { ...call.headers, host: base.host },
      agent: tls ? this.httpsAgent : this.httpAgent,
      // TLS: SNI and the certificate check against the node's name, not the address connected to.
      ...(tls && !net.isIP(bareHost) ? { servername: bareHost } : {}),
    };
    return await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = (tls ? https : http).request(options);
      let settled = false;
      const fail = (error: NodeCallError) => {
        if (settled) return;
        settled = true;
        clearTimeout(headersTimer);
        request.destroy();
        reject(error);
      };
      const headersTimer = setTimeout(() => fail(new NodeCallError('timeout', `no response headers within ${call.headersTimeoutMs} ms`)), call.headersTimeoutMs);
      const onAbort = () => {
        fail(new NodeCallError('aborted', 'the client went away'));
        // After the response began: ends it too (the caller's pipe sees the close).
        request.destroy();
      };
      call.signal.addEventListener('abort', onAbort, { once: true });
      request.on('close', () => call.signal.removeEventListener('abort', onAbort));
      request.on('socket', (socket) => {
        if (!socket.connecting) return; // a kept-alive connection
        const connectTimer = setTimeout(() => fail(new NodeCallError('timeout', `no connection within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connectTimer));
        socket.once('close', () => clearTimeout(connectTimer));
      });
      request.on('error', (error: NodeJS.ErrnoException) => fail(new NodeCallError('unreachable', error.code ?? error.message)));
      request.on('response', (response) => {
        if (settled) {
          response.destroy();
          return;
        }
        settled = true;
        clearTimeout(headersTimer);
        resolve(response);
      });
      if (call.body === null) request.end();
      else if (Buffer.isBuffer(call.body)) request.end(call.body);
      else {
        call.body.on('error', () => request.destroy());
        call.body.pipe(request);
      }
    });
  }

  dispose(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function parseBase(url: string): URL {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new NodeCallError('unreachable', 'its API URL is not a valid URL');
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new NodeCallError('unreachable', `its API URL is not http(s) (${base.protocol})`);
  return base;
}
