import { Router } from 'express';
import { NODE_ID } from '../../src/cluster/nodeRegistry.js';
import type { ClusterStreams } from '../../src/cluster/streamRoutes.js';
import type { ServiceContext } from '../context.js';
import { ApiError } from '../errors.js';

/**
 * The cluster's status and drain requests (docs/scale-out.md, "Status and drain"): `GET /cluster`
 * (the nodes, their streams, leases and replication, as KV has them, and which node answered),
 * `POST|DELETE /cluster/nodes/:nodeId/drain`. Answered by the node called (not stream-bound: the
 * cluster proxy does not forward them); 404 on a server that is not in a cluster.
 */
export function clusterRoutes(ctx: ServiceContext): Router {
  const router = Router();

  router.get('/cluster', async (_req, res) => {
    const cluster = clusterOf(ctx);
    res.json({ node: cluster.nodeId, ...(await cluster.status()) });
  });

  router.post('/cluster/nodes/:nodeId/drain', async (req, res) => {
    await clusterOf(ctx).drain(nodeIdParam(req.params.nodeId), true);
    res.status(202).end();
  });

  router.delete('/cluster/nodes/:nodeId/drain', async (req, res) => {
    await clusterOf(ctx).drain(nodeIdParam(req.params.nodeId), false);
    res.status(204).end();
  });

  return router;
}

function clusterOf(ctx: ServiceContext): ClusterStreams {
  if (!ctx.cluster) throw new ApiError(404, 'NOT_FOUND', 'this server is not part of a cluster (start it with --cluster)');
  return ctx.cluster;
}

/** A node id as the registry accepts them (anything else would reach KV as a bad key). */
function nodeIdParam(nodeId: string): string {
  if (!NODE_ID.test(nodeId)) throw new ApiError(400, 'BAD_INPUT', `'${nodeId.slice(0, 80)}' is not a node id (1-64 letters, digits, '-' or '_', starting with a letter or digit)`);
  return nodeId;
}
