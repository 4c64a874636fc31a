import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import { DEFAULT_MAX_EVENTS, DEFAULT_SUMMARY_QUESTION, MAX_SUMMARY_EVENTS } from '../../src/engine/streamManager.js';
import { CoverageSchema, GapEvidence } from './questions.js';

/** `POST /v1/streams/{id}/summaries`. */
export const SummaryBody = z
  .strictObject({
    from: z.number().min(0).meta({ description: 'Start of the range, stream seconds.' }),
    to: z.number().min(0).meta({ description: 'End of the range, stream seconds (>= from).' }),
    maxEvents: z
      .int()
      .min(1)
      .max(MAX_SUMMARY_EVENTS)
      .optional()
      .meta({ description: `Events at most (scenes are merged across their weakest boundaries to fit). Default ${DEFAULT_MAX_EVENTS}.` }),
    question: Settings.question.optional().meta({ description: `Asked of every event, restricted to its span. Default "${DEFAULT_SUMMARY_QUESTION}"` }),
    maxTokens: Settings.maxTokens.optional(),
  })
  .refine((b) => b.from <= b.to, { message: 'from must be <= to', path: ['from'] })
  .meta({ description: 'A time range to summarize.' });

export const SummaryEvidence = z
  .strictObject({
    chunkId: z.int(),
    t: z.number().meta({ description: 'Stream time (s) of the frame.' }),
    tEnd: z.number().meta({ description: 'End of its span (with frame gating, the unchanged frames it covers).' }),
    score: z.number().meta({ description: 'Mean retrieval score over the layers that retrieved it.' }),
    thumbnail: z.string().nullable().meta({ description: 'URL of the stored JPEG of the frame; null when there is none.' }),
  })
  .meta({ description: "A chunk the event's text was generated from." });

const EventStart = z.enum(['range-start', 'change', 'gate', 'gap']);

export const SummaryEventSchema = z
  .strictObject({
    from: z.number().meta({ description: "Stream time (s): the event's first chunk's start (clipped to the range)." }),
    to: z.number().meta({ description: "Its last chunk's end (clipped to the range)." }),
    text: z.string().meta({ description: 'What the model generated for this span.' }),
    stopReason: z.enum(['eos', 'max_new_tokens']),
    chunks: z.int().meta({ description: 'Chunks of memory in the span (samples, for a range of more than 4096 chunks).' }),
    startedBy: EventStart.meta({ description: 'range-start; change: the frames\' keys moved past the calibrated threshold; gate: frame gating saw the picture change after a still scene; gap: after an outage.' }),
    evidence: z.array(SummaryEvidence).meta({ description: 'The chunks retrieval chose for the answer, in time order (sink frames, in every context, are not listed).' }),
  })
  .meta({ description: 'An event: a span of the range and what the model says happens in it.' });

export const SummaryEntrySchema = z.xor([SummaryEventSchema, GapEvidence]).meta({ description: 'An event, or an outage inside the range.' });

const Segmentation = z.strictObject({
  method: z.enum(['gate+keys', 'keys']).meta({ description: "gate+keys: frame gating's spans and the frames' key distances; keys: key distances only (gating off, or a sampled range)." }),
  chunks: z.int().meta({ description: 'Chunks compared.' }),
  sampled: z.boolean().meta({ description: 'The range held more than 4096 chunks: every k-th was compared.' }),
  threshold: z.number().meta({ description: 'Calibrated distance of consecutive chunks above which the scene changed.' }),
  changes: z.int().meta({ description: 'Scene changes found before short scenes were merged and maxEvents applied.' }),
  gapsTruncated: z.boolean().meta({ description: 'More outages lie in the range than are listed (64).' }),
});

export const SummarySchema = z
  .strictObject({
    streamId: z.string(),
    from: z.number(),
    to: z.number(),
    question: z.string(),
    events: z.array(SummaryEntrySchema).meta({ description: 'Events and outages, in time order.' }),
    note: z.string().nullable().meta({ description: 'Why there are no events (memory holds none of the range, or no frame lies in it); null otherwise.' }),
    coverage: CoverageSchema,
    segmentation: Segmentation,
    timing: z.strictObject({
      segmentMs: z.number().meta({ description: 'Reading the range and cutting it into events (no model call).' }),
      queueMs: z.number().meta({ description: 'Waiting for the model, summed over events.' }),
      modelMs: z.number().meta({ description: "The events' answers on the model, summed." }),
      totalMs: z.number(),
    }),
  })
  .meta({ description: 'A summary of a time range: its events in time order, each described by the model with evidence.' });

export const SummaryPlanSchema = z
  .strictObject({
    events: z.array(z.strictObject({ from: z.number(), to: z.number(), chunks: z.int(), startedBy: EventStart })),
    gaps: z.array(GapEvidence.shape.gap),
    segmentation: Segmentation,
  })
  .meta({ description: 'The events found, sent first on the event stream, before any model call.' });
