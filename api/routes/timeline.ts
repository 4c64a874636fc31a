import { Router } from 'express';
import type { StreamTimeline } from '../../src/engine/streamManager.js';
import type { ServiceContext } from '../context.js';
import { TimelineQuery } from '../schemas/timeline.js';
import { parseInput } from '../validate.js';

/** `GET /streams/:id/timeline?from=&to=`: scenes with thumbnail URLs, outages, alerts and tiers over a range. */
export function timelineRoutes(ctx: ServiceContext): Router {
  const router = Router();
  router.get('/streams/:id/timeline', (req, res) => {
    const manager = ctx.manager();
    const query = parseInput(TimelineQuery, req.query, 'query');
    const timeline = manager.timeline(req.params.id, {
      ...(query.from !== undefined ? { from: query.from } : {}),
      ...(query.to !== undefined ? { to: query.to } : {}),
    });
    res.json(timelineJson(timeline));
  });
  return router;
}

/** The timeline as the API returns it: each span's thumbnail as the URL of its JPEG. */
function timelineJson(timeline: StreamTimeline): object {
  const base = `/v1/streams/${encodeURIComponent(timeline.stream)}/frames/`;
  return {
    ...timeline,
    spans: timeline.spans.map(({ thumbnailChunk, ...span }) => ({ ...span, thumbnail: thumbnailChunk === null ? null : `${base}${thumbnailChunk}.jpg` })),
  };
}
