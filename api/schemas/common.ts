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
