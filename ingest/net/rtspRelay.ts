/**
 * A loopback RTSP relay: ffmpeg (or ffprobe) talks RTSP to rtsp://127.0.0.1:PORT/... and never to a
 * camera. For every connection it accepts, the relay opens ONE upstream connection itself, through
 * `OutboundPolicy.connect()` (resolve, check every address, connect to a checked address), and relays
 * RTSP in both directions with a streaming parser of the RTSP framing:
 *
 * - text messages (start line, headers, Content-Length body; header block <= 64 KiB, body <= 1 MiB)
 *   are parsed, and rewritten where needed: request URIs from the relay base to the upstream base,
 *   CSeq (the relay numbers its own upstream requests, so it can retry and re-send), Content-Base /
 *   Content-Location, RTP-Info url= and absolute `a=control:` URLs in SDP bodies from any rtsp(s)://
 *   authority to the relay base, and Transport (UDP, below);
 * - interleaved binary frames (`$`, channel, 16-bit length, payload) pass through untouched as
 *   Buffer slices of the input, in both directions (media down, RTCP up).
 *
 * Credentials never reach ffmpeg: on a 401 the relay retries the request itself (Digest MD5 /
 * MD5-sess / SHA-256, with and without qop=auth, or Basic) and authorizes later requests on that
 * connection (Digest nc counting). They are only ever sent to the host named in the original URL.
 *
 * Redirects (3xx) never reach ffmpeg: before any SETUP, a Location the policy allows is followed by
 * the relay (new upstream connection through the policy, at most 5); otherwise ffmpeg gets an error
 * status, the connection is closed and the error is reported (SOURCE_FORBIDDEN for the policy).
 *
 * UDP: a SETUP for RTP over UDP is rewritten so that the upstream sends to relay-owned UDP ports and
 * ffmpeg is told relay-owned loopback ports as server_port (the server's `source=` / `destination=`
 * are dropped): datagrams are forwarded only between ffmpeg's client ports on 127.0.0.1 and the
 * upstream's checked address at the server ports it announced; anything from another source is
 * dropped. Multicast is refused (461). So a hostile server can aim neither ffmpeg's TCP nor its UDP
 * anywhere.
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { VigilError } from '../../common/errors.js';
import type { OutboundPolicy } from './outboundPolicy.js';

export interface RtspRelayOptions {
  /** rtsp:// or rtsps:// URL of the camera, may contain user:password@ (percent-encoded). */
  upstream: string;
  /** The URL without credentials, for errors and logs. */
  display: string;
  policy: OutboundPolicy;
  connectTimeoutMs: number;
  /** An upstream that sends nothing (no TCP byte, no relayed datagram) for this long is dropped. Default 60 s. */
  idleTimeoutMs?: number;
  /** Called for policy refusals, auth failures, upstream connect failures, malformed upstream data, timeouts. */
  onError?: (error: VigilError) => void;
}

export interface RtspRelayStats {
  /** Connections accepted from ffmpeg/ffprobe. */
  connections: number;
  /** Upstream connections opened (including redirects). */
  upstreamConnections: number;
  bytesDown: number;
  bytesUp: number;
  datagramsDown: number;
  datagramsUp: number;
  /** Datagrams dropped because they came from an unexpected source. */
  datagramsDropped: number;
}

export const RTSP_LIMITS = { maxHeaderBytes: 64 * 1024, maxBodyBytes: 1024 * 1024, maxRedirects: 5, maxSessions: 16 } as const;

const DEFAULT_PORTS: Record<string, number> = { 'rtsp:': 554, 'rtsps:': 322 };

interface Target {
  scheme: 'rtsp:' | 'rtsps:';
  host: string; // as in the URL (IPv6 in brackets)
  port: number;
  /** scheme://host[:port] as written, no credentials. */
  base: string;
  /** The full URL without credentials. */
  href: string;
}

function parseTarget(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new VigilError('BAD_INPUT', 'not a valid rtsp:// URL');
  }
  const scheme = u.protocol.toLowerCase();
  if (scheme !== 'rtsp:' && scheme !== 'rtsps:') throw new VigilError('SOURCE_SCHEME', `the RTSP relay takes rtsp:// or rtsps:// URLs, not ${scheme}`);
  if (!u.hostname) throw new VigilError('BAD_INPUT', 'the RTSP URL has no host');
  const port = u.port ? Number(u.port) : DEFAULT_PORTS[scheme]!;
  const base = `${scheme}//${u.host}`;
  return { scheme, host: u.hostname, port, base, href: `${base}${u.pathname}${u.search}` };
}

// ---------------------------------------------------------------------------------------------
// Messages and the streaming framer
// ---------------------------------------------------------------------------------------------

export interface RtspMessage {
  startLine: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

const RESPONSE_LINE = /^RTSP\/\d\.\d (\d{3})(?: .*)?$/;
const REQUEST_LINE = /^([A-Z][A-Z0-9_-]*) (\S+) RTSP\/\d\.\d$/;

export function header(m: RtspMessage, name: string): string | undefined {
  const lower = name.toLowerCase();
  return m.headers.find(([k]) => k.toLowerCase() === lower)?.[1];
}

function headersNamed(m: RtspMessage, name: string): string[] {
  const lower = name.toLowerCase();
  return m.headers.filter(([k]) => k.toLowerCase() === lower).map(([, v]) => v);
}

/** Sets (in place of the first one, removing the others) or removes a header. */
function setHeader(m: RtspMessage, name: string, value: string | null): void {
  const lower = name.toLowerCase();
  const first = m.headers.findIndex(([k]) => k.toLowerCase() === lower);
  if (first < 0) {
    if (value !== null) m.headers.push([name, value]);
    return;
  }
  const key = m.headers[first]![0];
  m.headers = m.headers.filter(([k]) => k.toLowerCase() !== lower);
  if (value !== null) m.headers.splice(first, 0, [key, value]);
}

function statusOf(m: RtspMessage): number | null {
  const match = RESPONSE_LINE.exec(m.startLine);
  return match ? Number(match[1]) : null;
}

export function serialize(m: RtspMessage): Buffer {
  const headers = m.headers.filter(([k]) => k.toLowerCase() !== 'content-length');
  if (m.body.length > 0 || header(m, 'content-length') !== undefined) headers.push(['Content-Length', String(m.body.length)]);
  const head = `${m.startLine}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return m.body.length > 0 ? Buffer.concat([Buffer.from(head, 'utf8'), m.body]) : Buffer.from(head, 'utf8');
}

export interface FramerSink {
  /** Raw bytes of interleaved frames (header and payload, possibly split): forward as they are. */
  binary(bytes: Buffer): void;
  message(m: RtspMessage): void;
  error(reason: string): void;
}

/**
 * The RTSP stream framing, incremental. Interleaved frames are handed on as slices of the input as
 * soon as bytes arrive (no buffering of payloads); text messages are collected until complete.
 */
export class RtspFramer {
  private frameRemaining = 0;
  private readonly frameHeader = Buffer.alloc(4);
  private frameHeaderHave = 0;
  private text: Buffer | null = null;
  private head: { message: RtspMessage; headerBytes: number; bodyBytes: number } | null = null;
  private failed = false;

  constructor(private readonly sink: FramerSink, private readonly limits = RTSP_LIMITS) {}

  /** Stop handing anything on (the connection is being closed). */
  stop(): void {
    this.failed = true;
  }

  push(chunk: Buffer): void {
    let buf = chunk;
    let off = 0;
    while (!this.failed && off < buf.length) {
      if (this.frameRemaining > 0) {
        const n = Math.min(this.frameRemaining, buf.length - off);
        this.frameRemaining -= n;
        this.sink.binary(buf.subarray(off, off + n));
        off += n;
      } else if (this.frameHeaderHave > 0) {
        while (this.frameHeaderHave < 4 && off < buf.length) this.frameHeader[this.frameHeaderHave++] = buf[off++]!;
        if (this.frameHeaderHave === 4) {
          this.frameHeaderHave = 0;
          this.frameRemaining = this.frameHeader.readUInt16BE(2);
          this.sink.binary(Buffer.from(this.frameHeader));
        }
      } else if (this.text === null && (buf[off] === 0x0d || buf[off] === 0x0a)) {
        off++; // empty lines between messages
      } else if (this.text === null && buf[off] === 0x24) {
        const available = buf.length - off;
        if (available >= 4) {
          const total = 4 + buf.readUInt16BE(off + 2);
          const n = Math.min(total, available);
          this.frameRemaining = total - n;
          this.sink.binary(buf.subarray(off, off + n));
          off += n;
        } else {
          while (off < buf.length) this.frameHeader[this.frameHeaderHave++] = buf[off++]!;
        }
      } else {
        this.text = this.text ? Buffer.concat([this.text, buf.subarray(off)]) : buf.subarray(off);
        off = buf.length;
        const rest = this.extract();
        if (rest === null) return;
        buf = rest;
        off = 0;
      }
    }
  }

  /** Tries to complete the text message in `this.text`; returns the bytes after it, or null (need more / failed). */
  private extract(): Buffer | null {
    const text = this.text!;
    if (!this.head) {
      const lineEnd = text.indexOf(0x0a);
      const firstLine = text.subarray(0, lineEnd >= 0 ? lineEnd : Math.min(text.length, 256)).toString('latin1').replace(/\r$/, '');
      if (lineEnd >= 0 && !RESPONSE_LINE.test(firstLine) && !REQUEST_LINE.test(firstLine)) return this.fail(`not an RTSP start line: ${JSON.stringify(firstLine.slice(0, 80))}`);
      if (lineEnd < 0 && (text.length > 1024 || /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(firstLine))) return this.fail(`not an RTSP start line: ${JSON.stringify(firstLine.slice(0, 80))}`);
      const crlf = text.indexOf('\r\n\r\n', 0, 'latin1');
      const lf = text.indexOf('\n\n', 0, 'latin1');
      let end = -1;
      let sep = 0;
      if (crlf >= 0 && (lf < 0 || crlf <= lf)) [end, sep] = [crlf, 4];
      else if (lf >= 0) [end, sep] = [lf, 2];
      if (end < 0) {
        if (text.length > this.limits.maxHeaderBytes) return this.fail(`header block over ${this.limits.maxHeaderBytes} bytes`);
        return null;
      }
      if (end > this.limits.maxHeaderBytes) return this.fail(`header block over ${this.limits.maxHeaderBytes} bytes`);
      const lines = text.subarray(0, end).toString('utf8').split(/\r?\n/);
      const startLine = lines.shift()!;
      const headers: Array<[string, string]> = [];
      for (const line of lines) {
        if (/^[ \t]/.test(line) && headers.length > 0) {
          headers[headers.length - 1]![1] += ` ${line.trim()}`;
          continue;
        }
        const colon = line.indexOf(':');
        if (colon <= 0) return this.fail(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
        headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
      }
      const message: RtspMessage = { startLine, headers, body: Buffer.alloc(0) };
      const lengthText = header(message, 'content-length');
      let bodyBytes = 0;
      if (lengthText !== undefined) {
        if (!/^\d{1,9}$/.test(lengthText)) return this.fail(`bad Content-Length ${JSON.stringify(lengthText.slice(0, 20))}`);
        bodyBytes = Number(lengthText);
        if (bodyBytes > this.limits.maxBodyBytes) return this.fail(`Content-Length ${bodyBytes} over ${this.limits.maxBodyBytes} bytes`);
      }
      this.head = { message, headerBytes: end + sep, bodyBytes };
    }
    const { message, headerBytes, bodyBytes } = this.head;
    if (text.length < headerBytes + bodyBytes) return null;
    message.body = Buffer.from(text.subarray(headerBytes, headerBytes + bodyBytes));
    const rest = text.subarray(headerBytes + bodyBytes);
    this.text = null;
    this.head = null;
    this.sink.message(message);
    return rest;
  }

  private fail(reason: string): null {
    this.failed = true;
    this.text = null;
    this.sink.error(reason);
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Authentication (RFC 2617 / 7616 as RTSP cameras use it)
// ---------------------------------------------------------------------------------------------

export interface Challenge {
  scheme: string; // lower case
  params: Record<string, string>; // keys lower case
}

/** Parses WWW-Authenticate values (several challenges per value allowed). */
export function parseChallenges(values: string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    let current: Challenge | null = null;
    const skip = () => {
      while (i < value.length && /[\s,]/.test(value[i]!)) i++;
    };
    while (i < value.length) {
      skip();
      const tokenMatch = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(value.slice(i));
      if (!tokenMatch) break;
      const token = tokenMatch[0];
      i += token.length;
      while (i < value.length && value[i] === ' ') i++;
      if (value[i] === '=' && current) {
        i++;
        while (i < value.length && value[i] === ' ') i++;
        let v = '';
        if (value[i] === '"') {
          i++;
          while (i < value.length && value[i] !== '"') {
            if (value[i] === '\\' && i + 1 < value.length) i++;
            v += value[i++];
          }
          i++;
        } else {
          const m = /^[^,\s]*/.exec(value.slice(i))![0];
          v = m;
          i += m.length;
        }
        current.params[token.toLowerCase()] = v;
      } else if (value[i] === '=' && !current) {
        break;
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

const DIGEST_HASHES: Record<string, string> = { 'md5': 'md5', 'md5-sess': 'md5', 'sha-256': 'sha256', 'sha-256-sess': 'sha256' };

export interface DigestInput {
  username: string;
  password: string;
  realm: string;
  nonce: string;
  method: string;
  uri: string;
  algorithm?: string;
  qop?: 'auth';
  nc?: number;
  cnonce?: string;
}

export function digestResponse(d: DigestInput): string {
  const algorithm = (d.algorithm ?? 'MD5').toLowerCase();
  const hashName = DIGEST_HASHES[algorithm];
  if (!hashName) throw new Error(`unsupported digest algorithm ${d.algorithm}`);
  const h = (s: string) => createHash(hashName).update(s, 'utf8').digest('hex');
  let ha1 = h(`${d.username}:${d.realm}:${d.password}`);
  if (algorithm.endsWith('-sess')) ha1 = h(`${ha1}:${d.nonce}:${d.cnonce ?? ''}`);
  const ha2 = h(`${d.method}:${d.uri}`);
  if (d.qop) return h(`${ha1}:${d.nonce}:${ncText(d.nc ?? 1)}:${d.cnonce ?? ''}:${d.qop}:${ha2}`);
  return h(`${ha1}:${d.nonce}:${ha2}`);
}

const ncText = (nc: number) => nc.toString(16).padStart(8, '0');
const quote = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;

interface Credentials {
  username: string;
  password: string;
}

class Authenticator {
  private scheme: 'basic' | 'digest';
  private nc = 0;
  constructor(
    private readonly credentials: Credentials,
    private readonly challenge: Challenge,
  ) {
    this.scheme = challenge.scheme === 'digest' ? 'digest' : 'basic';
  }

  /** Picks the strongest challenge the relay can answer, or null. */
  static choose(credentials: Credentials, challenges: Challenge[]): Authenticator | null {
    const digests = challenges.filter((c) => c.scheme === 'digest' && c.params.nonce !== undefined && DIGEST_HASHES[(c.params.algorithm ?? 'MD5').toLowerCase()]);
    const usable = digests.filter((c) => c.params.qop === undefined || qopList(c).includes('auth'));
    const rank = (c: Challenge) => ((c.params.algorithm ?? 'md5').toLowerCase().startsWith('sha-256') ? 1 : 0);
    const digest = usable.sort((a, b) => rank(b) - rank(a))[0];
    if (digest) return new Authenticator(credentials, digest);
    const basic = challenges.find((c) => c.scheme === 'basic');
    return basic ? new Authenticator(credentials, basic) : null;
  }

  get stale(): boolean {
    return this.challenge.params.stale?.toLowerCase() === 'true';
  }

  authorization(method: string, uri: string): string {
    const { username, password } = this.credentials;
    if (this.scheme === 'basic') return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
    const p = this.challenge.params;
    const qop = p.qop !== undefined ? ('auth' as const) : undefined;
    const nc = ++this.nc;
    const cnonce = randomBytes(8).toString('hex');
    const response = digestResponse({ username, password, realm: p.realm ?? '', nonce: p.nonce!, method, uri, algorithm: p.algorithm, qop, nc, cnonce });
    const parts = [`username=${quote(username)}`, `realm=${quote(p.realm ?? '')}`, `nonce=${quote(p.nonce!)}`, `uri=${quote(uri)}`, `response=${quote(response)}`];
    if (p.algorithm) parts.push(`algorithm=${p.algorithm}`);
    if (p.opaque !== undefined) parts.push(`opaque=${quote(p.opaque)}`);
    if (qop) parts.push(`qop=${qop}`, `nc=${ncText(nc)}`, `cnonce=${quote(cnonce)}`);
    return `Digest ${parts.join(', ')}`;
  }
}

function qopList(c: Challenge): string[] {
  return (c.params.qop ?? '').split(',').map((s) => s.trim().toLowerCase());
}

// ---------------------------------------------------------------------------------------------
// Transport header
// ---------------------------------------------------------------------------------------------

interface TransportSpec {
  protocol: string; // RTP/AVP, RTP/AVP/UDP, RTP/AVP/TCP ...
  params: Array<[string, string | null]>;
}

function parseTransport(value: string): TransportSpec[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((spec) => {
      const [protocol = '', ...rest] = spec.split(';').map((s) => s.trim());
      return {
        protocol,
        params: rest.filter(Boolean).map((p) => {
          const eq = p.indexOf('=');
          return eq < 0 ? ([p.toLowerCase(), null] as [string, null]) : ([p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim()] as [string, string]);
        }),
      };
    });
}

const formatTransport = (specs: TransportSpec[]) => specs.map((s) => [s.protocol, ...s.params.map(([k, v]) => (v === null ? k : `${k}=${v}`))].join(';')).join(',');
const param = (s: TransportSpec, name: string) => s.params.find(([k]) => k === name)?.[1];
const hasParam = (s: TransportSpec, name: string) => s.params.some(([k]) => k === name);
const isTcp = (s: TransportSpec) => /\/TCP$/i.test(s.protocol) || hasParam(s, 'interleaved');

function portRange(text: string | null | undefined): [number, number] | null {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text ?? '');
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  return a > 0 && a < 65536 && b > 0 && b < 65536 ? [a, b] : null;
}

/** Two UDP sockets on consecutive ports (even RTP, odd RTCP), as RTP clients and servers expect. */
async function bindPair(type: 'udp4' | 'udp6', address: string): Promise<[dgram.Socket, dgram.Socket]> {
  const bind = (port: number) =>
    new Promise<dgram.Socket>((resolve, reject) => {
      const s = dgram.createSocket({ type, reuseAddr: false });
      s.once('error', (e) => {
        s.close();
        reject(e);
      });
      s.bind(port, address, () => {
        s.removeAllListeners('error');
        resolve(s);
      });
    });
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 40; attempt++) {
    let rtp: dgram.Socket;
    try {
      rtp = await bind(0);
    } catch (e) {
      lastError = e;
      continue;
    }
    const port = rtp.address().port;
    if (port % 2 !== 0 || port >= 65535) {
      rtp.close();
      continue;
    }
    try {
      return [rtp, await bind(port + 1)];
    } catch (e) {
      lastError = e;
      rtp.close();
    }
  }
  throw new Error(`cannot bind a UDP port pair: ${(lastError as Error | null)?.message ?? 'no even port'}`);
}

// ---------------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------------

export class RtspRelay {
  readonly url: string;
  /** rtsp://127.0.0.1:PORT */
  readonly base: string;
  private readonly server: net.Server;
  private readonly sessions = new Set<RelaySession>();
  private error: VigilError | null = null;
  private disposing: Promise<void> | null = null;
  readonly target: Target;
  readonly credentials: Credentials | null;
  readonly stats: RtspRelayStats = { connections: 0, upstreamConnections: 0, bytesDown: 0, bytesUp: 0, datagramsDown: 0, datagramsUp: 0, datagramsDropped: 0 };

  private constructor(
    readonly options: RtspRelayOptions,
    server: net.Server,
    port: number,
    target: Target,
    credentials: Credentials | null,
  ) {
    this.server = server;
    this.target = target;
    this.credentials = credentials;
    this.base = `rtsp://127.0.0.1:${port}`;
    this.url = this.base + target.href.slice(target.base.length);
  }

  static async start(options: RtspRelayOptions): Promise<RtspRelay> {
    const target = parseTarget(options.upstream);
    const u = new URL(options.upstream);
    const credentials = u.username || u.password ? { username: safeDecode(u.username), password: safeDecode(u.password) } : null;
    const server = net.createServer({ pauseOnConnect: false });
    server.maxConnections = RTSP_LIMITS.maxSessions;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => {}); // listening errors after start cannot happen on a bound socket; never crash
    const relay = new RtspRelay(options, server, (server.address() as net.AddressInfo).port, target, credentials);
    server.on('connection', (socket) => relay.accept(socket));
    return relay;
  }

  /** The most recent refusal / auth / connect (or protocol, timeout) error; null when none. */
  get lastError(): VigilError | null {
    return this.error;
  }

  clearLastError(): void {
    this.error = null;
  }

  /** Connections (ffmpeg/ffprobe) being relayed now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** @internal */
  report(error: VigilError): void {
    this.error = error;
    try {
      this.options.onError?.(error);
    } catch {
      // a throwing listener must not break the relay
    }
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.disposing || !isLoopback(socket.remoteAddress)) {
      socket.destroy();
      return;
    }
    this.stats.connections++;
    const session = new RelaySession(this, socket);
    this.sessions.add(session);
    session.closed.then(() => this.sessions.delete(session)).catch(() => {});
    session.start();
  }

  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.all([...this.sessions].map((s) => s.close()));
      await closed;
    })();
    return this.disposing;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const plain = address.replace(/^::ffff:/i, '');
  return plain === '::1' || /^127\.\d+\.\d+\.\d+$/.test(plain);
}

interface Pending {
  /** The request as ffmpeg sent it (URI relay-based, ffmpeg's CSeq). */
  original: RtspMessage;
  method: string;
  clientCseq: string | undefined;
  authTries: number;
  udp: UdpTrack | null;
}

interface UdpTrack {
  clientPorts: [number, number];
  up: [dgram.Socket, dgram.Socket];
  down: [dgram.Socket, dgram.Socket];
  closed: boolean;
}

const STATUS_TEXT: Record<number, string> = { 403: 'Forbidden', 461: 'Unsupported Transport', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

class RelaySession {
  private upstream: net.Socket | null = null;
  private upstreamFramer: RtspFramer | null = null;
  private upstreamAddress = '';
  private target: Target;
  private readonly clientFramer: RtspFramer;
  private readonly queue: Array<RtspMessage | Buffer> = [];
  private processing = false;
  private connecting: Promise<void> | null = null;
  private failure: { error: VigilError; status: number } | null = null;
  private readonly pending = new Map<number, Pending>();
  private cseq = 0;
  private auth: Authenticator | null = null;
  private setupDone = false;
  private redirects = 0;
  /** Exact relay URL -> upstream URL, after a redirect changed the path. */
  private readonly exact = new Map<string, string>();
  private readonly tracks: UdpTrack[] = [];
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;
  private isClosed = false;
  private redirecting = false;
  private tornDown = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => (this.resolveClosed = r));

  constructor(
    private readonly relay: RtspRelay,
    private readonly client: net.Socket,
  ) {
    this.target = relay.target;
    this.exact.set(relay.url, relay.target.href);
    this.clientFramer = new RtspFramer({
      binary: (bytes) => this.enqueue(Buffer.from(bytes)),
      message: (m) => this.enqueue(m),
      error: () => this.shutdown(), // a client that is not speaking RTSP: just drop it
    });
  }

  start(): void {
    this.client.setNoDelay(true);
    this.client.on('data', (chunk: Buffer) => this.clientFramer.push(chunk));
    this.client.on('end', () => this.shutdown());
    this.client.on('close', () => this.shutdown());
    this.client.on('drain', () => this.upstream?.resume());
    const idleMs = this.relay.options.idleTimeoutMs ?? 60_000;
    this.idleTimer = setInterval(() => {
      if (this.upstream && Date.now() - this.lastActivity > idleMs) {
        this.relay.report(new VigilError('SOURCE_TIMEOUT', `"${this.relay.options.display}" sent nothing for ${Math.round(idleMs / 1000)} s`));
        this.shutdown();
      }
    }, Math.max(50, Math.min(1000, idleMs / 4)));
    this.idleTimer.unref();
    this.connecting = this.connectUpstream(this.target).catch((error: unknown) => this.connectFailed(error));
  }

  // ----- upstream connection --------------------------------------------------------------

  private async connectUpstream(target: Target): Promise<void> {
    const display = target === this.relay.target ? this.relay.options.display : target.href;
    const socket = await this.relay.options.policy.connect({
      host: target.host,
      port: target.port,
      tls: target.scheme === 'rtsps:',
      display,
      timeoutMs: this.relay.options.connectTimeoutMs,
    });
    if (this.isClosed) {
      socket.destroy();
      return;
    }
    this.relay.stats.upstreamConnections++;
    this.attachUpstream(socket, target);
  }

  private attachUpstream(socket: net.Socket, target: Target): void {
    this.detachUpstream();
    this.target = target;
    this.upstream = socket;
    this.upstreamAddress = (socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/i, '');
    this.auth = null;
    this.lastActivity = Date.now();
    socket.setNoDelay(true);
    const framer = new RtspFramer({
      binary: (bytes) => this.toClient(bytes),
      message: (m) => this.fromUpstream(m),
      error: (reason) => {
        this.relay.report(new VigilError('SOURCE_FAILED', `"${this.relay.options.display}" sent malformed RTSP (${reason})`));
        this.shutdown();
      },
    });
    this.upstreamFramer = framer;
    socket.on('data', (chunk: Buffer) => {
      if (socket !== this.upstream) return;
      this.lastActivity = Date.now();
      this.relay.stats.bytesDown += chunk.length;
      this.client.cork();
      try {
        framer.push(chunk);
      } finally {
        this.client.uncork();
      }
    });
    socket.on('drain', () => this.client.resume());
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (socket !== this.upstream || this.isClosed || this.redirecting) return;
      if (!this.tornDown) this.relay.report(new VigilError('SOURCE_UNREACHABLE', `connection to "${this.relay.options.display}" failed (${error.code ?? error.message})`, { cause: error }));
      this.shutdown();
    });
    socket.on('close', () => {
      if (socket === this.upstream && !this.redirecting) this.endClient();
    });
  }

  private detachUpstream(): void {
    if (!this.upstream) return;
    const old = this.upstream;
    this.upstream = null;
    this.upstreamFramer?.stop();
    this.upstreamFramer = null;
    old.removeAllListeners('data');
    old.on('error', () => {});
    old.destroy();
  }

  private connectFailed(error: unknown): void {
    const vigil = error instanceof VigilError ? error : new VigilError('SOURCE_UNREACHABLE', `cannot connect to "${this.relay.options.display}"`, { cause: error });
    if (this.isClosed) return;
    this.relay.report(vigil);
    this.failure = { error: vigil, status: vigil.code === 'SOURCE_FORBIDDEN' ? 403 : 503 };
    // Answer the request ffmpeg sent (or is about to send), then close.
    setTimeout(() => this.shutdown(), 2000).unref();
    this.pump();
  }

  // ----- client -> upstream ---------------------------------------------------------------

  private enqueue(item: RtspMessage | Buffer): void {
    this.queue.push(item);
    this.pump();
  }

  private pump(): void {
    if (this.processing) return;
    this.processing = true;
    (async () => {
      try {
        while (this.queue.length > 0 && !this.isClosed) {
          if (this.connecting) await this.connecting;
          this.connecting = null;
          if (this.failure) {
            const item = this.queue.shift()!;
            if (!Buffer.isBuffer(item) && REQUEST_LINE.test(item.startLine)) {
              this.answerClient(item, this.failure.status);
              this.endClient();
              return;
            }
            continue;
          }
          const item = this.queue.shift()!;
          if (Buffer.isBuffer(item)) this.toUpstream(item);
          else await this.fromClient(item);
        }
      } catch (error) {
        this.relay.report(error instanceof VigilError ? error : new VigilError('SOURCE_FAILED', `RTSP relay error: ${(error as Error).message}`, { cause: error }));
        this.shutdown();
      } finally {
        this.processing = false;
      }
      if (this.queue.length > 0 && !this.isClosed && !this.failure) this.pump();
    })().catch(() => this.shutdown());
  }

  private async fromClient(m: RtspMessage): Promise<void> {
    const request = REQUEST_LINE.exec(m.startLine);
    if (!request) {
      // ffmpeg's answer to a request the server sent: pass on.
      this.toUpstream(serialize(m));
      return;
    }
    const method = request[1]!;
    let udp: UdpTrack | null = null;
    if (method === 'SETUP') {
      const transport = header(m, 'transport');
      if (transport !== undefined) {
        const specs = parseTransport(transport);
        if (specs.some((s) => hasParam(s, 'multicast') || hasParam(s, 'destination'))) {
          this.answerClient(m, 461);
          return;
        }
        const udpSpec = specs.find((s) => !isTcp(s));
        if (udpSpec) {
          const clientPorts = portRange(param(udpSpec, 'client_port'));
          if (!clientPorts) {
            this.answerClient(m, 461);
            return;
          }
          udp = await this.openTrack(clientPorts);
        }
      }
    }
    if (method === 'TEARDOWN') this.tornDown = true;
    this.send({ original: m, method, clientCseq: header(m, 'cseq'), authTries: 0, udp });
  }

  /** Sends (or re-sends) a client request upstream with its URI, CSeq, Authorization and Transport for now. */
  private send(p: Pending): void {
    const m: RtspMessage = { startLine: p.original.startLine, headers: p.original.headers.map(([k, v]) => [k, v]), body: p.original.body };
    const request = REQUEST_LINE.exec(m.startLine)!;
    const uri = this.toUpstreamUri(request[2]!);
    m.startLine = `${p.method} ${uri} ${m.startLine.slice(m.startLine.lastIndexOf(' ') + 1)}`;
    const cseq = ++this.cseq;
    setHeader(m, 'CSeq', String(cseq));
    setHeader(m, 'Authorization', this.auth ? this.auth.authorization(p.method, uri) : null);
    setHeader(m, 'Proxy-Authorization', null);
    if (p.udp) {
      const specs = parseTransport(header(m, 'transport')!).map((s) => {
        if (isTcp(s)) return s;
        const up = p.udp!.up;
        return { protocol: s.protocol, params: s.params.map(([k, v]): [string, string | null] => (k === 'client_port' ? [k, `${up[0].address().port}-${up[1].address().port}`] : [k, v])) };
      });
      setHeader(m, 'Transport', formatTransport(specs));
    }
    this.pending.set(cseq, p);
    this.toUpstream(serialize(m));
  }

  private toUpstreamUri(uri: string): string {
    const exact = this.exact.get(uri);
    if (exact !== undefined) return exact;
    const base = this.relay.base;
    if (uri.toLowerCase().startsWith(base) && (uri.length === base.length || '/?'.includes(uri[base.length]!))) return this.target.base + uri.slice(base.length);
    return uri;
  }

  private toUpstream(bytes: Buffer): void {
    const up = this.upstream;
    if (!up || up.destroyed) return;
    this.relay.stats.bytesUp += bytes.length;
    if (!up.write(bytes)) this.client.pause();
  }

  // ----- upstream -> client ---------------------------------------------------------------

  private toClient(bytes: Buffer): void {
    if (this.client.destroyed || this.client.writableEnded) return;
    if (!this.client.write(bytes)) this.upstream?.pause();
  }

  private fromUpstream(m: RtspMessage): void {
    const request = REQUEST_LINE.exec(m.startLine);
    if (request) {
      // A request from the server (GET_PARAMETER, SET_PARAMETER, ANNOUNCE, ...). REDIRECT is not passed on.
      if (request[1] === 'REDIRECT') {
        const cseq = header(m, 'cseq');
        this.toUpstream(Buffer.from(`RTSP/1.0 501 Not Implemented\r\n${cseq !== undefined ? `CSeq: ${cseq}\r\n` : ''}\r\n`));
        return;
      }
      m.startLine = `${request[1]} ${this.toRelayUrl(request[2]!)} ${m.startLine.slice(m.startLine.lastIndexOf(' ') + 1)}`;
      this.rewriteUrls(m);
      this.toClient(serialize(m));
      return;
    }
    const status = statusOf(m)!;
    const cseqText = header(m, 'cseq');
    let key = cseqText !== undefined && /^\d+$/.test(cseqText) ? Number(cseqText) : NaN;
    if (!this.pending.has(key) && this.pending.size === 1) key = [...this.pending.keys()][0]!;
    const p = this.pending.get(key);
    if (!p) return; // an answer to nothing we asked: drop it
    this.pending.delete(key);

    if (status === 401) {
      if (this.retryWithAuth(p, m)) return;
      this.relay.report(
        new VigilError('SOURCE_AUTH', this.relay.credentials && this.sameHostAsOriginal()
          ? `"${this.relay.options.display}" refused the credentials (401 Unauthorized)`
          : `"${this.relay.options.display}" requires credentials (401 Unauthorized)`),
      );
    }
    if (status >= 300 && status < 400) {
      // Never passed on. Until it is settled the old upstream's close is not the session's end,
      // and ffmpeg's next requests wait (pump awaits `connecting`).
      this.redirecting = true;
      this.connecting = this.redirect(p, m)
        .catch((error: unknown) => {
          this.relay.report(asVigil(error, this.relay.options.display));
          this.shutdown();
        })
        .finally(() => (this.redirecting = false));
      this.pump();
      return;
    }
    if (p.udp) {
      if (status >= 200 && status < 300) {
        if (!this.setupUdp(p.udp, m)) {
          this.closeTrack(p.udp);
          this.answerClient(p.original, 461);
          return;
        }
      } else this.closeTrack(p.udp);
    }
    if (p.method === 'SETUP' && status >= 200 && status < 300) this.setupDone = true;
    if (p.clientCseq !== undefined) setHeader(m, 'CSeq', p.clientCseq);
    else setHeader(m, 'CSeq', null);
    if (p.method === 'DESCRIBE' && status >= 200 && status < 300 && header(m, 'content-base') === undefined) {
      // After a redirect that changed the path, ffmpeg's own URL is not the base any more.
      const uri = REQUEST_LINE.exec(p.original.startLine)![2]!;
      const upstreamUri = this.toUpstreamUri(uri);
      if (this.exact.has(uri) && upstreamUri !== this.target.base + uri.slice(this.relay.base.length)) setHeader(m, 'Content-Base', this.toRelayUrl(upstreamUri));
    }
    this.rewriteUrls(m);
    this.toClient(serialize(m));
  }

  private sameHostAsOriginal(): boolean {
    return this.target.host.toLowerCase() === this.relay.target.host.toLowerCase();
  }

  private retryWithAuth(p: Pending, m: RtspMessage): boolean {
    const credentials = this.relay.credentials;
    if (!credentials || !this.sameHostAsOriginal()) return false;
    const auth = Authenticator.choose(credentials, parseChallenges(headersNamed(m, 'www-authenticate')));
    if (!auth) return false;
    // One try with fresh credentials; one more only when the server says our nonce was stale.
    if (p.authTries >= 2 || (p.authTries === 1 && !auth.stale)) return false;
    p.authTries++;
    this.auth = auth;
    this.send(p);
    return true;
  }

  private async redirect(p: Pending, m: RtspMessage): Promise<void> {
    const status = statusOf(m)!;
    const location = header(m, 'location');
    const display = this.relay.options.display;
    let target: Target | null = null;
    try {
      if (location) target = parseTarget(new URL(location, this.toUpstreamUri(REQUEST_LINE.exec(p.original.startLine)![2]!)).href);
    } catch (error) {
      const e = error instanceof VigilError && error.code === 'SOURCE_SCHEME' ? new VigilError('SOURCE_FORBIDDEN', `"${display}" redirects to a non-RTSP URL; not followed`) : new VigilError('SOURCE_FAILED', `"${display}" sent a bad redirect Location`);
      return this.refuse(p, e, 502);
    }
    if (!target) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" answered ${status} without a Location`), 502);
    if (this.setupDone) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" redirects after SETUP; not followed`), 502);
    if (this.redirects >= RTSP_LIMITS.maxRedirects) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" redirects more than ${RTSP_LIMITS.maxRedirects} times`), 502);
    this.redirects++;
    // Check first (no connection at all to a refused address), then connect through the policy.
    try {
      await this.relay.options.policy.resolve(target.host, `${display} -> ${target.href}`);
    } catch (error) {
      return this.refuse(p, asVigil(error, display), error instanceof VigilError && error.code === 'SOURCE_FORBIDDEN' ? 403 : 502);
    }
    // Outstanding requests on the old connection go to the new one, in order.
    const resend = [p, ...[...this.pending.entries()].sort((a, b) => a[0] - b[0]).map(([, q]) => q)];
    this.pending.clear();
    let socket: net.Socket;
    try {
      socket = await this.relay.options.policy.connect({ host: target.host, port: target.port, tls: target.scheme === 'rtsps:', display: `${display} -> ${target.href}`, timeoutMs: this.relay.options.connectTimeoutMs });
    } catch (error) {
      const e = asVigil(error, display);
      return this.refuse(p, e, e.code === 'SOURCE_FORBIDDEN' ? 403 : 503);
    }
    if (this.isClosed) {
      socket.destroy();
      return;
    }
    this.relay.stats.upstreamConnections++;
    // The URL ffmpeg used for this request now means the Location (path included).
    const uri = REQUEST_LINE.exec(p.original.startLine)![2]!;
    this.exact.set(uri, target.href);
    this.attachUpstream(socket, target);
    for (const q of resend) {
      q.authTries = 0;
      this.send(q);
    }
  }

  private refuse(p: Pending, error: VigilError, status: number): void {
    this.relay.report(error);
    if (p.udp) this.closeTrack(p.udp);
    this.answerClient(p.original, status);
    this.endClient();
  }

  /** Rewrites every absolute rtsp(s):// URL ffmpeg could use to the relay's base. */
  private toRelayUrl(url: string): string {
    return url.replace(/^rtsps?:\/\/[^/?#\s]*/i, this.relay.base);
  }

  private rewriteUrls(m: RtspMessage): void {
    for (const name of ['Content-Base', 'Content-Location']) {
      const v = header(m, name);
      if (v !== undefined) setHeader(m, name, this.toRelayUrl(v));
    }
    const rtpInfo = header(m, 'RTP-Info');
    if (rtpInfo !== undefined) {
      // ffmpeg matches these URLs against its control URLs (seq / rtptime of each stream).
      setHeader(m, 'RTP-Info', rtpInfo.replace(/(^|[,\s])url=("?)(rtsps?:\/\/[^;,"]*)/gi, (_all, lead: string, q: string, url: string) => `${lead}url=${q}${this.toRelayUrl(url)}`));
    }
    setHeader(m, 'Location', null);
    const type = header(m, 'content-type') ?? '';
    if (m.body.length > 0 && /application\/sdp/i.test(type)) {
      const sdp = m.body.toString('utf8');
      const rewritten = sdp.replace(/^(a=control:)(rtsps?:\/\/[^\r\n]*)$/gim, (_all, prefix: string, url: string) => prefix + this.toRelayUrl(url));
      if (rewritten !== sdp) m.body = Buffer.from(rewritten, 'utf8');
    }
  }

  private answerClient(request: RtspMessage, status: number): void {
    const cseq = header(request, 'cseq');
    this.toClient(Buffer.from(`RTSP/1.0 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n${cseq !== undefined ? `CSeq: ${cseq}\r\n` : ''}Content-Length: 0\r\n\r\n`));
  }

  /** Lets what was written to ffmpeg go out, then closes everything. */
  private endClient(): void {
    this.detachUpstream();
    if (this.isClosed || this.client.writableEnded) return;
    this.client.end();
    setTimeout(() => this.shutdown(), 1000).unref();
  }

  // ----- UDP ------------------------------------------------------------------------------

  private async openTrack(clientPorts: [number, number]): Promise<UdpTrack> {
    const family = net.isIPv6(this.upstreamAddress) ? 'udp6' : 'udp4';
    const up = await bindPair(family, family === 'udp6' ? '::' : '0.0.0.0');
    let down: [dgram.Socket, dgram.Socket];
    try {
      down = await bindPair('udp4', '127.0.0.1');
    } catch (error) {
      up.forEach((s) => s.close());
      throw error;
    }
    const track: UdpTrack = { clientPorts, up, down, closed: false };
    for (const s of [...up, ...down]) s.on('error', () => {});
    this.tracks.push(track);
    if (this.isClosed) this.closeTrack(track);
    return track;
  }

  private setupUdp(track: UdpTrack, m: RtspMessage): boolean {
    const transport = header(m, 'transport');
    if (transport === undefined) return false;
    const spec = parseTransport(transport)[0];
    if (!spec || isTcp(spec) || hasParam(spec, 'multicast')) return false;
    const serverPorts = portRange(param(spec, 'server_port'));
    if (!serverPorts) return false;
    const remote = this.upstreamAddress;
    const stats = this.relay.stats;
    const forward = (from: dgram.Socket, to: dgram.Socket, expectAddress: string, expectPort: number, toAddress: string, toPort: number, down: boolean) => {
      from.on('message', (msg, rinfo) => {
        if (track.closed) return;
        if (rinfo.address.replace(/^::ffff:(?=\d+\.)/i, '') !== expectAddress || rinfo.port !== expectPort) {
          stats.datagramsDropped++;
          return;
        }
        if (down) {
          stats.datagramsDown++;
          this.lastActivity = Date.now();
        } else stats.datagramsUp++;
        try {
          to.send(msg, toPort, toAddress);
        } catch {
          // socket closed meanwhile
        }
      });
    };
    const [cRtp, cRtcp] = track.clientPorts;
    forward(track.up[0], track.down[0], remote, serverPorts[0], '127.0.0.1', cRtp, true);
    forward(track.up[1], track.down[1], remote, serverPorts[1], '127.0.0.1', cRtcp, true);
    forward(track.down[0], track.up[0], '127.0.0.1', cRtp, remote, serverPorts[0], false);
    forward(track.down[1], track.up[1], '127.0.0.1', cRtcp, remote, serverPorts[1], false);
    const keep = new Set(['ssrc', 'mode', 'ttl']);
    const params: Array<[string, string | null]> = [
      ['unicast', null],
      ['client_port', `${cRtp}-${cRtcp}`],
      ['server_port', `${track.down[0].address().port}-${track.down[1].address().port}`],
      ...spec.params.filter(([k]) => keep.has(k)),
    ];
    setHeader(m, 'Transport', formatTransport([{ protocol: spec.protocol, params }]));
    return true;
  }

  private closeTrack(track: UdpTrack): void {
    if (track.closed) return;
    track.closed = true;
    for (const s of [...track.up, ...track.down]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }

  // ----- teardown -------------------------------------------------------------------------

  close(): Promise<void> {
    this.shutdown();
    return this.closed;
  }

  /** Closes the session now (synchronously); `closed` resolves. */
  shutdown(): void {
    if (!this.isClosed) {
      this.isClosed = true;
      if (this.idleTimer) clearInterval(this.idleTimer);
      this.clientFramer.stop();
      this.detachUpstream();
      this.client.destroy();
      for (const t of this.tracks) this.closeTrack(t);
      this.queue.length = 0;
      this.pending.clear();
      this.resolveClosed();
    }
  }
}

function asVigil(error: unknown, display: string): VigilError {
  return error instanceof VigilError ? error : new VigilError('SOURCE_UNREACHABLE', `cannot connect for "${display}": ${(error as Error).message}`, { cause: error });
}
