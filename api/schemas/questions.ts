import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import { HorizonSchema, ModeEnum } from './common.js';
import { DEFAULT_MAX_REENCODE, MAX_REENCODE_LIMIT } from '../../src/engine/archiveRecall.js';

export const questionFields = {
  mode: ModeEnum.optional().meta({ description: 'rekv (retrieval, default), window, full, uniform, or oracle (from/to = the ground-truth interval).' }),
  r: Settings.r.optional(),
  from: z.number().min(0).optional().meta({ description: 'Only memory from this stream time (s).' }),
  to: z.number().min(0).optional().meta({ description: 'Only memory up to this stream time (s).' }),
};

export const QuestionBody = z
  .strictObject({
    question: Settings.question,
    ...questionFields,
    maxTokens: Settings.maxTokens.optional(),
    temperature: Settings.temperature.optional(),
    topP: Settings.topP.optional(),
    seed: z.int().optional(),
    maxReencode: z
      .int()
      .min(0)
      .max(MAX_REENCODE_LIMIT)
      .optional()
      .meta({ description: `rekv: archived frames (kept as stills, no KV) re-encoded at most for this answer, the best scored; each costs one frame's encode. Default ${DEFAULT_MAX_REENCODE}; 0 leaves the archive out.` }),
    stream: z.boolean().optional().meta({ description: 'Answer as Server-Sent Events: progress events while archived frames are re-encoded, token events, then one evidence event.' }),
  })
  .refine((q) => q.from === undefined || q.to === undefined || q.from <= q.to, { message: 'from must be <= to', path: ['from'] });

export const ChunkEvidence = z
  .strictObject({
    chunkId: z.int(),
    tStart: z.number().meta({ description: 'Stream time (s).' }),
    tEnd: z.number(),
    layers: z.int().meta({ description: 'Layers that retrieved this chunk.' }),
    score: z.number().meta({ description: 'Mean retrieval score over those layers.' }),
    thumbnail: z.string().nullable().meta({ description: 'URL of the stored JPEG of the frame.' }),
  })
  .meta({ description: 'A retrieved chunk (frame).' });

export const GapEvidence = z
  .strictObject({
    gap: z.strictObject({
      from: z.number().meta({ description: 'Stream time (s) of the last frame before the outage.' }),
      to: z.number().meta({ description: 'Stream time (s) of the first frame after it.' }),
      reason: z.string().meta({ description: 'Why there are no frames, e.g. the camera was unreachable, the service was stopped, the disk was full.' }),
    }),
  })
  .meta({ description: 'An outage in the searched time range: the memory has no frames between from and to.' });

export const Evidence = z.xor([ChunkEvidence, GapEvidence]).meta({ description: 'A retrieved chunk, or an outage in the searched time range.' });

export const Skipped = z
  .strictObject({
    t: z.number().nullable().meta({ description: 'Stream time (s) of the damaged chunk; null when even its time could not be read.' }),
    reason: z.string(),
  })
  .meta({ description: 'A damaged chunk the answer had to leave out.' });

export const Timing = z
  .strictObject({
    queueMs: z.number(),
    retrievalMs: z.number(),
    loadMs: z.number(),
    prefillMs: z.number(),
    ttftMs: z.number(),
    decodeMs: z.number(),
    totalMs: z.number(),
    decodeTokensPerSecond: z.number(),
  });

export const CoverageSchema = z
  .strictObject({
    from: z.number(),
    to: z.number(),
    missing: z
      .array(
        z.strictObject({
          from: z.number(),
          to: z.number(),
          reason: z.enum(['before-horizon', 'gap', 'after-horizon']).meta({ description: 'before-horizon: forgotten (or before the first frame); gap: a recorded outage; after-horizon: not seen yet.' }),
          detail: z.string().nullable().meta({ description: "The outage's reason (gap), else null." }),
        }),
      )
      .meta({ description: 'The parts of the asked range memory does not hold, in time order.' }),
    outOfMemory: z.boolean().meta({ description: 'Memory holds none of the range: text is the statement, no model ran.' }),
    note: z.string().nullable().meta({ description: 'A sentence saying what is not held; null when all of it is.' }),
  })
  .meta({ description: 'How much of the asked time range (from/to) memory holds.' });

export const ArchiveSchema = z
  .strictObject({
    retrieved: z.int().meta({ description: 'Archived chunks (no KV, only their still) retrieval chose.' }),
    reencoded: z.int().meta({ description: 'Of them, re-encoded through the model into the answer context.' }),
    skipped: z.int().meta({ description: 'Left out: past maxReencode or without a readable still (their places went to chunks that hold KV).' }),
    reencodeMs: z.number(),
  })
  .meta({ description: 'What the answer did with the archive tier.' });

export const AnswerSchema = z
  .strictObject({
    streamId: z.string(),
    question: z.string(),
    text: z.string(),
    mode: ModeEnum,
    stopReason: z.enum(['eos', 'max_new_tokens']),
    evidence: z.array(Evidence).meta({ description: 'Retrieved chunks and the outages in the searched time range, in stream time order.' }),
    skipped: z.array(Skipped).meta({ description: 'Damaged chunks left out of the answer (it was answered from the rest).' }),
    tokens: z.int(),
    contextTokens: z.int(),
    timing: Timing,
    // The memory the question was answered over (a named schema: no .meta() here, which would copy it).
    horizon: HorizonSchema,
    coverage: CoverageSchema.nullable().meta({ description: 'With from/to: what of that range memory holds; null without a range.' }),
    outOfMemory: z.boolean().meta({ description: 'Memory holds nothing of the asked range (before the horizon, inside an outage, or not seen yet): text says so and no model call was made. Still HTTP 200.' }),
    archive: ArchiveSchema,
  });
