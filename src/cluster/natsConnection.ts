/**
 * The node's one connection to NATS (docs/scale-out.md): `nats://host[:4222][,nats://...]` as the
 * operator wrote it, checked, connected with JetStream, reconnected forever when lost.
 *
 * Every TCP connection the client makes (the first, each reconnect, and servers a NATS cluster
 * gossips to the client) goes through the outbound address policy: nats.js's Node transport is
 * replaced (process-wide, by `setTransportFactory`) with one that resolves the host through the
 * policy, refuses when any address is refused, and dials only a checked address. The policy is the
 * server's URL policy, as for MQTT brokers and webhooks (docs/notifications.md, "Address policy"):
 * a NATS server on a private or loopback address is allowed by the operator's allowNetworks.
 * A connection made without a policy is refused by that transport (fails closed), so every NATS
 * connection in Vigil must be made here.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Socket } from 'node:net';
import { type ConnectionOptions, type JetStreamClient, type JetStreamManager, type NatsConnection, type Status, Events, DebugEvents } from 'nats';
import { NatsConnectionImpl, setTransportFactory } from 'nats/lib/src/nats-base-client.js';
import { NodeTransport, nodeResolveHost } from 'nats/lib/src/node_transport.js';
import { VigilError, isVigilError } from '../../common/errors.js';
import type { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';

export const DEFAULT_NATS_PORT = 4222;

export interface NatsServerAddress {
  host: string;
  port: number;
  /** Safe to print: nats://host:port (the URL carries no credentials: they are refused). */
  display: string;
}

export interface NatsConnectOptions {
  /** `nats://host[:port][,nats://host[:port]...]` or a list of such URLs. */
  servers: string | readonly string[];
  /** The server's URL policy: every address dialled is checked against it. */
  policy: OutboundPolicy;
  /** The client name NATS shows (monitoring): the node id. */
  name?: string;
  /** Limit for the first connection (each server), ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Wait between reconnect attempts, ms. Default 500 (forever: a node never gives up on NATS). */
  reconnectWaitMs?: number;
  /** PING every this many ms; two unanswered PINGs end the connection (a silent partition is noticed). Default 2000. */
  pingIntervalMs?: number;
  /** Limit of one JetStream request (KV get/put), ms. Default 2000. */
  requestTimeoutMs?: number;
  /** How long to wait for JetStream to answer at start (a fresh cluster elects its meta leader first), ms. Default 10000. */
  jetStreamWaitMs?: number;
  user?: string;
  pass?: string;
  /** Connection events, one line each (never credentials). */
  log?: (line: string) => void;
}

export type NatsLinkEvent = { kind: 'disconnected'; server: string } | { kind: 'reconnected'; server: string };

const DEFAULTS = { connectTimeoutMs: 3000, reconnectWaitMs: 500, pingIntervalMs: 2000, requestTimeoutMs: 2000, jetStreamWaitMs: 10_000 };
/** Where the policy rides in the connection options, which nats.js hands to the transport (its keys are copied as they are). */
const POLICY_KEY = 'vigilOutboundPolicy';

/** Parses `nats://host[:port]` URLs (comma-separated or a list); BAD_CONFIG naming what is wrong. */
export function parseNatsServers(servers: string | readonly string[]): NatsServerAddress[] {
  const texts = (typeof servers === 'string' ? servers.split(',') : [...servers]).map((s) => s.trim()).filter((s) => s !== '');
  if (texts.length === 0) throw new VigilError('BAD_CONFIG', 'no NATS server given (expected nats://host:port[,nats://host:port...])');
  return texts.map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new VigilError('BAD_CONFIG', `NATS server "${safeText(text)}" is not a valid URL (expected nats://host:port)`);
    }
    if (url.protocol !== 'nats:') throw new VigilError('BAD_CONFIG', `NATS server URLs must start with nats:// (got ${url.protocol})`);
    if (url.username || url.password) throw new VigilError('BAD_CONFIG', 'a NATS server URL may not carry user:password (pass user / pass options instead)');
    if (url.hostname === '') throw new VigilError('BAD_CONFIG', 'a NATS server URL has no host');
    if ((url.pathname !== '' && url.pathname !== '/') || url.search || url.hash) {
      throw new VigilError('BAD_CONFIG', `NATS server nats://${url.host}: the URL may not have a path, query or fragment`);
    }
    const port = url.port === '' ? DEFAULT_NATS_PORT : Number(url.port);
    return { host: url.hostname, port, display: `nats://${url.hostname}:${port}` };
  });
}

/**
 * Where the servers lead, checked before any connection: BAD_CONFIG naming the server when the URL
 * policy refuses an address of its host. A host that does not resolve now is left to the
 * connection, which reports it (and every dial checks again).
 */
export async function checkNatsServers(servers: readonly NatsServerAddress[], policy: OutboundPolicy): Promise<void> {
  for (const server of servers) {
    try {
      await policy.resolve(server.host, server.display);
    } catch (error) {
      if (isVigilError(error) && error.code === 'SOURCE_UNREACHABLE') continue;
      throw new VigilError('BAD_CONFIG', `NATS server ${server.display} is refused by the URL policy: ${messageOf(error)}`, { cause: error });
    }
  }
}

/** A live NATS connection with JetStream; reconnects by itself. The parent closes it. */
export class ClusterConnection {
  private readonly events = new EventEmitter();
  private isConnected = true;
  private closing = false;
  private readonly statusLoop: Promise<void>;
  /** nats.js does not end status iterators on close: close() stops this one itself. */
  private readonly statusFeed: AsyncIterable<Status> & { stop(): void };

  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly servers: readonly NatsServerAddress[],
    private readonly log: (line: string) => void,
  ) {
    this.statusFeed = nc.status() as AsyncIterable<Status> & { stop(): void };
    this.statusLoop = this.followStatus();
  }

  /** Connects (BAD_CONFIG naming the servers when none answers, or when JetStream is off) and waits for JetStream. */
  static async open(options: NatsConnectOptions): Promise<ClusterConnection> {
    const o = { ...DEFAULTS, ...options };
    const log = options.log ?? (() => {});
    const servers = parseNatsServers(options.servers);
    await checkNatsServers(servers, options.policy);
    const where = servers.map((s) => s.display).join(', ');
    installPolicyTransport();
    const connectOptions = {
      servers: servers.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`),
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(options.user !== undefined ? { user: options.user, pass: options.pass ?? '' } : {}),
      timeout: o.connectTimeoutMs,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: o.reconnectWaitMs,
      reconnectJitter: Math.min(100, o.reconnectWaitMs),
      pingInterval: o.pingIntervalMs,
      maxPingOut: 2,
      // Names reach the transport unresolved: it resolves them through the policy itself.
      resolve: false,
      [POLICY_KEY]: options.policy,
    } as ConnectionOptions;
    let nc: NatsConnection;
    try {
      nc = await NatsConnectionImpl.connect(connectOptions);
    } catch (error) {
      throw new VigilError('BAD_CONFIG', `cannot connect to NATS at ${where}: ${reasonOf(error, o.connectTimeoutMs)}`, { cause: error });
    }
    try {
      const jsm = await waitForJetStream(nc, o.requestTimeoutMs, o.jetStreamWaitMs, where);
      const js = nc.jetstream({ timeout: o.requestTimeoutMs });
      log(`nats: connected to ${nc.getServer()}`);
      return new ClusterConnection(nc, js, jsm, servers, log);
    } catch (error) {
      await nc.close();
      throw error;
    }
  }

  /** Whether the client is connected now (false between a loss and the reconnect). */
  get connected(): boolean {
    return this.isConnected && !this.nc.isClosed();
  }

  /** Connection loss and return, as they happen. Returns the function that stops listening. */
  onLink(listener: (event: NatsLinkEvent) => void): () => void {
    this.events.on('link', listener);
    return () => this.events.off('link', listener);
  }

  /** Closes the connection (pending publishes are flushed first when connected). */
  async close(): Promise<void> {
    if (this.closing) return this.statusLoop;
    this.closing = true;
    if (!this.nc.isClosed()) await this.nc.close();
    this.statusFeed.stop();
    await this.statusLoop;
    this.events.removeAllListeners();
  }

  private async followStatus(): Promise<void> {
    for await (const status of this.statusFeed) {
      const server = String(status.data);
      if (status.type === Events.Disconnect) {
        this.isConnected = false;
        this.log(`nats: connection to ${server} lost; reconnecting`);
        this.events.emit('link', { kind: 'disconnected', server } satisfies NatsLinkEvent);
      } else if (status.type === Events.Reconnect) {
        this.isConnected = true;
        this.log(`nats: reconnected to ${server}`);
        this.events.emit('link', { kind: 'reconnected', server } satisfies NatsLinkEvent);
      } else if (status.type === Events.Error) {
        this.log(`nats: ${String(status.data)}`);
      } else if (status.type === DebugEvents.StaleConnection) {
        this.log('nats: the connection went silent (no PONG); reconnecting');
      }
    }
  }
}

/** Shorthand for ClusterConnection.open. */
export function connectNats(options: NatsConnectOptions): Promise<ClusterConnection> {
  return ClusterConnection.open(options);
}

async function waitForJetStream(nc: NatsConnection, timeoutMs: number, waitMs: number, where: string): Promise<JetStreamManager> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const jsm = await nc.jetstreamManager({ timeout: timeoutMs });
      await jsm.getAccountInfo();
      return jsm;
    } catch (error) {
      const text = messageOf(error);
      if (/503|no responders|not enabled/i.test(text) && !/temporarily/i.test(text) && !isClusterSettling(text)) {
        throw new VigilError('BAD_CONFIG', `the NATS server at ${where} has no JetStream (start nats-server with -js)`, { cause: error });
      }
      if (Date.now() > deadline) throw new VigilError('BAD_CONFIG', `JetStream at ${where} did not answer within ${waitMs} ms: ${text}`, { cause: error });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** A cluster still electing its JetStream meta leader answers with these (retry, not a configuration fault). */
export function isClusterSettling(text: string): boolean {
  return /timeout|leader|unavailable|insufficient resources/i.test(text);
}

/**
 * Makes every nats.js connection dial through its policy (see the file comment). The factory is
 * process-wide and nats.js's own connect() puts the plain transport back: so it is installed again
 * on every open, and nothing in a serving process may call nats.js's connect() itself.
 */
function installPolicyTransport(): void {
  setTransportFactory({ factory: () => new PolicyTransport(), dnsResolveFn: nodeResolveHost });
}

class PolicyTransport extends NodeTransport {
  override async dial(hp: { hostname: string; port: number }): Promise<Socket> {
    const policy = (this.options as unknown as Record<string, OutboundPolicy | undefined>)[POLICY_KEY];
    if (!policy) throw new VigilError('INTERNAL', 'internal error: a NATS connection without an outbound policy');
    const bare = hp.hostname.replace(/^\[(.*)\]$/, '$1');
    const display = `nats://${net.isIPv6(bare) ? `[${bare}]` : bare}:${hp.port}`;
    const addresses = await policy.resolve(bare, display);
    let last: unknown = null;
    for (const address of addresses) {
      try {
        return await super.dial({ hostname: address, port: hp.port });
      } catch (error) {
        last = error;
      }
    }
    throw last ?? Object.assign(new Error(`connection to ${display} failed`), { code: 'ECONNREFUSED' });
  }
}

/** Why the first connection failed, in words (never the credentials: the URL carries none). */
function reasonOf(error: unknown, timeoutMs: number): string {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) if (isVigilError(e)) return e.message;
  const code = String((error as { code?: unknown }).code ?? '');
  if (code === 'CONNECTION_REFUSED' || code === 'ECONNREFUSED') return 'connection refused (is nats-server running there?)';
  if (code === 'TIMEOUT' || code === 'ETIMEDOUT') return `no answer within ${timeoutMs} ms`;
  if (code === 'AUTHORIZATION_VIOLATION') return 'the server refused the credentials';
  return messageOf(error);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A bad URL's text, without anything that looks like credentials. */
function safeText(text: string): string {
  return text.replace(/\/\/[^@/]*@/, '//');
}
