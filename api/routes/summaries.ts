import express, { Router } from 'express';
import { isVigilError } from '../../common/errors.js';
import { isSummaryGap, type SummaryRequest } from '../../src/engine/streamManager.js';
import type { ServiceContext } from '../context.js';
import { toApiError } from '../errors.js';
import { SummaryBody } from '../schemas/summaries.js';
import { SseStream } from '../sse.js';
import { summaryEntryJson, summaryJson } from '../summaryJson.js';
import { parseInput } from '../validate.js';

/**
 * `POST /v1/streams/:id/summaries`: the events of a time range, each described by the model, as one
 * JSON summary; or, with `Accept: text/event-stream`, Server-Sent Events: `plan` (the events and
 * outages found, before any model call), then one `event` per event as its text is done and one
 * `gap` per outage, in time order, then `summary` (the whole summary); `error` if it fails after the
 * stream began. A client that disconnects cancels the summary (the event being answered stops at
 * its next token, the rest never run).
 */
export function summaryRoutes(ctx: ServiceContext, maxBodyBytes: number): Router {
  const router = Router();
  router.post('/streams/:id/summaries', express.json({ limit: maxBodyBytes }), async (req, res) => {
    const manager = ctx.manager();
    const body = parseInput(SummaryBody, req.body ?? {}, 'body');
    const id = req.params.id;
    const request: SummaryRequest = {
      from: body.from,
      to: body.to,
      ...(body.maxEvents !== undefined ? { maxEvents: body.maxEvents } : {}),
      ...(body.question !== undefined ? { question: body.question } : {}),
      ...(body.maxTokens !== undefined ? { maxTokens: body.maxTokens } : {}),
    };
    if (!(req.get('accept') ?? '').includes('text/event-stream')) {
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      res.json(summaryJson(await manager.summarize(id, request, { signal: abort.signal })));
      return;
    }
    const sse = new SseStream(res);
    try {
      const summary = await manager.summarize(id, request, {
        signal: sse.signal,
        onPlan: (plan) => sse.send('plan', plan),
        onEntry: (entry) => sse.send(isSummaryGap(entry) ? 'gap' : 'event', summaryEntryJson(id, entry)),
      });
      sse.send('summary', summaryJson(summary));
    } catch (error) {
      if (!sse.opened) throw error;
      if (!(isVigilError(error) && error.code === 'CANCELLED')) {
        const { api, unexpected } = toApiError(error);
        if (unexpected) ctx.log(`error in a streamed summary: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        sse.send('error', { error: { code: api.code, message: api.message } });
      }
    }
    sse.end();
  });
  return router;
}
