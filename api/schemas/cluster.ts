import { z } from 'zod';
import type { ClusterStatus } from '../../src/cluster/clusterStatus.js';

/** `GET /v1/cluster` (src/cluster/clusterStatus.ts, ClusterStatus, plus the node that answered). For the OpenAPI document. */
export const ClusterStatusSchema = z
  .strictObject({
    node: z.string().meta({ description: 'The node that answered.' }),
    at: z.string().meta({ description: 'When the status was read (ISO 8601).' }),
    nodes: z.array(
      z.strictObject({
        nodeId: z.string(),
        capacity: z.number().int().meta({ description: 'Streams the node may own (--capacity).' }),
        apiUrl: z.string(),
        startedAt: z.string(),
        draining: z.boolean().meta({ description: 'Asked to drain: hands its streams over and takes no new ones.' }),
        streams: z.array(z.string()).meta({ description: 'Ids of the streams it owns.' }),
      }),
    ),
    streams: z.array(
      z.strictObject({
        id: z.string(),
        owner: z.string().nullable().meta({ description: 'The live node holding the lease; null during a failover, or when no node has room.' }),
        epoch: z.number().int().nullable().meta({ description: "The lease's epoch (+1 on every new owner)." }),
        stopped: z.boolean(),
        state: z.string().nullable().meta({ description: "The stream's state as its owner last reported it." }),
        lagSec: z.number().nullable().meta({ description: 'Seconds of stream a failover now would lose (null: nothing replicated yet).' }),
        recoveryPoint: z.strictObject({ chunkId: z.number(), streamTime: z.number(), wallTime: z.number() }).nullable().meta({ description: 'The newest chunk in the replicated memory.' }),
        bytesPerSec: z.number().nullable().meta({ description: 'Replication to the object store, bytes/s.' }),
      }),
    ),
  })
  .meta({ description: 'The cluster as its key-value store has it now.' });

// The document follows the type the route sends.
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShape: Exact<Omit<z.infer<typeof ClusterStatusSchema>, 'node'>, ClusterStatus> = true;
void sameShape;
