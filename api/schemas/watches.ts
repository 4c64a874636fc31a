import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import {
  DEFAULT_COOLDOWN_SEC,
  DEFAULT_HEALTH_COOLDOWN_SEC,
  DEFAULT_MAX_INTERVAL_SEC,
  HEALTH_CONDITIONS,
  type HealthCondition,
  MAX_ALERTS_PER_STREAM,
  MAX_HEALTH_THRESHOLD_SEC,
  MIN_HEALTH_THRESHOLD_SEC,
  MAX_PATTERN_CHARS,
  MAX_WATCH_NOTIFY,
  MAX_WATCH_SECONDS,
  MAX_WATCHES,
  WATCH_TRIGGERS,
  type WatchTrigger,
} from '../../src/engine/streamManager.js';
import { StreamId } from './common.js';

const Trigger = z.enum(WATCH_TRIGGERS as [WatchTrigger, ...WatchTrigger[]]);

const WebhookId = z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'a webhook or MQTT broker id: 1-64 letters, digits, ".", "_", "-" or ":"');

const Notify = z
  .array(WebhookId)
  .max(MAX_WATCH_NOTIFY)
  .optional()
  .meta({ description: "Ids of the server's webhooks and MQTT brokers (vigil.yaml `webhooks`, `mqtt`) that get this watch's alerts; an unknown id is a 400. Absent or empty: none (the alert is still listed and streamed)." });

/** `POST /v1/streams/{id}/watches`. The engine checks the spec again (the pattern compiles, it goes with answer-matches only). */
export const CreateWatchBody = z
  .strictObject({
    kind: z.literal('question').optional().meta({ description: "'question' (the default); a health watch has kind 'health' (CreateHealthWatch)." }),
    question: Settings.question,
    trigger: Trigger.meta({ description: 'yes: the answer starts with "yes" (alerts on the rising edge); answer-matches: pattern matches the answer (rising edge); answer-changes: the answer differs from the previous check\'s.' }),
    pattern: z
      .string()
      .min(1)
      .max(MAX_PATTERN_CHARS)
      .optional()
      .meta({ description: `answer-matches only (required there): a JavaScript regular expression, matched case-insensitively; at most ${MAX_PATTERN_CHARS} characters.` }),
    cooldownSec: z
      .number()
      .min(0)
      .max(MAX_WATCH_SECONDS)
      .optional()
      .meta({ description: `Stream seconds after an alert during which this watch does not alert again. Default ${DEFAULT_COOLDOWN_SEC}.` }),
    maxIntervalSec: z
      .number()
      .min(1)
      .max(MAX_WATCH_SECONDS)
      .optional()
      .meta({ description: `A model check at least every this many stream seconds, whatever the prefilter says. Default ${DEFAULT_MAX_INTERVAL_SEC}.` }),
    notify: Notify,
  })
  .meta({ description: `A standing question on the stream (at most ${MAX_WATCHES} watches of both kinds per stream).` });

const Condition = z.enum(HEALTH_CONDITIONS as [HealthCondition, ...HealthCondition[]]);
const CONDITION_TEXT =
  'offline: a live source delivers no frame (connecting, backing off, failed, ended) for longer than thresholdSec; frozen: a live source delivers identical frames for longer than thresholdSec; lag: ingest is more than thresholdSec behind the live source.';

/** `POST /v1/streams/{id}/watches` with kind 'health': a watch on the stream's own health, no model. */
export const CreateHealthWatchBody = z
  .strictObject({
    kind: z.literal('health'),
    condition: Condition.meta({ description: CONDITION_TEXT }),
    thresholdSec: z
      .number()
      .min(MIN_HEALTH_THRESHOLD_SEC)
      .max(MAX_HEALTH_THRESHOLD_SEC)
      .meta({ description: 'offline / frozen: seconds the condition must last before the alert; lag: the lag in seconds.' }),
    cooldownSec: z
      .number()
      .min(0)
      .max(MAX_WATCH_SECONDS)
      .optional()
      .meta({ description: `Wall seconds after a raised alert before this watch raises again. Default ${DEFAULT_HEALTH_COOLDOWN_SEC}.` }),
    notify: Notify,
  })
  .meta({ description: `A health watch: alerts when the condition starts (lasted past thresholdSec) and when it clears (counted among the ${MAX_WATCHES} watches per stream).` });

const Count = z.int().min(0);

export const WatchStatsSchema = z
  .strictObject({
    framesScored: Count.meta({ description: "Encoded frames the prefilter scored against this watch's question." }),
    deferred: Count.meta({ description: "Checks this watch asked for that waited for the next frame: the stream's check queue was full." }),
    checks: Count.meta({ description: 'Model checks run.' }),
    checksByReason: z
      .strictObject({ first: Count, score: Count, interval: Count, 'left-window': Count })
      .meta({ description: "first: the watch's first frame; score: the prefilter saw the frame change for this question; interval: maxIntervalSec passed; left-window: a frame that asked for a check left the context." }),
    alerts: Count.meta({ description: 'Alerts raised.' }),
    suppressed: Count.meta({ description: 'Alerts the cooldown held back.' }),
    errors: Count.meta({ description: 'Prefilter or check failures (ingest went on).' }),
    lastError: z.string().nullable().meta({ description: 'The newest failure (null: none).' }),
    prefilterMs: z.number().meta({ description: "Mean prefilter time per encoded frame, all the stream's question watches together, ms." }),
  })
  .meta({ description: "A question watch's counters since the stream's memory opened (a restart starts them at 0); all 0 for an inactive watch." });

export const HealthWatchStatsSchema = z
  .strictObject({
    judged: z.boolean().meta({ description: 'The stream is judged now: a live source it is meant to be ingesting (false: stopped by a caller, a file, or an HTTP/HLS source not yet found live).' }),
    raised: z.boolean().meta({ description: 'The condition was raised and has not cleared (held across a restart).' }),
    since: z.number().nullable().meta({ description: 'While raised: when the condition began, ms since the epoch; else null.' }),
    answer: z.string().nullable().meta({ description: "While raised: the raising alert's answer; else null." }),
    lastAlertAt: z.number().nullable().meta({ description: "Wall time of the watch's newest alert (raised or cleared), ms since the epoch; null: none." }),
  })
  .meta({ description: 'What the health monitor knows of a health watch now.' });

export const WatchSchema = z
  .strictObject({
    id: z.string(),
    stream: z.string().meta({ description: 'Stream id.' }),
    question: z.string(),
    trigger: Trigger,
    pattern: z.string().optional().meta({ description: 'answer-matches only.' }),
    cooldownSec: z.number(),
    maxIntervalSec: z.number(),
    notify: z.array(z.string()).optional().meta({ description: 'Webhook and MQTT broker ids its alerts are delivered to (absent: none).' }),
    createdAt: z.number().meta({ description: 'Wall time of creation, ms since the epoch.' }),
    active: z.boolean().meta({ description: 'False for a persisted watch whose question could not be turned into queries when the stream reopened: it does not check (the server log says why).' }),
    stats: WatchStatsSchema,
  })
  .meta({ description: 'A watch.' });

export const HealthWatchSchema = z
  .strictObject({
    id: z.string(),
    stream: z.string().meta({ description: 'Stream id.' }),
    kind: z.literal('health'),
    condition: Condition,
    thresholdSec: z.number(),
    cooldownSec: z.number(),
    notify: z.array(z.string()).optional().meta({ description: 'Webhook and MQTT broker ids its alerts are delivered to (absent: none).' }),
    createdAt: z.number().meta({ description: 'Wall time of creation, ms since the epoch.' }),
    active: z.boolean().meta({ description: 'Always true (a health watch needs no model).' }),
    stats: HealthWatchStatsSchema,
  })
  .meta({ description: 'A health watch.' });

export const WatchList = z.strictObject({ watches: z.array(z.union([WatchSchema, HealthWatchSchema])).meta({ description: 'Both kinds, in creation order (a health watch has kind "health").' }) });

export const AlertEvidence = z
  .strictObject({
    chunkId: z.int(),
    t: z.number().meta({ description: 'Stream time (s) of the frame.' }),
    tEnd: z.number(),
    score: z.number().meta({ description: "Sum over layers of the question's query against the frame's keys." }),
    change: z.number().meta({ description: "How far the frame's score moved from the last check's, in noise units (max over layers); 0 at a watch's first frame." }),
    thumbnail: z.string().nullable().meta({ description: 'URL of the stored JPEG of the frame (GET /v1/streams/{id}/frames/{chunkId}.jpg); null when the stream has none. Added by the API: webhook bodies carry the alert as stored, without it.' }),
  })
  .meta({ description: 'A frame that made the prefilter ask for the check (or, for a forced check, the newest frame).' });

export const AlertSchema = z
  .strictObject({
    id: z.string(),
    watchId: z.string(),
    stream: z.string(),
    t: z.number().meta({ description: 'Stream time (s) of the newest frame the check saw.' }),
    wallTime: z.number().meta({ description: 'Wall time of that frame, ms since the epoch.' }),
    answer: z.string(),
    evidence: z.array(AlertEvidence),
    checkMs: z.number().meta({ description: "The model check's duration, ms." }),
    previousAnswer: z.string().nullable().meta({ description: "The previous check's answer (null at the first check); a health alert that clears: the raised alert's answer." }),
    health: z
      .strictObject({
        condition: Condition,
        resolved: z.boolean().meta({ description: 'false: the condition started (lasted past the threshold); true: it cleared.' }),
        since: z.number().meta({ description: 'Wall time the condition began, ms since the epoch.' }),
        durationSec: z.number().meta({ description: 'How long it had lasted at this alert, seconds.' }),
      })
      .optional()
      .meta({ description: 'Health watches only (absent on a question watch alert). Their answer is a short sentence ("offline for 42 s (connection refused)", "back online after 3 m 10 s"), checkMs 0, evidence the newest stored frame or none.' }),
  })
  .meta({ description: `An alert: a watch whose check met its trigger, or a health condition that started or cleared. A stream keeps its newest ${MAX_ALERTS_PER_STREAM}.` });

export const AlertList = z.strictObject({
  alerts: z.array(AlertSchema).meta({ description: 'In time order (wallTime, then t).' }),
  truncated: z.boolean().meta({ description: 'More alerts matched than limit.' }),
});

export const ALERT_LIMIT = { default: 100, max: 1000 } as const;

/** ms since the epoch (digits) or an ISO 8601 date-time. */
const Since = z
  .string()
  .refine((v) => /^\d{1,16}$/.test(v) || (/^\d{4}-\d{2}-\d{2}T/.test(v) && Number.isFinite(Date.parse(v))), 'use ms since the epoch or an ISO 8601 date-time, e.g. 2026-12-05T08:00:00Z')
  .transform((v) => (/^\d+$/.test(v) ? Number(v) : Date.parse(v)));

export const AlertQuerySchema = z.strictObject({
  stream: StreamId.optional(),
  since: Since.optional(),
  limit: z
    .string()
    .regex(/^\d{1,7}$/, 'a whole number')
    .transform(Number)
    .pipe(z.int().min(1).max(ALERT_LIMIT.max))
    .optional(),
});

export const AlertEventsQuery = z.strictObject({ stream: StreamId.optional() });

const Outcome = z.strictObject({ at: z.string().meta({ description: 'ISO 8601 time.' }), alertId: z.string() });

export const WebhookStatusSchema = z
  .strictObject({
    id: z.string(),
    target: z.string().meta({ description: "The receiver's scheme, host and port (never its path, query or secret)." }),
    pending: z.int().meta({ description: 'Alerts owed to this webhook (queued, waiting to retry or in flight).' }),
    inFlight: z.int(),
    delivered: z.int().meta({ description: 'Deliveries answered 2xx since the server started.' }),
    failed: z.int().meta({ description: 'Permanent failures (4xx, redirects, attempts exhausted) since the server started.' }),
    refused: z.int().meta({ description: 'Deliveries the outbound address policy refused (nothing connected to).' }),
    retries: z.int(),
    lastSuccess: z.strictObject({ ...Outcome.shape, status: z.int() }).nullable(),
    lastFailure: z.strictObject({ ...Outcome.shape, reason: z.string(), status: z.int().optional(), final: z.boolean() }).nullable(),
  })
  .meta({ description: 'One webhook: delivery counts since the server started, the last success and failure.' });

export const MqttStatusSchema = z
  .strictObject({
    id: z.string(),
    target: z.string().meta({ description: "The broker's scheme, host and port (never credentials)." }),
    topicPrefix: z.string().meta({ description: 'Alerts go to <topicPrefix>/<stream>/alerts.' }),
    qos: z.union([z.literal(0), z.literal(1)]),
    connected: z.boolean(),
    lastConnected: z.string().nullable().meta({ description: 'ISO 8601 time of the last successful connection.' }),
    connectionError: z.string().nullable().meta({ description: 'Why the connection is down (null while connected).' }),
    pending: z.int().meta({ description: 'Alerts owed to this broker (waiting for the connection, to retry, or in flight).' }),
    inFlight: z.int(),
    delivered: z.int().meta({ description: 'Alerts the broker acknowledged (QoS 1: PUBACK) since the server started.' }),
    failed: z.int(),
    retries: z.int(),
    lastSuccess: Outcome.nullable(),
    lastFailure: z.strictObject({ ...Outcome.shape, reason: z.string(), final: z.boolean() }).nullable(),
  })
  .meta({ description: 'One MQTT broker: its connection, delivery counts since the server started, the last success and failure.' });

export const NotificationsSchema = z
  .strictObject({
    enabled: z.boolean().meta({ description: 'False when the server has no webhook or MQTT broker configured (alerts go to /v1/alerts and the event stream only).' }),
    queueDepth: z.int().meta({ description: 'Alerts in the persisted outbox (owed to at least one webhook or broker).' }),
    maxEntries: z.int().meta({ description: 'Outbox bound: one more alert drops the oldest (0 when not enabled).' }),
    dropped: z.int().meta({ description: 'Alerts dropped because the outbox was full, over its life.' }),
    webhooks: z.array(WebhookStatusSchema),
    mqtt: z.array(MqttStatusSchema),
  })
  .meta({ description: 'Webhook and MQTT notification status (GET /v1/notifications).' });
