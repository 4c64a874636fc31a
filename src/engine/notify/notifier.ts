/**
 * Alert notifications by webhook, delivered at least once across restarts (docs/notifications.md).
 *
 * `enqueue(alert)` writes the alert to the persisted outbox (fsynced) and returns; delivery runs in
 * the background, per webhook, so a slow, failing or hung receiver never blocks the caller (the
 * watch engine, and through it ingest) nor the other webhooks. Each delivery is an HTTP POST of a
 * signed JSON body, retried with capped exponential backoff and jitter on 5xx, 408, 429, network
 * errors and timeouts (Retry-After honoured), recorded as failed on any other status, and refused
 * without a connection when the outbound address policy refuses the receiver's address. A delivered
 * (or permanently failed) alert leaves the outbox; one still owed when the process stops is sent
 * again by the next Notifier opened on the same folder.
 *
 * Lives in the engine, not in api/: it reaches the network through ingest's OutboundPolicy (which
 * api/ may not import), and the watch engine calls it as alerts fire, whether or not an API runs.
 */
import { VigilError } from '../../../common/errors.js';
import type { OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { type AttemptResult, type CheckedWebhook, WebhookClient, type WebhookConfig, checkWebhook, signBody } from './webhook.js';

export { checkWebhookAddress, signBody, verifySignature, type WebhookConfig } from './webhook.js';

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
  webhooks: readonly WebhookConfig[];
  /** The policy every connection obeys (the server's URL policy for sources). */
  policy: OutboundPolicy;
  /** Outbox bound: at most this many alerts owed; one more drops the oldest (counted). Default 10 000. */
  maxEntries?: number;
  /** An alert whose outbox record exceeds this is refused (BAD_INPUT). Default 256 KiB. */
  maxEntryBytes?: number;
  /** Per-attempt limit (connect, response headers, body), unless the webhook sets its own. Default 10 s. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Deliveries in flight per webhook. Default 4. */
  concurrency?: number;
  /** For tests: the jitter's random source in [0, 1). */
  random?: () => number;
  /** Called for every attempt's outcome; events never hold secrets or URL paths. */
  log?: (event: DeliveryEvent) => void;
}

export interface DeliveryEvent {
  webhook: string;
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

export interface NotifierStatus {
  /** Alerts in the outbox (owed to at least one webhook). */
  queueDepth: number;
  maxEntries: number;
  /** Alerts dropped because the outbox was full (oldest first), over the outbox's life. */
  dropped: number;
  webhooks: WebhookStatus[];
}

export interface EnqueueResult {
  /** Webhooks the alert is owed to (0 when none is configured: nothing stored). */
  targets: number;
  /** Ids of older alerts dropped to make room. */
  dropped: string[];
}

const ALERT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

interface HookState {
  hook: CheckedWebhook;
  client: WebhookClient;
  ready: number[];
  timers: Map<number, NodeJS.Timeout>;
  inFlight: Map<number, AbortController>;
  attempts: Map<number, number>;
  stats: Omit<WebhookStatus, 'id' | 'target' | 'pending' | 'inFlight'>;
}

export class Notifier {
  private readonly hooks = new Map<string, HookState>();
  private readonly retry: RetryPolicy;
  private readonly concurrency: number;
  private readonly random: () => number;
  private readonly log: (event: DeliveryEvent) => void;
  private readonly running = new Set<Promise<void>>();
  private closed = false;

  private constructor(
    private readonly outbox: Outbox<Alert>,
    hooks: CheckedWebhook[],
    options: NotifierOptions,
  ) {
    this.retry = { baseMs: 1000, maxMs: 300_000, maxAttempts: 25, maxRetryAfterMs: 3_600_000, ...options.retry };
    this.concurrency = options.concurrency ?? 4;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? (() => {});
    for (const hook of hooks) {
      this.hooks.set(hook.id, {
        hook,
        client: new WebhookClient(hook, options.policy),
        ready: [],
        timers: new Map(),
        inFlight: new Map(),
        attempts: new Map(),
        stats: { delivered: 0, failed: 0, refused: 0, retries: 0, lastSuccess: null, lastFailure: null },
      });
    }
  }

  /** Opens the outbox in `options.dir` and starts re-sending whatever it still owes. */
  static async open(options: NotifierOptions): Promise<Notifier> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const hooks = options.webhooks.map((w) => checkWebhook(w, timeoutMs));
    const ids = new Set<string>();
    for (const h of hooks) {
      if (ids.has(h.id)) throw new VigilError('BAD_CONFIG', `two webhooks have the id "${h.id}"`);
      ids.add(h.id);
    }
    const outbox = await Outbox.open<Alert>(options.dir, {
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.maxEntryBytes !== undefined ? { maxEntryBytes: options.maxEntryBytes } : {}),
    });
    const notifier = new Notifier(outbox, hooks, options);
    try {
      await notifier.resume();
    } catch (error) {
      await notifier.close();
      throw error;
    }
    return notifier;
  }

  /**
   * Stores the alert (fsynced) for every configured webhook (or the named ones), then returns;
   * delivery happens in the background. Rejects only when the alert is malformed or too large
   * (BAD_INPUT) or the outbox cannot be written (STORE_IO, DISK_FULL): never because of a receiver.
   */
  async enqueue(alert: Alert, options: { webhooks?: readonly string[] } = {}): Promise<EnqueueResult> {
    if (this.closed) throw new VigilError('DISPOSED', 'the notifier is closed');
    checkAlert(alert);
    const targets = options.webhooks ? [...new Set(options.webhooks)] : [...this.hooks.keys()];
    const unknown = targets.find((id) => !this.hooks.has(id));
    if (unknown !== undefined) throw new VigilError('BAD_INPUT', `no webhook has the id "${unknown}"`);
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
    return {
      queueDepth: this.outbox.depth,
      maxEntries: this.outbox.maxEntries,
      dropped: this.outbox.dropped,
      webhooks: [...this.hooks.values()].map((s) => ({
        id: s.hook.id,
        target: s.hook.display,
        pending: pending.get(s.hook.id) ?? 0,
        inFlight: s.inFlight.size,
        ...structuredClone(s.stats),
      })),
    };
  }

  /**
   * Stops: no new attempt starts, attempts in flight are aborted (their alerts stay owed and are
   * sent again by the next Notifier on this folder), and the outbox is closed.
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
    await Promise.allSettled([...this.hooks.values()].map((s) => s.client.close()));
    await this.outbox.close();
  }

  private async resume(): Promise<void> {
    const stale: Array<Promise<void>> = [];
    for (const entry of this.outbox.entries()) {
      for (const id of [...entry.targets]) {
        const state = this.hooks.get(id);
        if (state) state.ready.push(entry.seq);
        else {
          // Owed to a webhook that is no longer configured: it can never be delivered.
          this.log({ webhook: id, alertId: entry.item.id, attempt: 0, outcome: 'failed', reason: 'the webhook is no longer configured' });
          stale.push(this.outbox.settle(entry.seq, id));
        }
      }
    }
    await Promise.all(stale);
    for (const state of this.hooks.values()) this.pump(state);
  }

  /** An entry dropped from the outbox: stop delivering it anywhere. */
  private forget(entry: OutboxEntry<Alert>): void {
    for (const state of this.hooks.values()) {
      const timer = state.timers.get(entry.seq);
      if (timer) clearTimeout(timer);
      state.timers.delete(entry.seq);
      state.inFlight.get(entry.seq)?.abort();
      state.attempts.delete(entry.seq);
      if (entry.targets.has(state.hook.id)) {
        this.log({ webhook: state.hook.id, alertId: entry.item.id, attempt: 0, outcome: 'dropped', reason: 'the outbox was full' });
      }
    }
  }

  private pump(state: HookState): void {
    while (!this.closed && state.inFlight.size < this.concurrency && state.ready.length > 0) {
      const seq = state.ready.shift()!;
      const entry = this.outbox.get(seq);
      if (!entry || !entry.targets.has(state.hook.id) || state.inFlight.has(seq)) continue;
      this.attempt(state, entry);
    }
  }

  private attempt(state: HookState, entry: OutboxEntry<Alert>): void {
    const { hook } = state;
    const attempt = (state.attempts.get(entry.seq) ?? 0) + 1;
    state.attempts.set(entry.seq, attempt);
    const controller = new AbortController();
    state.inFlight.set(entry.seq, controller);
    const timer = setTimeout(() => controller.abort(), hook.timeoutMs);
    const key = `${entry.item.id}:${hook.id}`;
    const sentAt = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ type: 'vigil.alert', version: 1, idempotencyKey: key, webhook: hook.id, attempt, sentAt, alert: entry.item });
    const headers = {
      'x-vigil-signature': signBody(body, hook.secret),
      'x-vigil-timestamp': String(sentAt),
      'idempotency-key': key,
      'x-vigil-attempt': String(attempt),
    };
    const run = state.client
      .post(body, headers, controller.signal)
      .then((result) => {
        clearTimeout(timer);
        if (state.inFlight.get(entry.seq) === controller) state.inFlight.delete(entry.seq);
        return this.settleAttempt(state, entry, attempt, result);
      })
      .catch((error: unknown) => {
        // post() never throws; settleAttempt only when the outbox cannot be written. The alert stays
        // owed (at least once), and the next start sends it again.
        this.log({ webhook: hook.id, alertId: entry.item.id, attempt, outcome: 'retry', reason: `outbox write failed (${(error as VigilError).code ?? 'error'})` });
      })
      .finally(() => {
        this.running.delete(run);
        this.pump(state);
      });
    this.running.add(run);
  }

  private async settleAttempt(state: HookState, entry: OutboxEntry<Alert>, attempt: number, result: AttemptResult): Promise<void> {
    // Closing, or the entry was dropped meanwhile: the outcome no longer matters.
    if (this.closed || this.outbox.get(entry.seq) !== entry) return;
    const { hook, stats } = state;
    const alertId = entry.item.id;
    const at = new Date().toISOString();
    const status = 'status' in result && result.status !== undefined ? { status: result.status } : {};
    if (result.kind === 'delivered') {
      stats.delivered++;
      stats.lastSuccess = { at, alertId, status: result.status };
      this.log({ webhook: hook.id, alertId, attempt, outcome: 'delivered', status: result.status });
      state.attempts.delete(entry.seq);
      await this.outbox.settle(entry.seq, hook.id);
      return;
    }
    if (result.kind === 'retry' && attempt < this.retry.maxAttempts) {
      const delayMs = this.delay(attempt, result.retryAfterMs);
      stats.retries++;
      stats.lastFailure = { at, alertId, reason: result.reason, ...status, final: false };
      this.log({ webhook: hook.id, alertId, attempt, outcome: 'retry', reason: result.reason, delayMs, ...status });
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
    stats.lastFailure = { at, alertId, reason, ...status, final: true };
    this.log({ webhook: hook.id, alertId, attempt, outcome, reason, ...status });
    state.attempts.delete(entry.seq);
    await this.outbox.settle(entry.seq, hook.id);
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
