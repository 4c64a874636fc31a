import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type MqttStatus, type QuestionEvent, STREAM_STATES, type StreamStatus, type WebhookStatus } from '../src/engine/streamManager.js';
import { registerClusterMetrics } from './clusterMetrics.js';
import type { ServiceContext } from './context.js';

const PHASES = ['queue', 'retrieval', 'load', 'prefill', 'ttft', 'decode', 'total'] as const;

/**
 * Prometheus metrics on a registry of this app's own (two apps in one process, as in tests, do not
 * collide). Per-stream figures are read from the manager at scrape time; question latencies are
 * observed as questions finish, by phase (queue wait, retrieval, chunk load, prefill, time to first
 * token, decode, total).
 */
export function createMetrics(ctx: ServiceContext): { registry: Registry; httpMetrics: RequestHandler; handler: RequestHandler } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vigil_' });
  // prom-client's active handle/request/resource counts are gauges named *_total, which Prometheus
  // reserves for counters (promtool check metrics refuses them). They are the sums of the per-type
  // gauges vigil_nodejs_active_handles{type} (and _requests, _resources): sum() those instead.
  for (const name of ['vigil_nodejs_active_handles_total', 'vigil_nodejs_active_requests_total', 'vigil_nodejs_active_resources_total']) registry.removeSingleMetric(name);
  const streams = () => ctx.peek()?.list() ?? [];
  // Gauges and counters filled from stream status on every scrape.
  const perStream = (name: string, help: string, value: (s: StreamStatus) => number | null, counter = false) => {
    const collect = function (this: Gauge | Counter) {
      this.reset();
      for (const s of streams()) {
        const v = value(s);
        if (v === null) continue;
        if (this instanceof Gauge) this.set({ stream: s.id }, v);
        else this.inc({ stream: s.id }, v);
      }
    };
    return counter
      ? new Counter({ name, help, labelNames: ['stream'], registers: [registry], collect })
      : new Gauge({ name, help, labelNames: ['stream'], registers: [registry], collect });
  };
  perStream('vigil_ingest_fps', 'Frames encoded per second (10 s window).', (s) => s.ingest?.fps ?? null);
  perStream('vigil_ingest_source_fps', 'Frames sampled from the source per second (10 s window).', (s) => s.ingest?.sourceFps ?? null);
  perStream('vigil_ingest_lag_seconds', 'How far ingest is behind the source: age of the oldest delivered frame not stored yet (queued or in the model).', (s) => (s.ingest ? s.ingest.lagMs / 1000 : null));
  perStream('vigil_ingest_frames_dropped_total', 'Frames dropped because the model was behind (live sources).', (s) => s.ingest?.drops ?? null, true);
  perStream('vigil_ingest_reconnects_total', 'Source restarts (reconnects, watchdog kills).', (s) => s.ingest?.restarts ?? null, true);
  perStream('vigil_ingest_gaps_total', 'Outages recorded in the stream timeline.', (s) => s.ingest?.gaps ?? null, true);
  perStream('vigil_ingest_gap_write_errors_total', 'Outage writes to the timeline that failed (retried).', (s) => s.ingest?.gapWriteErrors ?? null, true);
  perStream('vigil_ingest_disk_full_pauses_total', 'Times ingest paused because the disk was full.', (s) => s.ingest?.pauses ?? null, true);
  perStream('vigil_ingest_paused_frames_dropped_total', 'Live frames dropped while ingest was paused for a full disk.', (s) => s.ingest?.pausedDrops ?? null, true);
  perStream('vigil_memory_gaps', 'Outages persisted in the stream timeline (camera down, service stopped, disk full).', (s) => s.memory?.gaps ?? null);
  perStream('vigil_ingest_frames_total', 'Frames encoded since the ingest started.', (s) => s.frames, true);
  perStream('vigil_ingest_frames_gated_total', 'Frames the gate turned away since the ingest started (not encoded; the previous chunk covers them).', (s) => s.ingest?.gated ?? null, true);
  perStream('vigil_memory_chunks', 'Chunks stored on disk.', (s) => s.memory?.chunks ?? null);
  perStream('vigil_memory_horizon_seconds', 'Stream seconds memory reaches back over (horizon to - from; outages inside included).', (s) => {
    const h = s.memory?.horizon;
    return h && h.from !== null && h.to !== null ? h.to - h.from : null;
  });
  perStream('vigil_memory_forgotten_chunks_total', 'Chunks retention (disk budget, maxBytes, age) deleted from the oldest end since the stream began.', (s) => s.memory?.horizon.forgottenChunks ?? null, true);
  perStream('vigil_memory_disk_bytes', 'Bytes of KV segments on disk.', (s) => s.memory?.bytes ?? null);
  perStream('vigil_memory_budget_bytes', 'Disk budget in force (the stream budget or its share of the data-folder budget).', (s) => s.disk?.budgetBytes ?? null);
  perStream('vigil_memory_budget_used_bytes', 'Bytes on disk counted against the budget (chunk store and index folders, measured).', (s) => s.disk?.usedBytes ?? null);
  // Cluster mode: this node's leases and replication, the cluster's nodes (api/clusterMetrics.ts).
  if (ctx.cluster) registerClusterMetrics(registry, ctx.cluster, ctx.log);
  new Gauge({
    name: 'vigil_streams',
    help: 'Streams by state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      // Every state has a series (0 when no stream is in it), so e.g. state="paused" can be alerted on.
      for (const state of STREAM_STATES) this.set({ state }, 0);
      for (const s of streams()) this.inc({ state: s.state });
    },
  });
  new Gauge({
    name: 'vigil_model_queue',
    help: 'Model jobs waiting, by kind.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const stats = ctx.peek()?.scheduler.stats();
      this.set({ kind: 'question' }, stats?.queuedQuestions ?? 0);
      this.set({ kind: 'frame' }, stats?.queuedFrames ?? 0);
    },
  });
  // Webhook delivery (docs/notifications.md), read from the Notifier at scrape time; no series without webhooks.
  const notifications = () => ctx.peek()?.notifications() ?? null;
  new Gauge({
    name: 'vigil_notify_queue_depth',
    help: 'Alerts in the notification outbox (owed to at least one webhook or MQTT broker).',
    registers: [registry],
    collect() {
      this.reset();
      const n = notifications();
      if (n) this.set(n.queueDepth);
    },
  });
  new Counter({
    name: 'vigil_notify_dropped_total',
    help: 'Alerts dropped because the notification outbox was full (over its life).',
    registers: [registry],
    collect() {
      this.reset();
      const n = notifications();
      if (n) this.inc(n.dropped);
    },
  });
  const perWebhook = (name: string, help: string, value: (w: WebhookStatus) => number | null, counter = false) => {
    const collect = function (this: Gauge | Counter) {
      this.reset();
      for (const w of notifications()?.webhooks ?? []) {
        const v = value(w);
        if (v === null) continue;
        if (this instanceof Gauge) this.set({ webhook: w.id }, v);
        else this.inc({ webhook: w.id }, v);
      }
    };
    return counter
      ? new Counter({ name, help, labelNames: ['webhook'], registers: [registry], collect })
      : new Gauge({ name, help, labelNames: ['webhook'], registers: [registry], collect });
  };
  const seconds = (at: string | undefined) => (at === undefined ? null : Date.parse(at) / 1000);
  perWebhook('vigil_notify_pending', 'Alerts owed to the webhook (queued, waiting to retry or in flight).', (w) => w.pending);
  perWebhook('vigil_notify_delivered_total', 'Alerts delivered (2xx) since the server started.', (w) => w.delivered, true);
  perWebhook('vigil_notify_failed_total', 'Alerts that failed for good (4xx, redirect, attempts exhausted) since the server started.', (w) => w.failed, true);
  perWebhook('vigil_notify_refused_total', 'Deliveries the outbound address policy refused since the server started.', (w) => w.refused, true);
  perWebhook('vigil_notify_retries_total', 'Delivery attempts retried since the server started.', (w) => w.retries, true);
  perWebhook('vigil_notify_last_success_timestamp_seconds', 'When the webhook last accepted an alert (Unix seconds).', (w) => seconds(w.lastSuccess?.at));
  perWebhook('vigil_notify_last_failure_timestamp_seconds', 'When a delivery to the webhook last failed (Unix seconds).', (w) => seconds(w.lastFailure?.at));
  // MQTT brokers (docs/notifications.md, "MQTT"), labelled by broker id.
  const perMqtt = (name: string, help: string, value: (m: MqttStatus) => number | null, counter = false) => {
    const collect = function (this: Gauge | Counter) {
      this.reset();
      for (const m of notifications()?.mqtt ?? []) {
        const v = value(m);
        if (v === null) continue;
        if (this instanceof Gauge) this.set({ mqtt: m.id }, v);
        else this.inc({ mqtt: m.id }, v);
      }
    };
    return counter
      ? new Counter({ name, help, labelNames: ['mqtt'], registers: [registry], collect })
      : new Gauge({ name, help, labelNames: ['mqtt'], registers: [registry], collect });
  };
  perMqtt('vigil_notify_mqtt_connected', 'Whether the MQTT broker is connected (1) or not (0).', (m) => (m.connected ? 1 : 0));
  perMqtt('vigil_notify_mqtt_pending', 'Alerts owed to the MQTT broker (waiting for the connection, to retry, or in flight).', (m) => m.pending);
  perMqtt('vigil_notify_mqtt_delivered_total', 'Alerts the MQTT broker acknowledged since the server started.', (m) => m.delivered, true);
  perMqtt('vigil_notify_mqtt_failed_total', 'Alerts that failed for good at the MQTT broker since the server started.', (m) => m.failed, true);
  perMqtt('vigil_notify_mqtt_retries_total', 'MQTT publish attempts retried since the server started.', (m) => m.retries, true);
  perMqtt('vigil_notify_mqtt_last_success_timestamp_seconds', 'When the MQTT broker last acknowledged an alert (Unix seconds).', (m) => seconds(m.lastSuccess?.at));
  const phases = new Histogram({
    name: 'vigil_question_seconds',
    help: 'Question latency by phase.',
    labelNames: ['phase', 'mode'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const questions = new Counter({ name: 'vigil_questions_total', help: 'Questions by outcome.', labelNames: ['outcome'], registers: [registry] });
  const requests = new Counter({ name: 'vigil_http_requests_total', help: 'HTTP requests by route and status.', labelNames: ['method', 'route', 'status'], registers: [registry] });

  const onQuestion = (event: QuestionEvent) => {
    questions.inc({ outcome: event.outcome });
    if (!event.timing) return;
    const t = event.timing;
    const ms: Record<(typeof PHASES)[number], number> = {
      queue: t.queueMs,
      retrieval: t.retrievalMs,
      load: t.loadMs,
      prefill: t.prefillMs,
      ttft: t.ttftMs,
      decode: t.decodeMs,
      total: t.totalMs,
    };
    for (const phase of PHASES) phases.observe({ phase, mode: event.mode }, ms[phase] / 1000);
  };
  ctx.ready
    .then(() => ctx.peek()?.on('question', onQuestion))
    .catch((e: unknown) => ctx.log(`metrics: question timings not recorded: ${e instanceof Error ? e.message : String(e)}`));

  const httpMetrics: RequestHandler = (req, res, next) => {
    res.on('finish', () => {
      // The matched route pattern, never the raw path (ids would explode the label set).
      const route = (req.route as { path?: string } | undefined)?.path;
      requests.inc({ method: req.method, route: route ? `${req.baseUrl}${route}` : 'unmatched', status: String(res.statusCode) });
    });
    next();
  };
  const handler: RequestHandler = async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  };
  return { registry, httpMetrics, handler };
}

