import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import { HorizonSchema, ModeEnum } from './common.js';
import { ArchiveSchema, CoverageSchema, Evidence, questionFields, Skipped, Timing } from './questions.js';

const ContentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

/**
 * OpenAI's chat completion request, the parts Vigil uses. `model` names a stream; the question is the
 * last user message. Unknown fields are accepted (clients send `user`, `stream_options`, ...).
 */
export const ChatCompletionBody = z
  .looseObject({
    model: z.string().min(1).meta({ description: 'The stream id to ask.' }),
    messages: z
      .array(
        z.looseObject({
          role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
          content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
        }),
      )
      .min(1),
    stream: z.boolean().optional(),
    max_tokens: Settings.maxTokens.optional(),
    max_completion_tokens: Settings.maxTokens.optional(),
    temperature: Settings.temperature.optional(),
    top_p: Settings.topP.optional(),
    seed: z.int().optional(),
    n: z.literal(1).optional(),
    vigil: z.strictObject(questionFields).optional().meta({ description: 'Vigil extras: retrieval mode, r, time range.' }),
  });

export const ChatCompletionResponse = z
  .strictObject({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.int(),
    model: z.string(),
    choices: z.array(
      z.strictObject({
        index: z.int(),
        message: z.strictObject({ role: z.literal('assistant'), content: z.string() }),
        finish_reason: z.enum(['stop', 'length']),
        logprobs: z.null(),
      }),
    ),
    usage: z.strictObject({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() }),
    vigil: z.strictObject({ evidence: z.array(Evidence), skipped: z.array(Skipped), timing: Timing, mode: ModeEnum, horizon: HorizonSchema, coverage: CoverageSchema.nullable(), outOfMemory: z.boolean(), archive: ArchiveSchema }).meta({ description: 'Evidence (chunks and outages), skipped damaged chunks, timing and the archive report (Vigil extension).' }),
  });

export const ModelList = z.strictObject({
  object: z.literal('list'),
  data: z.array(z.strictObject({ id: z.string(), object: z.literal('model'), created: z.int(), owned_by: z.string() })),
});
