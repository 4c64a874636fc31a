import { Router } from 'express';
import type { ServiceContext } from '../context.js';

/** Liveness (the process answers) and readiness (model and streams loaded): public, for orchestrators. */
export function healthRoutes(ctx: ServiceContext): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const manager = ctx.peek();
    if (!manager) {
      res.status(503).json({ error: { code: 'NOT_READY', message: 'not ready: the model and streams are loading, or the service is stopping' } });
      return;
    }
    res.json({ status: 'ready', streams: manager.list().length });
  });
  return router;
}
