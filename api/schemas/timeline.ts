import { z } from 'zod';
import { MAX_TIMELINE_ALERTS, MAX_TIMELINE_GAPS, MAX_TIMELINE_SPANS } from '../../src/engine/streamManager.js';

/** Stream seconds in a query string: a plain decimal number >= 0. */
const Seconds = z
  .string()
  .regex(/^\d{1,12}(\.\d{1,9})?$/, 'a number of stream seconds >= 0, e.g. 12 or 12.5')
  .transform(Number);

/** `GET /v1/streams/{id}/timeline?from=&to=`. */
export const TimelineQuery = z
  .strictObject({
    from: Seconds.optional().meta({ description: "Stream time (s) the timeline starts at. Default: the memory's oldest frame." }),
    to: Seconds.optional().meta({ description: "Stream time (s) it ends at. Default: the memory's newest frame." }),
  })
  .refine((q) => q.from === undefined || q.to === undefined || q.from <= q.to, { message: 'from must be <= to', path: ['from'] });

export const TimelineSpanSchema = z
  .strictObject({
    from: z.number().meta({ description: 'Stream time (s) the span starts at.' }),
    to: z.number().meta({ description: 'Stream time (s) it ends at: with frame gating, a chunk spans the unchanged frames it stood for, so a span is a scene.' }),
    chunkId: z.int().meta({ description: 'Its first chunk.' }),
    chunks: z.int().meta({ description: 'Chunks (encoded frames) it covers: 1, or `step` when spans were merged.' }),
    thumbnail: z.string().nullable().meta({ description: 'URL of a stored JPEG showing the span (its first chunk with one); null when none is stored.' }),
  })
  .meta({ description: 'A scene: one chunk, or consecutive chunks merged to bound the response.' });

export const TimelineAlertSchema = z
  .strictObject({
    id: z.string(),
    watchId: z.string(),
    question: z.string().nullable().meta({ description: "The watch's question; a health watch's condition in words (e.g. \"health: offline for more than 30 s\"); null once the watch is deleted." }),
    t: z.number().meta({ description: 'Stream time (s) of the newest frame the check saw.' }),
    wallTime: z.number().meta({ description: 'ms since the epoch.' }),
    answer: z.string(),
  })
  .meta({ description: 'An alert in the range (the full record, with evidence, is at GET /v1/alerts).' });

export const TimelineSchema = z
  .strictObject({
    stream: z.string(),
    from: z.number().meta({ description: 'The range covered (stream s): the one asked, or the whole memory.' }),
    to: z.number(),
    memory: z.strictObject({ from: z.number().nullable(), to: z.number().nullable() }).meta({ description: "The whole memory's reach (null while empty)." }),
    spans: z.array(TimelineSpanSchema).meta({ description: `Scenes overlapping the range, in time order; at most ${MAX_TIMELINE_SPANS}.` }),
    chunks: z.int().meta({ description: 'Chunks overlapping the range.' }),
    step: z.int().meta({ description: 'Consecutive chunks merged into each span (1: a span per chunk).' }),
    truncated: z.boolean().meta({ description: `Spans were merged (step > 1) to stay within ${MAX_TIMELINE_SPANS}.` }),
    gaps: z.array(z.strictObject({ from: z.number(), to: z.number(), reason: z.string() })).meta({ description: `Recorded outages overlapping the range, in time order; at most ${MAX_TIMELINE_GAPS}, the earliest.` }),
    gapsTruncated: z.boolean(),
    alerts: z.array(TimelineAlertSchema).meta({ description: `Alerts in the range, in stream-time order; at most ${MAX_TIMELINE_ALERTS}, the earliest.` }),
    alertsTruncated: z.boolean(),
    tiers: z
      .array(z.strictObject({ tier: z.string().meta({ description: 'Fidelity tier (as the memory horizon).' }), from: z.number(), to: z.number() }))
      .meta({ description: 'Memory tiers over the range (the horizon spans, cut to it), in time order.' }),
  })
  .meta({ description: "A stream's timeline over a range of stream time: scenes, outages, alerts and memory tiers." });
