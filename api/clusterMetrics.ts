import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterStatus, StreamReport } from '../src/cluster/clusterStatus.js';
import type { ClusterStreams } from '../src/cluster/streamRoutes.js';

/** The cluster-wide gauges read KV at most this often (a scrape every few seconds costs one status read). */
export const CLUSTER_STATUS_CACHE_MS = 5000;

/**
 * Cluster mode's metrics (docs/scale-out.md, "Status and drain"). This node's own streams come from
 * its memory at scrape time (no I/O); the cluster's node count and unowned streams from a status read
 * kept for up to 5 s. A status read that fails (NATS out of reach) never fails the scrape: those two
 * gauges are left out and `vigil_cluster_status_errors_total` counts it.
 */
export function registerClusterMetrics(registry: Registry, cluster: ClusterStreams, log: (line: string) => void, cacheMs = CLUSTER_STATUS_CACHE_MS): void {
  const errors = new Counter({ name: 'vigil_cluster_status_errors_total', help: 'Cluster status reads (for /metrics) that failed, e.g. NATS out of reach.', registers: [registry] });
  let cached: { at: number; status: ClusterStatus | null } | null = null;
  let reading: Promise<ClusterStatus | null> | null = null;
  let lastError = '';
  /** The status, or null when the read failed; one read at a time, its result (a failure too) kept for cacheMs. */
  const status = (): Promise<ClusterStatus | null> => {
    if (cached && Date.now() - cached.at < cacheMs) return Promise.resolve(cached.status);
    reading ??= cluster
      .status()
      .then(
        (s) => {
          lastError = '';
          return s;
        },
        (error: unknown) => {
          errors.inc();
          const message = error instanceof Error ? error.message : String(error);
          // Said once per cause: a scrape every few seconds while NATS is away would repeat it.
          if (message !== lastError) log(`metrics: the cluster status could not be read: ${message}`);
          lastError = message;
          return null;
        },
      )
      .then((s) => {
        cached = { at: Date.now(), status: s };
        reading = null;
        return s;
      });
    return reading;
  };
  const fromStatus = (name: string, help: string, value: (s: ClusterStatus) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const s = await status();
        if (s) this.set(value(s));
        else this.remove();
      },
    });
  fromStatus('vigil_cluster_nodes', 'Live nodes in the cluster (read from KV, at most 5 s old).', (s) => s.nodes.length);
  fromStatus('vigil_cluster_streams_unowned', 'Streams of the cluster no live node owns now: a failover in progress, or no node with room (read from KV, at most 5 s old).', (s) => s.streams.filter((x) => x.owner === null).length);

  new Gauge({
    name: 'vigil_cluster_streams_owned',
    help: 'Streams this node owns (holds the lease of).',
    registers: [registry],
    collect() {
      this.set(cluster.ownedStreams().length);
    },
  });
  const perOwned = (name: string, help: string, value: (s: StreamReport) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['stream'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of cluster.ownedStreams()) {
          const v = value(s);
          if (v !== null) this.set({ stream: s.id }, v);
        }
      },
    });
  perOwned('vigil_cluster_replication_lag_seconds', 'Seconds of stream a failover now would lose (newest chunk minus the replicated recovery point); streams this node owns, once replicated.', (s) => s.lagSec);
  perOwned('vigil_cluster_replication_bytes_per_second', 'Bytes per second copied to the object store (streams this node owns).', (s) => s.bytesPerSec);
  perOwned('vigil_cluster_lease_epoch', "The epoch of this node's lease on the stream (+1 on every new owner).", (s) => s.epoch);
}
