/**
 * The one place that decides whether Vigil may open a network connection for a video source. Every
 * connection that media can cause (the source itself, each HTTP redirect, HLS variant playlists and
 * segments, RTSP redirects, and every reconnect) is made by Vigil through `connect()`, which
 * resolves the host name, checks EVERY resolved address, and connects to a checked address itself.
 * ffmpeg never resolves or reaches a source host: it only talks to Vigil's loopback relays.
 *
 * Checking the resolved address at connect time (not the URL once, at creation) is what defeats
 * DNS rebinding: a name that resolves to a public address now and to 127.0.0.1 later is checked
 * again when it is connected to again.
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import { VigilError, isVigilError } from '../../common/errors.js';
import { AddressSet, PRIVATE_RANGES } from './addressSet.js';

export type HostLookup = (host: string) => Promise<string[]>;

export interface OutboundPolicyOptions {
  /** Let sources reach loopback, private, link-local ... addresses (PRIVATE_RANGES). Default false. */
  allowPrivateNetworks?: boolean;
  /** Addresses or CIDR ranges exempt from the private-network rule (a camera VLAN; 127.0.0.2/32 in tests). */
  allowNetworks?: readonly string[];
  /** Name resolution; default the system resolver (dns.lookup, all addresses). Tests inject rebinding here. */
  lookup?: HostLookup;
}

export interface ConnectTarget {
  host: string;
  port: number;
  /** TLS (rtsps:, https:), with SNI and certificate checks against `host`. */
  tls?: boolean;
  /** Safe to print, for errors (no credentials). */
  display: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** TLS: trust these certificate authorities instead of the system's (PEM). */
  ca?: string | Buffer;
}

const systemLookup: HostLookup = async (host) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export class OutboundPolicy {
  /** For sources the operator declared (config cameras, the CLI): every address allowed, still one code path. */
  static readonly trusted = new OutboundPolicy({ allowPrivateNetworks: true });

  private readonly blocked: AddressSet;
  private readonly allowed: AddressSet;
  private readonly lookup: HostLookup;

  constructor(readonly options: OutboundPolicyOptions = {}) {
    this.blocked = new AddressSet(options.allowPrivateNetworks ? [] : PRIVATE_RANGES);
    this.allowed = new AddressSet(options.allowNetworks ?? []);
    this.lookup = options.lookup ?? systemLookup;
  }

  /** Whether Vigil may connect to this IP address. */
  allows(address: string): boolean {
    return !this.blocked.has(address) || this.allowed.has(address);
  }

  /**
   * The addresses `host` resolves to, all of them allowed; throws SOURCE_FORBIDDEN when any is not
   * (a name with one refused address is refused: the resolver could hand ffmpeg... or us... either),
   * SOURCE_UNREACHABLE when it does not resolve.
   */
  async resolve(host: string, display: string): Promise<string[]> {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    let addresses: string[];
    if (net.isIP(bare)) addresses = [bare];
    else {
      try {
        addresses = await this.lookup(bare);
      } catch (error) {
        throw new VigilError('SOURCE_UNREACHABLE', `cannot resolve the host of "${display}" (${(error as NodeJS.ErrnoException).code ?? 'DNS error'})`, { cause: error });
      }
      if (addresses.length === 0) throw new VigilError('SOURCE_UNREACHABLE', `cannot resolve the host of "${display}"`);
    }
    const refused = addresses.find((a) => !this.allows(a));
    if (refused !== undefined) throw refusedError(display, refused);
    return addresses;
  }

  /** Resolves, checks and connects (TCP or TLS) to the first address that answers. */
  async connect(target: ConnectTarget): Promise<net.Socket> {
    const addresses = await this.resolve(target.host, target.display);
    let last: unknown = null;
    for (const address of addresses) {
      try {
        return await connectOnce(address, target);
      } catch (error) {
        if (target.signal?.aborted) throw error;
        last = error;
      }
    }
    throw networkError(last, target.display, target.signal);
  }
}

export function refusedError(display: string, address: string): VigilError {
  return new VigilError(
    'SOURCE_FORBIDDEN',
    `"${display}" leads to a private, loopback or reserved address (${address}); the server's URL policy does not allow it (allowNetworks / allowPrivateNetworks).`,
  );
}

/**
 * One TCP or TLS connection to an address the policy already allowed (SNI and the certificate check
 * against the target's host name, not the address); rejects on timeout or abort. Callers with their
 * own retry and error reporting (the MQTT socket) use it directly after `resolve`.
 */
export function connectOnce(address: string, target: ConnectTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const bareHost = target.host.replace(/^\[(.*)\]$/, '$1');
    const socket = target.tls
      ? tls.connect({ host: address, port: target.port, ...(net.isIP(bareHost) ? {} : { servername: bareHost }), ...(target.ca !== undefined ? { ca: target.ca } : {}), ALPNProtocols: [] })
      : net.connect({ host: address, port: target.port });
    const ready = target.tls ? 'secureConnect' : 'connect';
    const timer = setTimeout(() => fail(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), target.timeoutMs);
    const onAbort = () => fail(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));
    target.signal?.addEventListener('abort', onAbort, { once: true });
    function cleanup() {
      clearTimeout(timer);
      target.signal?.removeEventListener('abort', onAbort);
      socket.off('error', fail);
    }
    function fail(error: Error) {
      cleanup();
      socket.destroy();
      reject(error);
    }
    socket.once('error', fail);
    socket.once(ready, () => {
      cleanup();
      resolve(socket);
    });
  });
}

/** A failed connection or request as a VigilError (policy refusals pass through unchanged). */
export function networkError(error: unknown, display: string, signal?: AbortSignal): VigilError {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) if (isVigilError(e)) return e;
  const code = String((error as NodeJS.ErrnoException).code ?? '');
  const prefix = `Cannot read video source "${display}"`;
  if (signal?.aborted) return new VigilError('CANCELLED', `Reading "${display}" was cancelled.`, { cause: error });
  if (code === 'ECONNREFUSED') return new VigilError('SOURCE_UNREACHABLE', `${prefix}: connection refused: nothing listens at that host and port.`, { cause: error });
  if (/TIMEOUT|ETIMEDOUT/.test(code)) return new VigilError('SOURCE_TIMEOUT', `${prefix}: no answer from the server within the socket timeout.`, { cause: error });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new VigilError('SOURCE_UNREACHABLE', `${prefix}: cannot resolve the host name.`, { cause: error });
  return new VigilError('SOURCE_UNREACHABLE', `${prefix}: the connection failed (${code || (error as Error).message}).`, { cause: error });
}
