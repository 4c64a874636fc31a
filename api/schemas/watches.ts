import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import {
  DEFAULT_COOLDOWN_SEC,
  DEFAULT_MAX_INTERVAL_SEC,
  MAX_PATTERN_CHARS,
  MAX_WATCH_SECONDS,
  MAX_WATCHES,
  WATCH_TRIGGERS,
  type WatchTrigger,
} from '../../src/engine/streamManager.js';
import { StreamId } from './common.js';

const Trigger = z.enum(WATCH_TRIGGERS as [WatchTrigger, ...WatchTrigger[]]);

/** `POST /v1/streams/{id}/watches`. The engine checks the spec again (the pattern compiles, it goes with answer-matches only). */
export const CreateWatchBody = z
  .strictObject({
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
  })
  .meta({ description: `A standing question on the stream (at most ${MAX_WATCHES} per stream). Notifications (a notify field) are not part of the API yet.` });

export const WatchSchema = z
  .strictObject({
    id: z.string(),
    stream: z.string().meta({ description: 'Stream id.' }),
    question: z.string(),
    trigger: Trigger,
    pattern: z.string().optional().meta({ description: 'answer-matches only.' }),
    cooldownSec: z.number(),
    maxIntervalSec: z.number(),
    createdAt: z.number().meta({ description: 'Wall time of creation, ms since the epoch.' }),
    active: z.boolean().meta({ description: 'False for a persisted watch whose question could not be turned into queries when the stream reopened: it does not check (the server log says why).' }),
  })
  .meta({ description: 'A watch.' });

export const WatchList = z.strictObject({ watches: z.array(WatchSchema) });

export const AlertEvidence = z
  .strictObject({
    chunkId: z.int(),
    t: z.number().meta({ description: 'Stream time (s) of the frame.' }),
    tEnd: z.number(),
    score: z.number().meta({ description: "Sum over layers of the question's query against the frame's keys." }),
    change: z.number().meta({ description: "How far the frame's score moved from the last check's, in noise units (max over layers); 0 at a watch's first frame." }),
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
    previousAnswer: z.string().nullable().meta({ description: "The previous check's answer (null at the first check)." }),
  })
  .meta({ description: 'An alert: a watch whose check met its trigger.' });

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
