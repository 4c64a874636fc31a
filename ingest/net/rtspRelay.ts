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
 *
 * This file is the listening side (accepting only loopback clients, the error and stats shared by
 * its connections); the rest lives in rtsp/: framing.ts (the wire format and its limits), session.ts
 * (one relayed connection), auth.ts (401 answers), urls.ts (relay <-> camera URLs), udpRelay.ts
 * (UDP transport).
 */
import net from 'node:net';
import type { VigilError } from '../../common/errors.js';
import type { OutboundPolicy } from './outboundPolicy.js';
import { credentialsOf, type Credentials } from './auth.js';
import { RelaySession } from './rtsp/session.js';
import { parseTarget, type Target } from './rtsp/urls.js';

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

/** ffmpeg connections relayed at once. */
const MAX_SESSIONS = 16;

export class RtspRelay {
  readonly url: string;
  /** rtsp://127.0.0.1:PORT */
  readonly base: string;
  private readonly sessions = new Set<RelaySession>();
  private error: VigilError | null = null;
  private disposing: Promise<void> | null = null;
  readonly stats: RtspRelayStats = { connections: 0, upstreamConnections: 0, bytesDown: 0, bytesUp: 0, datagramsDown: 0, datagramsUp: 0, datagramsDropped: 0 };

  private constructor(
    readonly options: RtspRelayOptions,
    private readonly server: net.Server,
    port: number,
    readonly target: Target,
    readonly credentials: Credentials | null,
  ) {
    this.base = `rtsp://127.0.0.1:${port}`;
    this.url = this.base + target.href.slice(target.base.length);
  }

  static async start(options: RtspRelayOptions): Promise<RtspRelay> {
    const target = parseTarget(options.upstream);
    const credentials = credentialsOf(new URL(options.upstream));
    const server = net.createServer({ pauseOnConnect: false });
    server.maxConnections = MAX_SESSIONS;
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

  /** @internal For the sessions. */
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

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const plain = address.replace(/^::ffff:/i, '');
  return plain === '::1' || /^127\.\d+\.\d+\.\d+$/.test(plain);
}
