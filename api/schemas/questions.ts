import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import { ModeEnum } from './common.js';

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
    stream: z.boolean().optional().meta({ description: 'Answer as Server-Sent Events: token events, then one evidence event.' }),
  })
  .refine((q) => q.from === undefined || q.to === undefined || q.from <= q.to, { message: 'from must be <= to', path: ['from'] });

export const Evidence = z
  .strictObject({
    chunkId: z.int(),
    tStart: z.number().meta({ description: 'Stream time (s).' }),
    tEnd: z.number(),
    layers: z.int().meta({ description: 'Layers that retrieved this chunk.' }),
    score: z.number().meta({ description: 'Mean retrieval score over those layers.' }),
    thumbnail: z.string().nullable().meta({ description: 'URL of the stored JPEG of the frame.' }),
  });

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

export const AnswerSchema = z
  .strictObject({
    streamId: z.string(),
    question: z.string(),
    text: z.string(),
    mode: ModeEnum,
    stopReason: z.enum(['eos', 'max_new_tokens']),
    evidence: z.array(Evidence),
    tokens: z.int(),
    contextTokens: z.int(),
    timing: Timing,
  });
