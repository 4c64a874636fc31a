/**
 * HTTP(S) requests for video sources, made by Vigil and never by ffmpeg: every connection goes
 * through the OutboundPolicy (undici's connect hook resolves and checks the address of every
 * connection: the first, each redirect's, each keep-alive reconnect's), redirects are followed here
 * one hop at a time (at most 5, http(s) only), and credentials from the source URL are sent only to
 * that URL's own origin, in answer to its challenge (Basic or Digest).
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Agent, request } from 'undici';
import { VigilError, isVigilError } from '../../common/errors.js';
import { Authenticator, credentialsOf, parseChallenges } from './auth.js';
import { networkError, type OutboundPolicy } from './outboundPolicy.js';

export { networkError };

/** undici takes ~0.1 s to load and only http(s) sources use it, so it is imported at the first request. */
let undiciModule: Promise<typeof import('undici')> | undefined;
const loadUndici = (): Promise<typeof import('undici')> => (undiciModule ??= import('undici'));

const MAX_REDIRECTS = 5;
const USER_AGENT = 'Vigil/0.1';

export interface MediaFetcherOptions {
  policy: OutboundPolicy;
  /** The source URL without credentials, for messages. */
  display: string;
  /** Connect, first-byte and between-bytes timeout (the source's socket timeout). */
  timeoutMs: number;
}

export interface MediaResponse {
  /** The URL that answered (after redirects), without credentials. */
  url: URL;
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

export class MediaFetcher {
  /** Made at the first request (see loadUndici). */
  private agent: Agent | null = null;
  /** How the source's origin wants its credentials (chosen from its last 401 challenge). */
  private authenticator: Authenticator | null = null;
  private disposed = false;

  constructor(private readonly options: MediaFetcherOptions) {}

  /** undici's request and the agent whose every connection goes through the policy. */
  private async client(): Promise<{ agent: Agent; request: typeof request }> {
    const undici = await loadUndici();
    if (this.disposed) throw new VigilError('CANCELLED', `fetching "${this.options.display}" after its source stopped`);
    this.agent ??= this.newAgent(undici);
    return { agent: this.agent, request: undici.request };
  }

  private newAgent(undici: typeof import('undici')): Agent {
    const { policy, display, timeoutMs } = this.options;
    const base = undici.buildConnector({ timeout: timeoutMs });
    return new undici.Agent({
      connect: (opts, callback) => {
        policy.resolve(opts.hostname, display).then(
          (addresses) => {
            const bare = opts.hostname.replace(/^\[(.*)\]$/, '$1');
            const servername = opts.servername ?? (net.isIP(bare) ? undefined : bare);
            base({ ...opts, hostname: addresses[0]!, ...(servername ? { servername } : {}) }, callback);
          },
          (error: Error) => callback(error, null),
        );
      },
    });
  }

  /**
   * GET `url` (credentials in its userinfo are used for its own origin only), following redirects.
   * Resolves with a 2xx response; throws a VigilError for anything else (the body is discarded).
   */
  async get(url: URL, init: { range?: string; signal?: AbortSignal } = {}): Promise<MediaResponse> {
    if (this.disposed) throw new VigilError('CANCELLED', `fetching "${this.options.display}" after its source stopped`);
    const origin = url.origin;
    const credentials = credentialsOf(url);
    let current = withoutCredentials(url);
    let challenged = false;
    const { agent, request } = await this.client();
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*' };
      if (init.range) headers['range'] = init.range;
      // Credentials go to the source's own origin only, and only as the answer to its challenge.
      const own = credentials !== null && current.origin === origin;
      if (own && this.authenticator) headers['authorization'] = this.authenticator.authorization('GET', current.pathname + current.search);
      let response: Awaited<ReturnType<typeof request>>;
      try {
        response = await request(current, {
          dispatcher: agent,
          method: 'GET',
          headers,
          headersTimeout: this.options.timeoutMs,
          bodyTimeout: this.options.timeoutMs,
          ...(init.signal ? { signal: init.signal } : {}),
        });
      } catch (error) {
        throw networkError(error, this.options.display, init.signal);
      }
      // An aborted request (ffmpeg hung up, the source stopped) errors its body; whoever reads the
      // body sees that error through their own listener. Without this one, a body that nobody is
      // reading at that moment would raise an uncaught exception and take the process down.
      response.body.on('error', () => {});
      const status = response.statusCode;
      if (status === 401 && own && !challenged) {
        response.body.destroy();
        const offered = response.headers['www-authenticate'];
        const authenticator = Authenticator.choose(credentials, parseChallenges(offered === undefined ? [] : Array.isArray(offered) ? offered : [offered]));
        if (authenticator) {
          // Basic or Digest, answered here (ffmpeg never holds the password); once per request.
          this.authenticator = authenticator;
          challenged = true;
          hop--;
          continue;
        }
        throw statusError(status, this.options.display);
      }
      if (status >= 300 && status < 400 && status !== 304) {
        response.body.destroy();
        const location = header(response.headers, 'location');
        if (!location) throw new VigilError('SOURCE_FAILED', `"${this.options.display}": the server answered ${status} without a Location.`);
        if (hop >= MAX_REDIRECTS) throw new VigilError('SOURCE_FAILED', `"${this.options.display}": more than ${MAX_REDIRECTS} redirects.`);
        let next: URL;
        try {
          next = new URL(location, current);
        } catch (error) {
          throw new VigilError('SOURCE_FAILED', `"${this.options.display}": the server redirected to an invalid URL.`, { cause: error });
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new VigilError('SOURCE_FORBIDDEN', `"${this.options.display}" redirects to a ${next.protocol} URL; only http(s) redirects are followed.`);
        }
        current = withoutCredentials(next);
        continue;
      }
      if (status < 200 || status >= 300) {
        response.body.destroy();
        throw statusError(status, this.options.display);
      }
      const flat: Record<string, string> = {};
      for (const [k, v] of Object.entries(response.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
      return { url: current, status, headers: flat, body: response.body };
    }
  }

  /** GET a small text resource (a playlist), at most `maxBytes`. */
  async text(url: URL, maxBytes: number, signal?: AbortSignal): Promise<{ url: URL; text: string }> {
    const response = await this.get(url, signal ? { signal } : {});
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > maxBytes) throw new VigilError('SOURCE_FAILED', `"${this.options.display}": the playlist is larger than ${maxBytes >> 20} MiB.`);
        chunks.push(chunk);
      }
    } catch (error) {
      response.body.destroy();
      throw isVigilError(error) ? error : networkError(error, this.options.display, signal);
    }
    return { url: response.url, text: Buffer.concat(chunks).toString('utf8') };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.agent?.destroy();
  }
}

function withoutCredentials(url: URL): URL {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** An HTTP status as the same error ffmpeg's message would have given (see ffmpegErrors.ts). */
export function statusError(status: number, display: string): VigilError {
  const prefix = `Cannot read video source "${display}"`;
  if (status === 401 || status === 403) {
    const text = status === 401 ? '401 Unauthorized' : '403 Forbidden';
    return new VigilError('SOURCE_AUTH', `${prefix}: the server refused the credentials (${text}): check user and password in the URL.`);
  }
  if (status === 404) return new VigilError('SOURCE_NOT_FOUND', `${prefix}: the server has no such stream or file (404 Not Found): check the path.`);
  if (status >= 400 && status < 500) return new VigilError('SOURCE_NOT_FOUND', `${prefix}: the server rejected the request (HTTP ${status}).`);
  return new VigilError('SOURCE_UNREACHABLE', `${prefix}: the server failed (HTTP ${status}).`);
}
