import { z } from 'zod';
import type { AnswerMode } from '../../src/engine/streamManager.js';

/** `{error:{code,message}}`: the body of every error response. */
export const ErrorBody = z
  .strictObject({
    error: z.strictObject({
      code: z.string().meta({ description: 'Stable machine-readable code, e.g. BAD_INPUT, STREAM_NOT_FOUND, OVERLOADED.' }),
      message: z.string().meta({ description: 'What went wrong, for a person.' }),
    }),
  });

export const StreamId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'use 1-64 letters, digits, "-" or "_", starting with a letter or digit')
  .meta({ description: 'Stream id: 1-64 of [A-Za-z0-9_-].', example: 'front-door' });

export const ModeEnum = z.enum(['rekv', 'window', 'full', 'uniform', 'oracle'] satisfies AnswerMode[]);

const HorizonGap = z.strictObject({ from: z.number(), to: z.number(), reason: z.string() });

/** How far back a stream's memory reaches (src/engine/memoryHorizon.ts): status `memory.horizon` and every answer's `horizon`. */
export const HorizonSchema = z
  .strictObject({
    from: z.number().nullable().meta({ description: 'Stream time (s) of the oldest chunk memory holds; null while empty.' }),
    to: z.number().nullable().meta({ description: "Stream time (s) the newest chunk reaches (with frame gating, its extended span's end)." }),
    spans: z
      .array(
        z.strictObject({
          tier: z.string().meta({ description: 'Fidelity tier: kv-float32, kv-float16, kv-int8 today; kv-4bit and archive (no KV, re-encoded on demand) as they are added. A string, not an enum: new tiers are not an API change.' }),
          from: z.number(),
          to: z.number(),
          chunks: z.int(),
        }),
      )
      .meta({ description: 'from..to split by fidelity tier, in time order.' }),
    gaps: z.array(HorizonGap).meta({ description: 'Recorded outages inside from..to, in time order (at most 256, the oldest).' }),
    gapsTruncated: z.boolean().meta({ description: 'More outages lie inside the horizon than gaps lists (memory.gaps counts them all).' }),
    forgottenBefore: z.number().nullable().meta({ description: 'Stream time (s) up to which retention (the disk budget, maxBytes, age) deleted history; null when nothing was deleted.' }),
    forgottenChunks: z.int().meta({ description: 'Chunks retention deleted.' }),
  })
  .meta({ description: 'The memory horizon: what memory holds, from when to when, at which fidelity, with its outages and what was forgotten.' });
