import express, { Router } from 'express';
import { isVigilError } from '../../common/errors.js';
import type { StreamQuestion } from '../../src/engine/streamManager.js';
import { answerJson } from '../answerJson.js';
import type { ServiceContext } from '../context.js';
import { toApiError } from '../errors.js';
import { QuestionBody } from '../schemas/questions.js';
import { SseStream } from '../sse.js';
import { parseInput } from '../validate.js';

/**
 * `POST /v1/streams/:id/questions`: a JSON answer with evidence and timing, or with `stream: true`
 * Server-Sent Events: `progress` events ({phase: 'reencode', done, total}) while archived frames are
 * re-encoded, `token` events ({text}) as the answer decodes, then one `evidence` event with
 * the whole answer (text, evidence, timing); `error` if it fails after streaming began. A client that
 * disconnects cancels its question.
 */
export function questionRoutes(ctx: ServiceContext, maxBodyBytes: number): Router {
  const router = Router();
  router.post('/streams/:id/questions', express.json({ limit: maxBodyBytes }), async (req, res) => {
    const manager = ctx.manager();
    const body = parseInput(QuestionBody, req.body ?? {}, 'body');
    const question: StreamQuestion = {
      question: body.question,
      ...(body.mode !== undefined ? { mode: body.mode } : {}),
      ...(body.r !== undefined ? { retrieve: body.r } : {}),
      ...(body.from !== undefined ? { from: body.from } : {}),
      ...(body.to !== undefined ? { to: body.to } : {}),
      ...(body.maxTokens !== undefined ? { maxTokens: body.maxTokens } : {}),
      ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
      ...(body.topP !== undefined ? { topP: body.topP } : {}),
      ...(body.seed !== undefined ? { seed: body.seed } : {}),
      ...(body.maxReencode !== undefined ? { maxReencode: body.maxReencode } : {}),
    };
    if (!body.stream) {
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      res.json(answerJson(await manager.ask(req.params.id, question, { signal: abort.signal })));
      return;
    }
    const sse = new SseStream(res);
    try {
      const answer = await manager.ask(req.params.id, question, {
        signal: sse.signal,
        onStart: () => sse.open(),
        onText: (text) => sse.send('token', { text }),
        onProgress: (progress) => sse.send('progress', progress),
      });
      sse.send('evidence', answerJson(answer));
    } catch (error) {
      if (!sse.opened) throw error;
      if (!(isVigilError(error) && error.code === 'CANCELLED')) {
        const { api, unexpected } = toApiError(error);
        if (unexpected) ctx.log(`error in streamed answer: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        sse.send('error', { error: { code: api.code, message: api.message } });
      }
    }
    sse.end();
  });
  return router;
}
