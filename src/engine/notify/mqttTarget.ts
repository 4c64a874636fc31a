/**
 * One MQTT broker as a delivery target of the Notifier (docs/notifications.md, "MQTT"): a single
 * client connection (reconnected by mqtt.js every `reconnectMs`), made through the outbound address
 * policy (mqttSocket.ts), that
 *   - publishes each alert to `<prefix>/<stream>/alerts` (the alert record as JSON, QoS 1 by
 *     default, not retained) when the Notifier hands it one; delivered = the broker's PUBACK;
 *   - keeps `<prefix>/availability` retained: `online` on every connect, the Last Will `offline`
 *     when the connection dies without a goodbye, `offline` on a clean close;
 *   - keeps `<prefix>/<stream>/availability` retained `online` while the stream ingests (live or
 *     processing a file) and `offline` otherwise, polled from the stream states it is given and
 *     republished on every connect (the broker may have lost or never had them).
 * While it is not connected the Notifier holds its alerts (no attempt counted) and sends them when
 * `onConnected` fires. An unacknowledged QoS 1 publish is sent again by mqtt.js itself after a
 * reconnect, so an attempt has no time limit of its own: it ends with the PUBACK or with close().
 */
import crypto from 'node:crypto';
import { MqttClient } from 'mqtt';
import { VigilError } from '../../../common/errors.js';
import type { OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';
import type { CheckedMqtt } from './mqttConfig.js';
import { PolicySocket } from './mqttSocket.js';

/** A stream's ingest state as the manager reports it (StreamStatus.state). */
export interface StreamStateView {
  id: string;
  state: string;
}

/** Stream states that count as `online`: frames are coming in. */
const ONLINE_STATES = new Set(['live', 'processing']);
const TOPIC_LEVEL = /^[A-Za-z0-9_.-]{1,64}$/;

export interface MqttTargetOptions {
  policy: OutboundPolicy;
  /** Connect (TCP/TLS and CONNACK) limit, ms. */
  connectTimeoutMs: number;
  /** Wait between connection attempts, ms. */
  reconnectMs: number;
  /** Keepalive, seconds: a dead connection is noticed within 1.5x this. */
  keepaliveS: number;
  /** The streams whose availability is published (none when absent). */
  streams?: () => Iterable<StreamStateView>;
  /** How often `streams` is read, ms. */
  availabilityPollMs: number;
  /** The connection came up: owed alerts may be sent now. */
  onConnected(): void;
  /** Connection events, one line each (never the password). */
  log(line: string): void;
}

export interface MqttConnectionStatus {
  connected: boolean;
  /** ISO time of the last successful connection, or null. */
  lastConnected: string | null;
  /** Why the connection is down (null while connected or before the first attempt ends). */
  connectionError: string | null;
}

export type MqttSendResult = { kind: 'delivered' } | { kind: 'retry'; reason: string } | { kind: 'failed'; reason: string };

export class MqttTarget {
  readonly kind = 'mqtt' as const;
  /** Attempts end with the broker's PUBACK or close() (mqtt.js resends an unacknowledged publish after a reconnect). */
  readonly timeoutMs = null;
  private readonly client: MqttClient;
  /** Stream availability as last read from `streams`. */
  private readonly streamStates = new Map<string, 'online' | 'offline'>();
  /** What this connection has published for each stream (cleared on every connect). */
  private readonly published = new Map<string, 'online' | 'offline'>();
  private poll: NodeJS.Timeout | null = null;
  private lastConnected: string | null = null;
  private connectionError: string | null = null;
  private closed = false;
  private started = false;

  constructor(
    readonly broker: CheckedMqtt,
    private readonly options: MqttTargetOptions,
  ) {
    const serverTopic = this.topic('availability');
    this.client = new MqttClient(
      () => {
        const socket = new PolicySocket(broker, options.policy, options.connectTimeoutMs);
        // mqtt.js passes on only errors that carry a code; every failure is recorded here.
        socket.on('error', (error: Error) => this.connectionFailed(error));
        return socket;
      },
      {
        manualConnect: true,
        protocolVersion: 4,
        clientId: `vigil-${crypto.randomBytes(6).toString('hex')}`,
        clean: true,
        keepalive: options.keepaliveS,
        reconnectPeriod: options.reconnectMs,
        connectTimeout: options.connectTimeoutMs,
        // Bad credentials may be fixed on the broker's side: keep trying, as for a broker that is down.
        reconnectOnConnackError: true,
        resubscribe: false,
        queueQoSZero: false,
        will: { topic: serverTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
        ...(broker.username !== undefined ? { username: broker.username } : {}),
        ...(broker.password !== undefined ? { password: broker.password } : {}),
      },
    );
    this.client.on('connect', () => this.connectedNow());
    this.client.on('error', (error: Error) => this.connectionFailed(error));
    this.client.on('close', () => {
      if (this.connectionError === null && this.lastConnected !== null && !this.closed) this.connectionFailed(new Error('the connection closed'));
    });
  }

  get id(): string {
    return this.broker.id;
  }

  get display(): string {
    return this.broker.display;
  }

  get connected(): boolean {
    return this.client.connected && !this.closed;
  }

  /** Starts connecting (in the background) and polling the stream states. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.client.connect();
    if (this.options.streams) {
      this.readStreams();
      this.poll = setInterval(() => this.readStreams(), this.options.availabilityPollMs);
      this.poll.unref();
    }
  }

  status(): MqttConnectionStatus {
    return { connected: this.connected, lastConnected: this.lastConnected, connectionError: this.connected ? null : this.connectionError };
  }

  /** Publishes one alert; never throws. Aborting (the Notifier closing) ends the wait at once. */
  send(alert: { id: string; stream: string }, signal: AbortSignal): Promise<MqttSendResult> {
    if (!TOPIC_LEVEL.test(alert.stream)) return Promise.resolve({ kind: 'failed', reason: 'the stream id is not a valid MQTT topic level' });
    if (!this.connected) return Promise.resolve({ kind: 'retry', reason: 'not connected' });
    return new Promise((resolve) => {
      const onAbort = () => resolve({ kind: 'retry', reason: 'closed' });
      signal.addEventListener('abort', onAbort, { once: true });
      this.client.publish(this.topic(alert.stream, 'alerts'), JSON.stringify(alert), { qos: this.broker.qos, retain: false }, (error) => {
        signal.removeEventListener('abort', onAbort);
        resolve(error ? { kind: 'retry', reason: describe(error) } : { kind: 'delivered' });
      });
    });
  }

  /**
   * Clean goodbye: `offline` on every stream's availability topic this target published `online` and on the
   * server's (so nobody waits for the Will), then DISCONNECT. Bounded by the connect timeout; a
   * broker that is down gets nothing (its Will, if it had one from us, already says offline).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
    if (!this.started) {
      // Never connected (the Notifier failed to open): there is no connection to end.
      this.closed = true;
      return;
    }
    if (this.client.connected) {
      const online = [...this.published].filter(([, state]) => state === 'online').map(([stream]) => stream);
      const goodbyes = [...online.map((stream) => this.topic(stream, 'availability')), this.topic('availability')].map(
        (topic) => new Promise<void>((resolve) => this.publishRetained(topic, 'offline', resolve)),
      );
      await withTimeout(Promise.allSettled(goodbyes), this.options.connectTimeoutMs);
    }
    this.closed = true;
    await new Promise<void>((resolve) => {
      // A broker that never answers the DISCONNECT's flush: the socket is dropped.
      const timer = setTimeout(() => {
        this.client.stream?.destroy();
        resolve();
      }, this.options.connectTimeoutMs);
      this.client.end(!this.client.connected, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private topic(...levels: string[]): string {
    return [this.broker.topicPrefix, ...levels].join('/');
  }

  private connectedNow(): void {
    if (this.closed) return;
    const wasDown = this.connectionError !== null || this.lastConnected === null;
    this.lastConnected = new Date().toISOString();
    this.connectionError = null;
    if (wasDown) this.options.log(`mqtt ${this.broker.id} (${this.broker.display}): connected`);
    // Order within one connection is kept: `online` first, then the streams, then the owed alerts.
    this.publishRetained(this.topic('availability'), 'online');
    this.published.clear();
    this.publishStreams();
    this.options.onConnected();
  }

  private connectionFailed(error: Error): void {
    if (this.closed) return;
    const reason = describe(error);
    // One line per change of reason: a broker that stays down does not fill the log.
    if (reason !== this.connectionError) this.options.log(`mqtt ${this.broker.id} (${this.broker.display}): ${reason}; reconnecting every ${this.options.reconnectMs} ms`);
    this.connectionError = reason;
  }

  private readStreams(): void {
    let states: Iterable<StreamStateView>;
    try {
      states = this.options.streams!();
    } catch (error) {
      this.options.log(`mqtt ${this.broker.id}: cannot read the stream states: ${(error as Error).message}`);
      return;
    }
    const seen = new Set<string>();
    for (const s of states) {
      if (!TOPIC_LEVEL.test(s.id)) continue;
      seen.add(s.id);
      this.streamStates.set(s.id, ONLINE_STATES.has(s.state) ? 'online' : 'offline');
    }
    // A stream that is gone (deleted, or stopped by a shutdown) is offline, not forgotten.
    for (const id of this.streamStates.keys()) if (!seen.has(id)) this.streamStates.set(id, 'offline');
    this.publishStreams();
  }

  /** Publishes each stream's availability that this connection has not published yet. */
  private publishStreams(): void {
    if (!this.connected) return;
    for (const [stream, state] of this.streamStates) {
      if (this.published.get(stream) === state) continue;
      this.published.set(stream, state);
      this.publishRetained(this.topic(stream, 'availability'), state);
    }
  }

  /** A retained QoS 1 publication; `done` once acknowledged or failed (a failure is logged; every connect republishes). */
  private publishRetained(topic: string, payload: string, done: () => void = () => {}): void {
    this.client.publish(topic, payload, { qos: 1, retain: true }, (error) => {
      if (error && !this.closed) this.options.log(`mqtt ${this.broker.id}: ${topic} = ${payload} not acknowledged (${describe(error)})`);
      done();
    });
  }
}

/** An error as a short reason: a policy refusal's own message, else the code or message (never a password: mqtt.js errors hold none). */
function describe(error: Error): string {
  if (error instanceof VigilError) return error.message;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ETIMEDOUT') return 'connect timeout';
  if (typeof code === 'string' && /CERT|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return `TLS certificate not accepted (${code})`;
  return error.message.slice(0, 200) || String(code ?? 'error');
}

function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}
