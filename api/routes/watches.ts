import express, { Router } from 'express';
import type { Alert } from '../../src/engine/streamManager.js';
import { alertJson, liveAlertJson } from '../alertJson.js';
import type { ServiceContext } from '../context.js';
import { ApiError } from '../errors.js';
import { ALERT_LIMIT, AlertEventsQuery, AlertQuerySchema, CreateHealthWatchBody, CreateWatchBody } from '../schemas/watches.js';
import { SseStream } from '../sse.js';
import { parseInput } from '../validate.js';

export interface WatchRouteOptions {
  maxBodyBytes: number;
  /** Comment line interval on the alert event stream (ms). Default 15 s. */
  heartbeatMs?: number;
}

/**
 * Watches per stream (standing questions, and health watches: kind 'health') and their alerts:
 * `POST|GET /streams/:id/watches`, `GET|DELETE /streams/:id/watches/:watchId` (each watch with its
 * `stats`: engine/manager/watchStats.ts), `GET /alerts`
 * (time-ordered, bounded) and `GET /alerts/events` (Server-Sent Events: one `ready` event once
 * subscribed, then one `alert` event per new alert; closing the connection unsubscribes).
 */
export function watchRoutes(ctx: ServiceContext, options: WatchRouteOptions): Router {
  const router = Router();

  router.post('/streams/:id/watches', express.json({ limit: options.maxBodyBytes }), async (req, res) => {
    const manager = ctx.manager();
    const raw: unknown = req.body ?? {};
    // kind 'health' is a health watch (no model); anything else a question watch.
    const body = (raw as { kind?: unknown }).kind === 'health' ? parseInput(CreateHealthWatchBody, raw, 'body') : parseInput(CreateWatchBody, raw, 'body');
    const watch = await manager.addWatch(req.params.id, body);
    await ctx.cluster?.watchesChanged(req.params.id);
    res.status(201).location(`/v1/streams/${encodeURIComponent(watch.stream)}/watches/${encodeURIComponent(watch.id)}`).json(watch);
  });

  router.get('/streams/:id/watches', (req, res) => {
    res.json({ watches: ctx.manager().listWatches(req.params.id) });
  });

  router.get('/streams/:id/watches/:watchId', (req, res) => {
    const { id, watchId } = req.params;
    const watch = ctx.manager().getWatch(id, watchId);
    if (!watch) throw noWatch(id, watchId);
    res.json(watch);
  });

  router.delete('/streams/:id/watches/:watchId', async (req, res) => {
    const { id, watchId } = req.params;
    if (!ctx.manager().removeWatch(id, watchId)) throw noWatch(id, watchId);
    await ctx.cluster?.watchesChanged(id);
    res.status(204).end();
  });

  router.get('/alerts', (req, res) => {
    const manager = ctx.manager();
    const query = parseInput(AlertQuerySchema, req.query, 'query');
    const page = manager.alerts({
      ...(query.stream !== undefined ? { stream: query.stream } : {}),
      ...(query.since !== undefined ? { since: query.since } : {}),
      limit: query.limit ?? ALERT_LIMIT.default,
    });
    res.json({ ...page, alerts: page.alerts.map((alert) => alertJson(manager, alert)) });
  });

  router.get('/alerts/events', (req, res) => {
    const manager = ctx.manager();
    const { stream } = parseInput(AlertEventsQuery, req.query, 'query');
    // An unknown stream is a 404 before the event stream opens.
    if (stream !== undefined) manager.status(stream);
    const sse = new SseStream(res, options.heartbeatMs);
    // In order: a live alert may wait a moment for its frame's thumbnail (liveAlertJson).
    let sending = Promise.resolve();
    const unsubscribe = manager.onAlert((alert: Alert) => {
      if (stream !== undefined && alert.stream !== stream) return;
      sending = sending.then(async () => sse.send('alert', await liveAlertJson(manager, alert))).catch((error: unknown) => ctx.log(`alert event not sent: ${(error as Error).message}`));
    });
    sse.signal.addEventListener('abort', unsubscribe, { once: true });
    res.on('close', unsubscribe);
    sse.send('ready', { stream: stream ?? null });
  });

  router.get('/notifications', (_req, res) => {
    const status = ctx.manager().notifications();
    res.json(status ? { enabled: true, ...status } : { enabled: false, queueDepth: 0, maxEntries: 0, dropped: 0, webhooks: [], mqtt: [] });
  });

  return router;
}

function noWatch(stream: string, watchId: string): ApiError {
  return new ApiError(404, 'NOT_FOUND', `stream '${stream}' has no watch '${watchId}'`);
}
