import express, { Router } from 'express';
import type { ServiceContext } from '../context.js';
import { ApiError } from '../errors.js';
import { CreateStreamBody, DeleteQuery, UploadFields } from '../schemas/streams.js';
import { discardUpload, uploadParser } from '../uploads.js';
import { parseInput } from '../validate.js';

export interface StreamRouteOptions {
  maxBodyBytes: number;
  maxUploadBytes: number;
}

/** `/v1/streams`: create (JSON source or multipart upload), list, status, stop, start, delete, thumbnails. */
export function streamRoutes(ctx: ServiceContext, options: StreamRouteOptions): Router {
  const router = Router();
  const json = express.json({ limit: options.maxBodyBytes });
  const upload = uploadParser(ctx, options.maxUploadBytes);

  router.post('/', (req, res, next) => {
    if (req.is('multipart/form-data')) return upload(req, res, next);
    if (!req.is('application/json')) return next(new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send application/json (a source URL or path) or multipart/form-data (an upload in field "file")'));
    return json(req, res, next);
  });
  router.post('/', async (req, res) => {
    const manager = ctx.manager();
    let status;
    if (req.is('multipart/form-data')) {
      const file = req.file;
      try {
        if (ctx.cluster) throw new ApiError(400, 'BAD_INPUT', "uploads are not supported in cluster mode (a node's uploaded file would not survive a failover): give a source URL");
        if (!file) throw new ApiError(400, 'BAD_INPUT', 'the upload has no file: send the video in the multipart field "file"');
        const fields = parseInput(UploadFields, { ...(req.body as object) }, 'upload fields');
        status = await manager.create({ ...fields, upload: { file: file.path, name: file.originalname } });
      } finally {
        discardUpload(file);
      }
    } else {
      const body = parseInput(CreateStreamBody, req.body, 'body');
      status = ctx.cluster ? await ctx.cluster.createStream(body) : await manager.create(body);
    }
    res.status(201).location(`/v1/streams/${status.id}`).json(status);
  });

  router.get('/', (_req, res) => {
    res.json({ streams: ctx.manager().list() });
  });

  router.get('/:id', (req, res) => {
    res.json(ctx.manager().status(req.params.id));
  });

  router.post('/:id/stop', async (req, res) => {
    const manager = ctx.manager();
    res.json(ctx.cluster ? await ctx.cluster.setStopped(req.params.id, true) : await manager.stop(req.params.id));
  });

  router.post('/:id/start', async (req, res) => {
    const manager = ctx.manager();
    res.json(ctx.cluster ? await ctx.cluster.setStopped(req.params.id, false) : await manager.start(req.params.id));
  });

  router.delete('/:id', async (req, res) => {
    const { purge } = parseInput(DeleteQuery, req.query, 'query');
    const manager = ctx.manager();
    if (ctx.cluster) await ctx.cluster.removeStream(req.params.id, { purge });
    else await manager.remove(req.params.id, { purge });
    res.status(204).end();
  });

  router.get('/:id/frames/:chunk.jpg', (req, res) => {
    const manager = ctx.manager();
    const { id, chunk } = req.params;
    const latest = chunk === 'latest';
    if (!latest && !/^\d{1,15}$/.test(chunk)) throw new ApiError(400, 'BAD_INPUT', `'${chunk}' is not a chunk id (a number, or "latest")`);
    const file = manager.thumbnail(id, latest ? 'latest' : Number(chunk));
    if (!file) throw new ApiError(404, 'NOT_FOUND', latest ? `stream '${id}' has no frame yet` : `stream '${id}' has no thumbnail for chunk ${chunk}`);
    // A chunk's picture never changes; "latest" does.
    res.setHeader('Cache-Control', latest ? 'no-store' : 'private, max-age=86400, immutable');
    res.type('image/jpeg').sendFile(file);
  });

  return router;
}
