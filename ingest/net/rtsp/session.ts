/**
 * One relayed RTSP connection: ffmpeg's socket on one side, ONE upstream connection opened through
 * the policy on the other. It owns the per-connection state the protocol needs: its own upstream
 * CSeq numbering (so it can retry and re-send), requests awaiting an answer, the authenticator after
 * a 401, redirects followed before any SETUP, the UDP tracks, and the idle timeout.
 */
import type net from 'node:net';
import { VigilError } from '../../../common/errors.js';
import type { RtspRelay } from '../rtspRelay.js';
import { Authenticator, parseChallenges } from '../auth.js';
import { header, headersNamed, requestOf, RtspFramer, type RtspMessage, serialize, setHeader, setRequestLine, statusOf } from './framing.js';
import { plainAddress, UdpTrack, udpRequest } from './udpRelay.js';
import { parseTarget, rewriteToRelay, type Target, toRelayUrl, toUpstreamBase } from './urls.js';

export const MAX_REDIRECTS = 5;

interface Pending {
  /** The request as ffmpeg sent it (URI relay-based, ffmpeg's CSeq). */
  original: RtspMessage;
  method: string;
  /** The request URI as ffmpeg sent it. */
  uri: string;
  clientCseq: string | undefined;
  authTries: number;
  udp: UdpTrack | null;
}

const STATUS_TEXT: Record<number, string> = {
  403: 'Forbidden',
  461: 'Unsupported Transport',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A bodiless response to `request` (its CSeq, if any). */
function reply(request: RtspMessage, status: number): Buffer {
  const cseq = header(request, 'cseq');
  return Buffer.from(`RTSP/1.0 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n${cseq !== undefined ? `CSeq: ${cseq}\r\n` : ''}Content-Length: 0\r\n\r\n`);
}

const statusForRefusal = (error: VigilError, otherwise: number) => (error.code === 'SOURCE_FORBIDDEN' ? 403 : otherwise);

function asVigil(error: unknown, display: string): VigilError {
  return error instanceof VigilError ? error : new VigilError('SOURCE_UNREACHABLE', `cannot connect for "${display}": ${(error as Error).message}`, { cause: error });
}

export class RelaySession {
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

  private get display(): string {
    return this.relay.options.display;
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
        this.relay.report(new VigilError('SOURCE_TIMEOUT', `"${this.display}" sent nothing for ${Math.round(idleMs / 1000)} s`));
        this.shutdown();
      }
    }, Math.max(50, Math.min(1000, idleMs / 4)));
    this.idleTimer.unref();
    this.connecting = this.connectUpstream().catch((error: unknown) => this.connectFailed(error));
  }

  // ----- upstream connection --------------------------------------------------------------

  private async connectUpstream(): Promise<void> {
    const target = this.target;
    const socket = await this.relay.options.policy.connect({ host: target.host, port: target.port, tls: target.scheme === 'rtsps:', display: this.display, timeoutMs: this.relay.options.connectTimeoutMs });
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
    this.upstreamAddress = plainAddress(socket.remoteAddress ?? '');
    this.auth = null;
    this.lastActivity = Date.now();
    socket.setNoDelay(true);
    const framer = new RtspFramer({
      binary: (bytes) => this.toClient(bytes),
      message: (m) => this.fromUpstream(m),
      error: (reason) => {
        this.relay.report(new VigilError('SOURCE_FAILED', `"${this.display}" sent malformed RTSP (${reason})`));
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
      if (!this.tornDown) this.relay.report(new VigilError('SOURCE_UNREACHABLE', `connection to "${this.display}" failed (${error.code ?? error.message})`, { cause: error }));
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
    if (this.isClosed) return;
    const vigil = asVigil(error, this.display);
    this.relay.report(vigil);
    this.failure = { error: vigil, status: statusForRefusal(vigil, 503) };
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
          const item = this.queue.shift()!;
          if (this.failure) {
            if (!Buffer.isBuffer(item) && requestOf(item)) {
              this.toClient(reply(item, this.failure.status));
              this.endClient();
              return;
            }
          } else if (Buffer.isBuffer(item)) this.toUpstream(item);
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
    const request = requestOf(m);
    if (!request) {
      // ffmpeg's answer to a request the server sent: pass on.
      this.toUpstream(serialize(m));
      return;
    }
    let udp: UdpTrack | null = null;
    const transport = header(m, 'transport');
    if (request.method === 'SETUP' && transport !== undefined) {
      const asked = udpRequest(transport);
      if (asked === 'refuse') {
        this.toClient(reply(m, 461));
        return;
      }
      if (asked !== 'tcp') udp = await this.openTrack(asked.clientPorts);
    }
    if (request.method === 'TEARDOWN') this.tornDown = true;
    this.send({ original: m, method: request.method, uri: request.uri, clientCseq: header(m, 'cseq'), authTries: 0, udp });
  }

  /** Sends (or re-sends) a client request upstream with its URI, CSeq, Authorization and Transport for now. */
  private send(p: Pending): void {
    const m: RtspMessage = { startLine: p.original.startLine, headers: p.original.headers.map(([k, v]) => [k, v]), body: p.original.body };
    const uri = this.toUpstreamUri(p.uri);
    setRequestLine(m, p.method, uri);
    const cseq = ++this.cseq;
    setHeader(m, 'CSeq', String(cseq));
    setHeader(m, 'Authorization', this.auth ? this.auth.authorization(p.method, uri) : null);
    setHeader(m, 'Proxy-Authorization', null);
    if (p.udp) setHeader(m, 'Transport', p.udp.upstreamTransport(header(m, 'transport')!));
    this.pending.set(cseq, p);
    this.toUpstream(serialize(m));
  }

  private toUpstreamUri(uri: string): string {
    return this.exact.get(uri) ?? toUpstreamBase(uri, this.relay.base, this.target.base);
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
    const request = requestOf(m);
    if (request) {
      // A request from the server (GET_PARAMETER, SET_PARAMETER, ANNOUNCE, ...). REDIRECT is not passed on.
      if (request.method === 'REDIRECT') {
        this.toUpstream(reply(m, 501));
        return;
      }
      setRequestLine(m, request.method, toRelayUrl(request.uri, this.relay.base));
      rewriteToRelay(m, this.relay.base);
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
      this.relay.report(new VigilError('SOURCE_AUTH', `"${this.display}" ${this.relay.credentials && this.sameHostAsOriginal() ? 'refused the credentials' : 'requires credentials'} (401 Unauthorized)`));
    }
    if (status >= 300 && status < 400) {
      // Never passed on. Until it is settled the old upstream's close is not the session's end,
      // and ffmpeg's next requests wait (pump awaits `connecting`).
      this.redirecting = true;
      this.connecting = this.redirect(p, m)
        .catch((error: unknown) => {
          this.relay.report(asVigil(error, this.display));
          this.shutdown();
        })
        .finally(() => (this.redirecting = false));
      this.pump();
      return;
    }
    const ok = status >= 200 && status < 300;
    if (p.udp) {
      const transport = ok ? p.udp.start(header(m, 'transport'), this.upstreamAddress, this.relay.stats, () => (this.lastActivity = Date.now())) : null;
      if (transport === null) {
        p.udp.close();
        if (ok) {
          this.toClient(reply(p.original, 461));
          return;
        }
      } else setHeader(m, 'Transport', transport);
    }
    if (p.method === 'SETUP' && ok) this.setupDone = true;
    setHeader(m, 'CSeq', p.clientCseq ?? null);
    if (p.method === 'DESCRIBE' && ok && header(m, 'content-base') === undefined) {
      // After a redirect that changed the path, ffmpeg's own URL is not the base any more.
      const upstreamUri = this.toUpstreamUri(p.uri);
      if (this.exact.has(p.uri) && upstreamUri !== this.target.base + p.uri.slice(this.relay.base.length)) setHeader(m, 'Content-Base', toRelayUrl(upstreamUri, this.relay.base));
    }
    rewriteToRelay(m, this.relay.base);
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
    const location = header(m, 'location');
    const display = this.display;
    let target: Target | null = null;
    try {
      if (location) target = parseTarget(new URL(location, this.toUpstreamUri(p.uri)).href);
    } catch (error) {
      const e = error instanceof VigilError && error.code === 'SOURCE_SCHEME' ? new VigilError('SOURCE_FORBIDDEN', `"${display}" redirects to a non-RTSP URL; not followed`) : new VigilError('SOURCE_FAILED', `"${display}" sent a bad redirect Location`);
      return this.refuse(p, e, 502);
    }
    if (!target) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" answered ${statusOf(m)} without a Location`), 502);
    if (this.setupDone) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" redirects after SETUP; not followed`), 502);
    if (this.redirects >= MAX_REDIRECTS) return this.refuse(p, new VigilError('SOURCE_FAILED', `"${display}" redirects more than ${MAX_REDIRECTS} times`), 502);
    this.redirects++;
    // Check first (no connection at all to a refused address), then connect through the policy.
    const where = `${display} -> ${target.href}`;
    try {
      await this.relay.options.policy.resolve(target.host, where);
    } catch (error) {
      const e = asVigil(error, display);
      return this.refuse(p, e, statusForRefusal(e, 502));
    }
    // Outstanding requests on the old connection go to the new one, in order.
    const resend = [p, ...[...this.pending.entries()].sort((a, b) => a[0] - b[0]).map(([, q]) => q)];
    this.pending.clear();
    let socket: net.Socket;
    try {
      socket = await this.relay.options.policy.connect({ host: target.host, port: target.port, tls: target.scheme === 'rtsps:', display: where, timeoutMs: this.relay.options.connectTimeoutMs });
    } catch (error) {
      const e = asVigil(error, display);
      return this.refuse(p, e, statusForRefusal(e, 503));
    }
    if (this.isClosed) {
      socket.destroy();
      return;
    }
    this.relay.stats.upstreamConnections++;
    // The URL ffmpeg used for this request now means the Location (path included).
    this.exact.set(p.uri, target.href);
    this.attachUpstream(socket, target);
    for (const q of resend) {
      q.authTries = 0;
      this.send(q);
    }
  }

  private refuse(p: Pending, error: VigilError, status: number): void {
    this.relay.report(error);
    p.udp?.close();
    this.toClient(reply(p.original, status));
    this.endClient();
  }

  /** Lets what was written to ffmpeg go out, then closes everything. */
  private endClient(): void {
    this.detachUpstream();
    if (this.isClosed || this.client.writableEnded) return;
    this.client.end();
    setTimeout(() => this.shutdown(), 1000).unref();
  }

  private async openTrack(clientPorts: [number, number]): Promise<UdpTrack> {
    const track = await UdpTrack.open(this.upstreamAddress, clientPorts);
    this.tracks.push(track);
    if (this.isClosed) track.close();
    return track;
  }

  // ----- teardown -------------------------------------------------------------------------

  close(): Promise<void> {
    this.shutdown();
    return this.closed;
  }

  /** Closes the session now (synchronously); `closed` resolves. */
  shutdown(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.clientFramer.stop();
    this.detachUpstream();
    this.client.destroy();
    for (const t of this.tracks) t.close();
    this.queue.length = 0;
    this.pending.clear();
    this.resolveClosed();
  }
}
