/**
 * One webhook: its checked configuration, the signature, and one HTTP POST attempt classified for
 * the retry policy (docs/notifications.md). Every connection (the first, every keep-alive
 * reconnect) is made through the OutboundPolicy: undici's connect hook resolves the host, checks
 * every address, and connects only to a checked one. Redirects are never followed (a 3xx is a
 * permanent failure). Nothing here puts the secret, the URL's path or its query (webhook URLs often
 * carry tokens there) into a message: `display` is the URL's scheme, host and port only.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import type { Agent, request } from 'undici';
import { VigilError, isVigilError } from '../../../common/errors.js';
import type { OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';

export interface WebhookConfig {
  /** Stable id (letters, digits, . _ - : up to 64): part of the idempotency key and of the outbox. */
  id: string;
  /** http(s) URL; no user:password (put credentials in the path or query if the receiver needs them). */
  url: string;
  /** HMAC-SHA256 key for X-Vigil-Signature; at least 16 characters. */
  secret: string;
  /** Per-attempt limit (connect, headers, body); default the notifier's (10 s). */
  timeoutMs?: number;
  /** https: PEM certificate(s) to trust instead of the system's CAs (a receiver with a private CA). */
  ca?: string;
}

export interface CheckedWebhook {
  id: string;
  url: URL;
  secret: string;
  /** Safe to print: scheme, host and port (no path, query or secret). */
  display: string;
  timeoutMs: number;
  ca?: string;
}

export type AttemptResult =
  | { kind: 'delivered'; status: number }
  /** Worth another try: 5xx, 408, 429, network errors, timeouts. */
  | { kind: 'retry'; status?: number; reason: string; retryAfterMs?: number }
  /** Never worth another try: other 4xx, 3xx (redirects are not followed), 1xx. */
  | { kind: 'failed'; status?: number; reason: string }
  /** The outbound address policy refused the host's address: nothing was connected to. */
  | { kind: 'refused'; reason: string };

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_RESPONSE_BYTES = 64 * 1024;
const USER_AGENT = 'Vigil/0.1 (webhook)';

/** Checks a webhook's configuration (syntax only; `checkWebhookAddress` checks where it leads). */
export function checkWebhook(config: WebhookConfig, defaultTimeoutMs: number): CheckedWebhook {
  if (typeof config.id !== 'string' || !ID_PATTERN.test(config.id)) {
    throw new VigilError('BAD_CONFIG', 'a webhook id must be 1-64 letters, digits, ".", "_", "-" or ":"');
  }
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw new VigilError('BAD_CONFIG', `webhook "${config.id}": the URL is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new VigilError('BAD_CONFIG', `webhook "${config.id}": only http and https URLs are allowed (got ${url.protocol})`);
  }
  if (url.username || url.password) {
    throw new VigilError('BAD_CONFIG', `webhook "${config.id}": the URL may not carry user:password`);
  }
  if (typeof config.secret !== 'string' || config.secret.length < 16) {
    throw new VigilError('BAD_CONFIG', `webhook "${config.id}": the secret must be at least 16 characters`);
  }
  const timeoutMs = config.timeoutMs ?? defaultTimeoutMs;
  if (!(timeoutMs > 0)) throw new VigilError('BAD_CONFIG', `webhook "${config.id}": timeoutMs must be positive`);
  if (config.ca !== undefined && (typeof config.ca !== 'string' || !config.ca.includes('-----BEGIN CERTIFICATE-----'))) {
    throw new VigilError('BAD_CONFIG', `webhook "${config.id}": ca must be PEM certificate text`);
  }
  url.hash = '';
  return { id: config.id, url, secret: config.secret, display: `${url.protocol}//${url.host}`, timeoutMs, ...(config.ca !== undefined ? { ca: config.ca } : {}) };
}

/**
 * Where the webhook leads, checked now (for a clear 403 when it is configured): throws
 * SOURCE_FORBIDDEN when any address of its host is refused, SOURCE_UNREACHABLE when it does not resolve.
 * Delivery checks again at every connection, so a name that rebinds later is refused then.
 */
export async function checkWebhookAddress(url: string | URL, policy: OutboundPolicy): Promise<void> {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    throw new VigilError('BAD_INPUT', 'the webhook URL is not a valid URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VigilError('BAD_INPUT', `a webhook URL must be http or https (got ${u.protocol})`);
  await policy.resolve(u.hostname, `${u.protocol}//${u.host}`);
}

/** `sha256=<hex HMAC-SHA256 of body with secret>`, the X-Vigil-Signature header's value. */
export function signBody(body: string | Buffer, secret: string): string {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex');
}

/** A receiver's check, in constant time: does `header` sign exactly these raw body bytes? */
export function verifySignature(body: string | Buffer, secret: string, header: string | undefined): boolean {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(signBody(body, secret));
  const given = Buffer.from(header);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

/** The seconds or HTTP date of a Retry-After header, as milliseconds from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** undici takes ~0.1 s to load and only configured webhooks use it, so it is imported at the first POST. */
let undiciModule: Promise<typeof import('undici')> | undefined;
const loadUndici = (): Promise<typeof import('undici')> => (undiciModule ??= import('undici'));

/** POSTs to one webhook; keeps connections alive between deliveries. */
export class WebhookClient {
  /** Made at the first POST (see loadUndici). */
  private agent: Agent | null = null;
  private closed = false;

  constructor(
    readonly hook: CheckedWebhook,
    private readonly policy: OutboundPolicy,
  ) {}

  /** undici's request and the agent whose every connection goes through the policy. */
  private async client(): Promise<{ agent: Agent; request: typeof request }> {
    const undici = await loadUndici();
    if (!this.agent) {
      this.agent = this.newAgent(undici);
      // After close() a POST meets a destroyed agent, as it did when the agent was made up front.
      if (this.closed) await this.agent.destroy();
    }
    return { agent: this.agent, request: undici.request };
  }

  private newAgent(undici: typeof import('undici')): Agent {
    const { hook, policy } = this;
    // TLS (https): SNI and the certificate check are against the URL's host name, not the address.
    const base = undici.buildConnector({ timeout: hook.timeoutMs, ...(hook.ca !== undefined ? { ca: hook.ca } : {}) });
    return new undici.Agent({
      connect: (opts, callback) => {
        policy.resolve(opts.hostname, hook.display).then(
          (addresses) => {
            // Connect to a checked address, never to the name (which could resolve anew).
            const bare = opts.hostname.replace(/^\[(.*)\]$/, '$1');
            const servername = opts.servername ?? (net.isIP(bare) ? undefined : bare);
            base({ ...opts, hostname: addresses[0]!, ...(servername ? { servername } : {}) }, callback);
          },
          (error: Error) => callback(error, null),
        );
      },
    });
  }

  /** One attempt: POST `body` with `headers`; never throws (every outcome is an AttemptResult). */
  async post(body: string, headers: Record<string, string>, signal: AbortSignal): Promise<AttemptResult> {
    let response: Awaited<ReturnType<typeof request>>;
    try {
      const { agent, request } = await this.client();
      response = await request(this.hook.url, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': USER_AGENT, ...headers },
        body,
        headersTimeout: this.hook.timeoutMs,
        bodyTimeout: this.hook.timeoutMs,
        signal,
      });
    } catch (error) {
      return classifyError(error, signal);
    }
    const status = response.statusCode;
    const retryAfter = header(response.headers, 'retry-after');
    try {
      await response.body.dump({ limit: MAX_RESPONSE_BYTES });
    } catch {
      // The answer's status is what counts; an unread or broken body changes nothing.
    }
    if (status >= 200 && status < 300) return { kind: 'delivered', status };
    if (status >= 500 || status === 408 || status === 429) {
      const retryAfterMs = parseRetryAfter(retryAfter, Date.now());
      return { kind: 'retry', status, reason: `HTTP ${status}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    if (status >= 300 && status < 400) return { kind: 'failed', status, reason: `HTTP ${status}: redirects are not followed` };
    return { kind: 'failed', status, reason: `HTTP ${status}` };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.agent?.destroy();
  }
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A request that threw, as an AttemptResult whose reason names only a code (never a URL or secret). */
function classifyError(error: unknown, signal: AbortSignal): AttemptResult {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    if (isVigilError(e)) {
      if (e.code === 'SOURCE_FORBIDDEN') return { kind: 'refused', reason: 'the outbound address policy refused the address' };
      return { kind: 'retry', reason: e.code === 'SOURCE_UNREACHABLE' ? 'cannot resolve the host' : `error ${e.code}` };
    }
  }
  if (signal.aborted) return { kind: 'retry', reason: 'timed out' };
  const code = String((error as { code?: unknown }).code ?? (error as Error).name ?? 'error');
  if (/TIMEOUT/i.test(code)) return { kind: 'retry', reason: 'timed out' };
  if (code === 'ECONNREFUSED') return { kind: 'retry', reason: 'connection refused' };
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return { kind: 'retry', reason: 'connection reset' };
  if (/CERT|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return { kind: 'retry', reason: `TLS certificate not accepted (${code.replace(/[^A-Za-z0-9_]/g, '')})` };
  return { kind: 'retry', reason: `network error (${code.replace(/[^A-Za-z0-9_]/g, '')})` };
}
