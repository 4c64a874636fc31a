import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express, type RequestHandler } from 'express';
import type { Registry } from 'prom-client';
import type { ClusterRouting, ClusterStreams } from '../src/cluster/streamRoutes.js';
import type { StreamManager } from '../src/engine/streamManager.js';
import { type AuthConfig, bearerAuth } from './auth.js';
import { clusterProxy } from './clusterProxy.js';
import { ServiceContext } from './context.js';
import { errorHandler, notFound } from './errors.js';
import { createMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { chatRoutes } from './routes/chat.js';
import { clusterRoutes } from './routes/cluster.js';
import { healthRoutes } from './routes/health.js';
import { questionRoutes } from './routes/questions.js';
import { streamRoutes } from './routes/streams.js';
import { summaryRoutes } from './routes/summaries.js';
import { timelineRoutes } from './routes/timeline.js';
import { watchRoutes } from './routes/watches.js';

export interface AppOptions {
  /** The stream manager, or its promise: the app answers health checks while it loads. */
  manager: StreamManager | Promise<StreamManager>;
  auth: AuthConfig;
  /** Largest JSON body (bytes). Default 64 KiB. */
  maxBodyBytes?: number;
  /** Largest uploaded video (bytes). Default 2 GiB. */
  maxUploadBytes?: number;
  /** Log lines (requests, unexpected errors). Never given tokens or credentials. Default: none. */
  log?: (line: string) => void;
  /** Log one line per request. Default true when `log` is set. */
  requestLog?: boolean;
  /** Comment line interval of the alert event stream (`GET /v1/alerts/events`), ms. Default 15 s. */
  alertHeartbeatMs?: number;
  /** Cluster mode: stream-bound calls are forwarded to the stream's owner node (api/clusterProxy.ts). */
  cluster?: ClusterRouting;
  /** Cluster mode: stream creation, deletion, stop/start and watch changes go through the node (src/cluster/clusterNode.ts). */
  clusterStreams?: ClusterStreams;
}

export interface VigilApp {
  app: Express;
  ctx: ServiceContext;
  metrics: Registry;
}

const WEB_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'web');
const VERSION = '0.1.0';

/**
 * The HTTP service: `/v1` (streams, questions, thumbnails, OpenAI-compatible chat) behind bearer
 * auth; `/metrics` behind the same auth; `/healthz`, `/readyz`, `/openapi.json` and the web page
 * (`/`) public: the page holds no data and asks the user for a token. Errors always come out as
 * `{error:{code,message}}` from one handler at the end.
 */
export function createApp(options: AppOptions): VigilApp {
  const log = options.log ?? (() => {});
  const ctx = new ServiceContext(options.manager, log, options.clusterStreams ?? null);
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const maxUploadBytes = options.maxUploadBytes ?? 2 * 1024 ** 3;
  const auth = bearerAuth(options.auth);
  const metrics = createMetrics(ctx);
  const openapi = buildOpenApi(VERSION);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(securityHeaders);
  if (options.log && options.requestLog !== false) app.use(requestLog(log));
  app.use(metrics.httpMetrics);

  app.use(healthRoutes(ctx));
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.get('/metrics', auth, metrics.handler);

  const v1 = express.Router();
  v1.use(auth);
  if (options.cluster) v1.use(clusterProxy(options.cluster, { log, maxBodyBytes }));
  v1.use('/streams', streamRoutes(ctx, { maxBodyBytes, maxUploadBytes }));
  v1.use(questionRoutes(ctx, maxBodyBytes));
  v1.use(chatRoutes(ctx, maxBodyBytes));
  v1.use(summaryRoutes(ctx, maxBodyBytes));
  v1.use(timelineRoutes(ctx));
  v1.use(watchRoutes(ctx, { maxBodyBytes, ...(options.alertHeartbeatMs !== undefined ? { heartbeatMs: options.alertHeartbeatMs } : {}) }));
  v1.use(clusterRoutes(ctx));
  app.use('/v1', v1);

  app.use(express.static(WEB_DIR, { index: 'index.html', maxAge: 0 }));
  app.use(notFound);
  app.use(errorHandler(log));
  return { app, ctx, metrics: metrics.registry };
}

/** The page loads only its own scripts and styles; thumbnails come as blob: URLs (fetched with the token). */
const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Content-Security-Policy', "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
  next();
};

/** One line per request: method, path (no query string), status, time. Headers (tokens) are never logged. */
function requestLog(log: (line: string) => void): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.on('finish', () => log(`${req.method} ${req.originalUrl.split('?')[0]} ${res.statusCode} ${(performance.now() - started).toFixed(1)}ms`));
    next();
  };
}
