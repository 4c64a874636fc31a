import { randomUUID } from 'node:crypto';
import express, { Router } from 'express';
import type { StreamQuestion } from '../../src/engine/streamManager.js';
import { isVigilError } from '../../common/errors.js';
import { LIMITS } from '../../common/settings.js';
import { answerJson } from '../answerJson.js';
import type { ServiceContext } from '../context.js';
import { ApiError, toApiError } from '../errors.js';
import { ChatCompletionBody } from '../schemas/chat.js';
import { SseStream } from '../sse.js';
import { parseInput } from '../validate.js';

/**
 * OpenAI-compatible chat completions, so existing OpenAI clients can ask Vigil: `model` names the
 * stream, the last user message is the question (earlier turns are not used: each question is
 * answered from the stream's memory alone). The answer carries its evidence and timing in the extra
 * field `vigil`. `stream: true` sends `chat.completion.chunk` events and `data: [DONE]`, the evidence
 * in the last chunk. `GET /v1/models` lists the streams as models.
 */
export function chatRoutes(ctx: ServiceContext, maxBodyBytes: number): Router {
  const router = Router();

  router.get('/models', (_req, res) => {
    const streams = ctx.manager().list();
    res.json({
      object: 'list',
      data: streams.map((s) => ({ id: s.id, object: 'model', created: Math.floor(Date.parse(s.createdAt) / 1000), owned_by: 'vigil' })),
    });
  });

  router.post('/chat/completions', express.json({ limit: maxBodyBytes }), async (req, res) => {
    const manager = ctx.manager();
    const body = parseInput(ChatCompletionBody, req.body ?? {}, 'body');
    rejectUnsupported(body);
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    const text = lastUser ? contentText(lastUser.content) : '';
    if (!text.trim()) throw new ApiError(400, 'BAD_INPUT', 'messages must contain a user message with text: it is the question');
    const extra = body.vigil ?? {};
    const question: StreamQuestion = {
      question: text.trim(),
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? LIMITS.maxTokens.default,
      ...(extra.mode !== undefined ? { mode: extra.mode } : {}),
      ...(extra.r !== undefined ? { retrieve: extra.r } : {}),
      ...(extra.from !== undefined ? { from: extra.from } : {}),
      ...(extra.to !== undefined ? { to: extra.to } : {}),
      ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
      ...(body.top_p !== undefined ? { topP: body.top_p } : {}),
      ...(body.seed !== undefined ? { seed: body.seed } : {}),
    };
    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;

    if (!body.stream) {
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      const answer = answerJson(await manager.ask(model, question, { signal: abort.signal }));
      res.json({
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: answer.text }, finish_reason: finishReason(answer.stopReason), logprobs: null }],
        usage: { prompt_tokens: answer.contextTokens, completion_tokens: answer.tokens, total_tokens: answer.contextTokens + answer.tokens },
        vigil: { evidence: answer.evidence, skipped: answer.skipped, timing: answer.timing, mode: answer.mode, horizon: answer.horizon, coverage: answer.coverage, outOfMemory: answer.outOfMemory, archive: answer.archive },
      });
      return;
    }

    const sse = new SseStream(res);
    const chunk = (delta: object, finish: string | null, extraFields: object = {}) =>
      sse.send(null, { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...extraFields });
    try {
      const answer = answerJson(
        await manager.ask(model, question, {
          signal: sse.signal,
          onStart: () => chunk({ role: 'assistant', content: '' }, null),
          onText: (piece) => chunk({ content: piece }, null),
        }),
      );
      chunk({}, finishReason(answer.stopReason), {
        usage: { prompt_tokens: answer.contextTokens, completion_tokens: answer.tokens, total_tokens: answer.contextTokens + answer.tokens },
        vigil: { evidence: answer.evidence, skipped: answer.skipped, timing: answer.timing, mode: answer.mode, horizon: answer.horizon, coverage: answer.coverage, outOfMemory: answer.outOfMemory, archive: answer.archive },
      });
      sse.send(null, '[DONE]');
    } catch (error) {
      if (!sse.opened) throw error;
      if (!(isVigilError(error) && error.code === 'CANCELLED')) {
        const { api, unexpected } = toApiError(error);
        if (unexpected) ctx.log(`error in streamed chat completion: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        sse.send(null, { error: { code: api.code, message: api.message } });
      }
    }
    sse.end();
  });

  return router;
}

/**
 * What Vigil cannot do is refused rather than silently ignored: tool calling (the answer comes from
 * the stream's memory, never from a tool) and non-text content parts (the video is the stream: an
 * image or audio part would not be looked at).
 */
function rejectUnsupported(body: { messages: Array<{ content?: unknown }> } & Record<string, unknown>): void {
  for (const field of ['tools', 'functions'] as const) {
    const value = body[field];
    if (value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0)) {
      throw new ApiError(400, 'BAD_INPUT', `invalid body: ${field}: tool calling is not supported; Vigil answers from the stream's memory (remove "${field}")`);
    }
  }
  for (const field of ['tool_choice', 'function_call'] as const) {
    const value = body[field];
    if (value !== undefined && value !== null && value !== 'none') {
      throw new ApiError(400, 'BAD_INPUT', `invalid body: ${field}: tool calling is not supported; Vigil answers from the stream's memory (remove "${field}")`);
    }
  }
  body.messages.forEach((message, i) => {
    if (!Array.isArray(message.content)) return;
    message.content.forEach((part: { type?: unknown }, j) => {
      if (part.type !== 'text') {
        throw new ApiError(
          400,
          'BAD_INPUT',
          `invalid body: messages.${i}.content.${j}: content parts of type "${String(part.type)}" are not supported; send text only (the video is the stream named by "model")`,
        );
      }
    });
  });
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .filter((p): p is { type: string; text: string } => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text' && typeof (p as { text?: unknown }).text === 'string')
      .map((p) => p.text)
      .join('\n');
  }
  return '';
}

function finishReason(stop: 'eos' | 'max_new_tokens'): 'stop' | 'length' {
  return stop === 'eos' ? 'stop' : 'length';
}
