/**
 * Alert notifications by webhook and MQTT, delivered at least once across restarts (docs/notifications.md).
 *
 * `enqueue(alert)` writes the alert to the persisted outbox (fsynced) and returns; delivery runs in
 * the background, per target (a webhook or an MQTT broker, ids unique across both), so a slow,
 * failing or hung receiver never blocks the caller (the watch engine, and through it ingest) nor
 * the other targets. A webhook delivery is an HTTP POST of a
 * signed JSON body, retried with capped exponential backoff and jitter on 5xx, 408, 429, network
 * errors and timeouts (Retry-After honoured), recorded as failed on any other status, and refused
 * without a connection when the outbound address policy refuses the receiver's address. A delivered
 * (or permanently failed) alert leaves the outbox; one still owed when the process stops is sent
 * again by the next Notifier opened on the same folder. An MQTT broker's alerts are published on one
 * connection (mqttTarget.ts); while it is down they wait in the outbox, no attempt counted, and go
 * out when it reconnects.
 *
 * Lives in the engine, not in api/: it reaches the network through ingest's OutboundPolicy (which
 * api/ may not import), and the watch engine calls it as alerts fire, whether or not an API runs.
 */
import { VigilError } from '../../../common/errors.js';
import type { OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { type MqttConfig, checkMqtt } from './mqttConfig.js';
import type { MqttTarget, StreamStateView } from './mqttTarget.js';
import { type CheckedWebhook, WebhookClient, type WebhookConfig, checkWebhook, signBody } from './webhook.js';

export { checkWebhookAddress, signBody, verifySignature, type WebhookConfig } from './webhook.js';
export { checkMqttAddress, type MqttConfig } from './mqttConfig.js';
export type { StreamStateView } from './mqttTarget.js';

export interface AlertEvidence {
  /** Stream time of the frame, seconds. */
  t: number;
  score?: number;
  /** A thumbnail's URL or id (never the image bytes: alerts are kept small). */
  thumbnail?: string;
}

/**
 * The minimal alert this module delivers. The watch engine's Alert (src/engine/watches/types.ts)
 * is assignable to it as it is: its extra fields (previousAnswer, evidence chunkId/tEnd/change)
 * travel in the JSON body unchanged.
 */
export interface Alert {
  /** Unique, stable across retries and restarts: 1-128 letters, digits, ".", "_", "-", ":". */
  id: string;
  watchId: string;
  stream: string;
  /** Stream time of the firing, seconds. */
  t: number;
  /** Wall-clock time of the firing: ms since the epoch, or an ISO 8601 string. */
  wallTime: number | string;
  answer: string;
  evidence: readonly AlertEvidence[];
  /** How long the model check took, ms. */
  checkMs: number;
}

export interface RetryPolicy {
  /** First retry delay before jitter; doubled each attempt. Default 1 s. */
  baseMs: number;
  /** Cap of the exponential delay. Default 5 min. */
  maxMs: number;
  /** Attempts per alert and webhook (within one process life) before it is recorded as failed. Default 25 (about 40-85 min of retries). */
  maxAttempts: number;
  /** A Retry-After longer than this is cut to it. Default 1 h. */
  maxRetryAfterMs: number;
}

export interface NotifierOptions {
  /** Folder of the outbox journal (created). One Notifier per folder. */
  dir: string;
  webhooks?: readonly WebhookConfig[];
  /** MQTT brokers (ids unique among webhooks and brokers). */
  mqtt?: readonly MqttConfig[];
  /** The streams whose availability the MQTT targets publish (`<prefix>/<stream>/availability`). */
  streams?: () => Iterable<StreamStateView>;
  /** How often `streams` is read, ms. Default 1000. */
  availabilityPollMs?: number;
  /** MQTT: wait between connection attempts, ms. Default 2000. */
  mqttReconnectMs?: number;
  /** MQTT: keepalive, seconds. Default 30. */
  mqttKeepaliveS?: number;
  /** The policy every connection obeys (the server's URL policy for sources). */
  policy: OutboundPolicy;
  /** Outbox bound: at most this many alerts owed; one more drops the oldest (counted). Default 10 000. */
  maxEntries?: number;
  /** An alert whose outbox record exceeds this is refused (BAD_INPUT). Default 256 KiB. */
  maxEntryBytes?: number;
  /** Per-attempt limit (connect, response headers, body), unless the webhook sets its own; an MQTT broker's connect limit. Default 10 s. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Deliveries in flight per webhook. Default 4. */
  concurrency?: number;
  /** For tests: the jitter's random source in [0, 1). */
  random?: () => number;
  /** Called for every attempt's outcome; events never hold secrets or URL paths. */
  log?: (event: DeliveryEvent) => void;
  /** MQTT connection events, one line each (connected, and each new reason it is down); never a password. */
  logConnection?: (line: string) => void;
}

export interface DeliveryEvent {
  transport: 'webhook' | 'mqtt';
  /** The webhook's or broker's id. */
  target: string;
  alertId: string;
  attempt: number;
  outcome: 'delivered' | 'retry' | 'failed' | 'refused' | 'dropped';
  status?: number;
  reason?: string;
  /** For 'retry': the wait before the next attempt. */
  delayMs?: number;
}

export interface WebhookStatus {
  id: string;
  /** Scheme, host and port only. */
  target: string;
  /** Alerts owed to this webhook (queued, waiting to retry or in flight). */
  pending: number;
  inFlight: number;
  delivered: number;
  /** Permanent failures (4xx, redirects, attempts exhausted), refusals not included. */
  failed: number;
  /** Deliveries the outbound address policy refused (nothing connected to). */
  refused: number;
  retries: number;
  lastSuccess: { at: string; alertId: string; status: number } | null;
  lastFailure: { at: string; alertId: string; reason: string; status?: number; final: boolean } | null;
}

export interface MqttStatus {
  id: string;
  /** Scheme, host and port only. */
  target: string;
  topicPrefix: string;
  qos: 0 | 1;
  connected: boolean;
  /** ISO time of the last successful connection, or null. */
  lastConnected: string | null;
  /** Why the connection is down (null while connected). */
  connectionError: string | null;
  /** Alerts owed to this broker (waiting for the connection, to retry, or in flight). */
  pending: number;
  inFlight: number;
  /** Alerts the broker acknowledged (QoS 1: PUBACK; QoS 0: written to the connection). */
  delivered: number;
  failed: number;
  retries: number;
  lastSuccess: { at: string; alertId: string } | null;
  lastFailure: { at: string; alertId: string; reason: string; final: boolean } | null;
}

export interface NotifierStatus {
  /** Alerts in the outbox (owed to at least one target). */
  queueDepth: number;
  maxEntries: number;
  /** Alerts dropped because the outbox was full (oldest first), over the outbox's life. */
  dropped: number;
  webhooks: WebhookStatus[];
  mqtt: MqttStatus[];
}

/** One attempt's outcome, as a target reports it (a webhook's AttemptResult, an MQTT publish's). */
export type SendResult =
  | { kind: 'delivered'; status?: number }
  | { kind: 'retry'; status?: number; reason: string; retryAfterMs?: number }
  | { kind: 'failed'; status?: number; reason: string }
  | { kind: 'refused'; reason: string };

/** A delivery target as the Notifier drives it. */
interface Transport {
  readonly kind: 'webhook' | 'mqtt';
  readonly id: string;
  /** Per-attempt limit, ms; null when the target ends its attempts itself (MQTT). */
  readonly timeoutMs: number | null;
  /** False while it cannot send (an MQTT broker between connections): its alerts wait, no attempt counted. */
  readonly connected: boolean;
  /** One attempt; never throws. */
  send(alert: Alert, signal: AbortSignal, attempt: number): Promise<SendResult>;
  close(): Promise<void>;
}

/** A webhook as a Transport: the signed POST of docs/notifications.md. */
class WebhookTransport implements Transport {
  readonly kind = 'webhook' as const;
  readonly connected = true;
  private readonly client: WebhookClient;

  constructor(
    readonly hook: CheckedWebhook,
    policy: OutboundPolicy,
  ) {
    this.client = new WebhookClient(hook, policy);
  }

  get id(): string {
    return this.hook.id;
  }

  get timeoutMs(): number {
    return this.hook.timeoutMs;
  }

  send(alert: Alert, signal: AbortSignal, attempt: number): Promise<SendResult> {
    const { hook } = this;
    const key = `${alert.id}:${hook.id}`;
    const sentAt = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ type: 'vigil.alert', version: 1, idempotencyKey: key, webhook: hook.id, attempt, sentAt, alert });
    const headers = {
      'x-vigil-signature': signBody(body, hook.secret),
      'x-vigil-timestamp': String(sentAt),
      'idempotency-key': key,
      'x-vigil-attempt': String(attempt),
    };
    return this.client.post(body, headers, signal);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export interface EnqueueResult {
  /** Targets the alert is owed to (0 when none is configured: nothing stored). */
  targets: number;
  /** Ids of older alerts dropped to make room. */
  dropped: string[];
}

const ALERT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

interface TargetStats {
  delivered: number;
  failed: number;
  refused: number;
  retries: number;
  lastSuccess: { at: string; alertId: string; status?: number } | null;
  lastFailure: { at: string; alertId: string; reason: string; status?: number; final: boolean } | null;
}

interface TargetState {
  transport: Transport;
  /** Set for a webhook, for its status. */
  hook?: CheckedWebhook;
  /** Set for an MQTT broker, for its status. */
  mqtt?: MqttTarget;
  ready: number[];
  timers: Map<number, NodeJS.Timeout>;
  inFlight: Map<number, AbortController>;
  attempts: Map<number, number>;
  stats: TargetStats;
}

/** mqtt.js takes ~0.15 s to load, so it is imported only when an MQTT broker is configured. */
async function loadMqttTarget(): Promise<typeof MqttTarget> {
  return (await import('./mqttTarget.js')).MqttTarget;
}

export class Notifier {
  /** Webhooks and MQTT brokers by id. */
  private readonly hooks = new Map<string, TargetState>();
  private readonly retry: RetryPolicy;
  private readonly concurrency: number;
  private readonly random: () => number;
  private readonly log: (event: DeliveryEvent) => void;
  private readonly running = new Set<Promise<void>>();
  private closed = false;

  private constructor(
    private readonly outbox: Outbox<Alert>,
    hooks: CheckedWebhook[],
    brokers: ReturnType<typeof checkMqtt>[],
    options: NotifierOptions,
    /** Loaded by open() whenever `brokers` is not empty. */
    mqttTarget: typeof MqttTarget | null,
  ) {
    this.retry = { baseMs: 1000, maxMs: 300_000, maxAttempts: 25, maxRetryAfterMs: 3_600_000, ...options.retry };
    this.concurrency = options.concurrency ?? 4;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? (() => {});
    const fresh = (transport: Transport): TargetState => ({
      transport,
      ready: [],
      timers: new Map(),
      inFlight: new Map(),
      attempts: new Map(),
      stats: { delivered: 0, failed: 0, refused: 0, retries: 0, lastSuccess: null, lastFailure: null },
    });
    for (const hook of hooks) this.hooks.set(hook.id, { ...fresh(new WebhookTransport(hook, options.policy)), hook });
    const logConnection = options.logConnection ?? (() => {});
    for (const broker of brokers) {
      const mqtt = new mqttTarget!(broker, {
        policy: options.policy,
        connectTimeoutMs: options.timeoutMs ?? 10_000,
        reconnectMs: options.mqttReconnectMs ?? 2000,
        keepaliveS: options.mqttKeepaliveS ?? 30,
        ...(options.streams ? { streams: options.streams } : {}),
        availabilityPollMs: options.availabilityPollMs ?? 1000,
        onConnected: () => this.wake(broker.id),
        log: logConnection,
      });
      this.hooks.set(broker.id, { ...fresh(mqtt), mqtt });
    }
  }

  /** Opens the outbox in `options.dir`, starts re-sending whatever it still owes, and starts connecting to the MQTT brokers. */
  static async open(options: NotifierOptions): Promise<Notifier> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const hooks = (options.webhooks ?? []).map((w) => checkWebhook(w, timeoutMs));
    const brokers = (options.mqtt ?? []).map((m) => checkMqtt(m));
    const ids = new Set<string>();
    for (const { id } of [...hooks, ...brokers]) {
      if (ids.has(id)) throw new VigilError('BAD_CONFIG', `two notification targets (webhooks, MQTT brokers) have the id "${id}"`);
      ids.add(id);
    }
    const mqttTarget = brokers.length > 0 ? await loadMqttTarget() : null;
    const outbox = await Outbox.open<Alert>(options.dir, {
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.maxEntryBytes !== undefined ? { maxEntryBytes: options.maxEntryBytes } : {}),
    });
    const notifier = new Notifier(outbox, hooks, brokers, options, mqttTarget);
    try {
      await notifier.resume();
    } catch (error) {
      await notifier.close();
      throw error;
    }
    for (const state of notifier.hooks.values()) state.mqtt?.start();
    return notifier;
  }

  /**
   * Stores the alert (fsynced) for every configured target (or the named ones), then returns;
   * delivery happens in the background. Rejects only when the alert is malformed or too large
   * (BAD_INPUT) or the outbox cannot be written (STORE_IO, DISK_FULL): never because of a receiver.
   * `webhooks` is the older name of `targets` (either names webhook and MQTT broker ids).
   */
  async enqueue(alert: Alert, options: { targets?: readonly string[]; webhooks?: readonly string[] } = {}): Promise<EnqueueResult> {
    if (this.closed) throw new VigilError('DISPOSED', 'the notifier is closed');
    checkAlert(alert);
    const named = options.targets ?? options.webhooks;
    const targets = named ? [...new Set(named)] : [...this.hooks.keys()];
    const unknown = targets.find((id) => !this.hooks.has(id));
    if (unknown !== undefined) throw new VigilError('BAD_INPUT', `no webhook or MQTT broker has the id "${unknown}"`);
    if (targets.length === 0) return { targets: 0, dropped: [] };
    const { entry, dropped } = await this.outbox.add(alert, targets);
    for (const old of dropped) this.forget(old);
    if (!this.closed) {
      for (const id of targets) {
        const state = this.hooks.get(id)!;
        state.ready.push(entry.seq);
        this.pump(state);
      }
    }
    return { targets: targets.length, dropped: dropped.map((d) => d.item.id) };
  }

  status(): NotifierStatus {
    const pending = new Map<string, number>();
    for (const entry of this.outbox.entries()) for (const id of entry.targets) pending.set(id, (pending.get(id) ?? 0) + 1);
    const webhooks: WebhookStatus[] = [];
    const mqtt: MqttStatus[] = [];
    for (const s of this.hooks.values()) {
      const counts = { pending: pending.get(s.transport.id) ?? 0, inFlight: s.inFlight.size };
      const stats = structuredClone(s.stats);
      if (s.hook) {
        webhooks.push({ id: s.hook.id, target: s.hook.display, ...counts, ...stats, lastSuccess: stats.lastSuccess ? { ...stats.lastSuccess, status: stats.lastSuccess.status ?? 0 } : null });
      } else if (s.mqtt) {
        const { broker } = s.mqtt;
        const { lastSuccess, lastFailure } = stats;
        mqtt.push({
          id: broker.id,
          target: broker.display,
          topicPrefix: broker.topicPrefix,
          qos: broker.qos,
          ...s.mqtt.status(),
          ...counts,
          delivered: stats.delivered,
          failed: stats.failed,
          retries: stats.retries,
          lastSuccess: lastSuccess ? { at: lastSuccess.at, alertId: lastSuccess.alertId } : null,
          lastFailure: lastFailure ? { at: lastFailure.at, alertId: lastFailure.alertId, reason: lastFailure.reason, final: lastFailure.final } : null,
        });
      }
    }
    return { queueDepth: this.outbox.depth, maxEntries: this.outbox.maxEntries, dropped: this.outbox.dropped, webhooks, mqtt };
  }

  /**
   * Stops: no new attempt starts, attempts in flight are aborted (their alerts stay owed and are
   * sent again by the next Notifier on this folder), the MQTT brokers are told `offline` and
   * disconnected, and the outbox is closed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const state of this.hooks.values()) {
      for (const timer of state.timers.values()) clearTimeout(timer);
      state.timers.clear();
      state.ready = [];
      for (const controller of state.inFlight.values()) controller.abort();
    }
    await Promise.allSettled([...this.running]);
    await Promise.allSettled([...this.hooks.values()].map((s) => s.transport.close()));
    await this.outbox.close();
  }

  private resume(): Promise<void> {
    const stale: Array<Promise<void>> = [];
    for (const entry of this.outbox.entries()) {
      for (const id of [...entry.targets]) {
        const state = this.hooks.get(id);
        if (state) state.ready.push(entry.seq);
        else {
          // Owed to a target that is no longer configured: it can never be delivered.
          this.log({ transport: 'webhook', target: id, alertId: entry.item.id, attempt: 0, outcome: 'failed', reason: 'the webhook or MQTT broker is no longer configured' });
          stale.push(this.outbox.settle(entry.seq, id));
        }
      }
    }
    return Promise.all(stale).then(() => {
      for (const state of this.hooks.values()) this.pump(state);
    });
  }

  /** A target (an MQTT broker) came up: what waits for it, retries included, goes now. */
  private wake(id: string): void {
    const state = this.hooks.get(id);
    if (!state || this.closed) return;
    for (const [seq, timer] of state.timers) {
      clearTimeout(timer);
      state.ready.push(seq);
    }
    state.timers.clear();
    this.pump(state);
  }

  /** An entry dropped from the outbox: stop delivering it anywhere. */
  private forget(entry: OutboxEntry<Alert>): void {
    for (const state of this.hooks.values()) {
      const timer = state.timers.get(entry.seq);
      if (timer) clearTimeout(timer);
      state.timers.delete(entry.seq);
      state.inFlight.get(entry.seq)?.abort();
      state.attempts.delete(entry.seq);
      if (entry.targets.has(state.transport.id)) {
        this.log({ transport: state.transport.kind, target: state.transport.id, alertId: entry.item.id, attempt: 0, outcome: 'dropped', reason: 'the outbox was full' });
      }
    }
  }

  private pump(state: TargetState): void {
    // A target that is down (MQTT between connections) keeps its queue until it is back (wake).
    while (!this.closed && state.transport.connected && state.inFlight.size < this.concurrency && state.ready.length > 0) {
      const seq = state.ready.shift()!;
      const entry = this.outbox.get(seq);
      if (!entry || !entry.targets.has(state.transport.id) || state.inFlight.has(seq) || state.timers.has(seq)) continue;
      this.attempt(state, entry);
    }
  }

  private attempt(state: TargetState, entry: OutboxEntry<Alert>): void {
    const { transport } = state;
    const attempt = (state.attempts.get(entry.seq) ?? 0) + 1;
    state.attempts.set(entry.seq, attempt);
    const controller = new AbortController();
    state.inFlight.set(entry.seq, controller);
    const timer = transport.timeoutMs === null ? null : setTimeout(() => controller.abort(), transport.timeoutMs);
    const run = transport
      .send(entry.item, controller.signal, attempt)
      .then((result) => {
        if (timer) clearTimeout(timer);
        if (state.inFlight.get(entry.seq) === controller) state.inFlight.delete(entry.seq);
        return this.settleAttempt(state, entry, attempt, result);
      })
      .catch((error: unknown) => {
        // send() never throws; settleAttempt only when the outbox cannot be written. The alert stays
        // owed (at least once), and the next start sends it again.
        this.log({ transport: transport.kind, target: transport.id, alertId: entry.item.id, attempt, outcome: 'retry', reason: `outbox write failed (${(error as VigilError).code ?? 'error'})` });
      })
      .finally(() => {
        this.running.delete(run);
        this.pump(state);
      });
    this.running.add(run);
  }

  private async settleAttempt(state: TargetState, entry: OutboxEntry<Alert>, attempt: number, result: SendResult): Promise<void> {
    // Closing, or the entry was dropped meanwhile: the outcome no longer matters.
    if (this.closed || this.outbox.get(entry.seq) !== entry) return;
    const { transport, stats } = state;
    const base = { transport: transport.kind, target: transport.id, alertId: entry.item.id, attempt };
    const at = new Date().toISOString();
    const status = 'status' in result && result.status !== undefined ? { status: result.status } : {};
    if (result.kind === 'delivered') {
      stats.delivered++;
      stats.lastSuccess = { at, alertId: entry.item.id, ...status };
      this.log({ ...base, outcome: 'delivered', ...status });
      state.attempts.delete(entry.seq);
      await this.outbox.settle(entry.seq, transport.id);
      return;
    }
    if (result.kind === 'retry' && attempt < this.retry.maxAttempts) {
      const delayMs = this.delay(attempt, result.retryAfterMs);
      stats.retries++;
      stats.lastFailure = { at, alertId: entry.item.id, reason: result.reason, ...status, final: false };
      this.log({ ...base, outcome: 'retry', reason: result.reason, delayMs, ...status });
      const timer = setTimeout(() => {
        state.timers.delete(entry.seq);
        state.ready.push(entry.seq);
        this.pump(state);
      }, delayMs);
      state.timers.set(entry.seq, timer);
      return;
    }
    const reason = result.kind === 'retry' ? `${result.reason}; gave up after ${attempt} attempts` : result.reason;
    const outcome = result.kind === 'refused' ? 'refused' : 'failed';
    if (outcome === 'refused') stats.refused++;
    else stats.failed++;
    stats.lastFailure = { at, alertId: entry.item.id, reason, ...status, final: true };
    this.log({ ...base, outcome, reason, ...status });
    state.attempts.delete(entry.seq);
    await this.outbox.settle(entry.seq, transport.id);
  }

  /** Capped exponential backoff with jitter (half fixed, half random), at least any Retry-After (capped). */
  private delay(attempt: number, retryAfterMs: number | undefined): number {
    const exp = Math.min(this.retry.maxMs, this.retry.baseMs * 2 ** (attempt - 1));
    const jittered = exp / 2 + (this.random() * exp) / 2;
    const floor = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, this.retry.maxRetryAfterMs);
    return Math.round(Math.max(jittered, floor));
  }
}

function checkAlert(alert: Alert): void {
  if (typeof alert !== 'object' || alert === null) throw new VigilError('BAD_INPUT', 'an alert must be an object');
  if (typeof alert.id !== 'string' || !ALERT_ID.test(alert.id)) {
    throw new VigilError('BAD_INPUT', 'an alert id must be 1-128 letters, digits, ".", "_", "-" or ":"');
  }
  for (const key of ['watchId', 'stream', 'answer'] as const) {
    if (typeof alert[key] !== 'string') throw new VigilError('BAD_INPUT', `alert "${alert.id}": ${key} must be a string`);
  }
  const wall = alert.wallTime;
  if (!(typeof wall === 'string' || (typeof wall === 'number' && Number.isFinite(wall)))) {
    throw new VigilError('BAD_INPUT', `alert "${alert.id}": wallTime must be ms since the epoch or an ISO 8601 string`);
  }
  for (const key of ['t', 'checkMs'] as const) {
    if (typeof alert[key] !== 'number' || !Number.isFinite(alert[key])) throw new VigilError('BAD_INPUT', `alert "${alert.id}": ${key} must be a finite number`);
  }
  if (!Array.isArray(alert.evidence)) throw new VigilError('BAD_INPUT', `alert "${alert.id}": evidence must be an array`);
}
