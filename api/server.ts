import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { ClusterNode } from '../src/cluster/clusterNode.js';
import { StreamManager, type StreamManagerOptions } from '../src/engine/streamManager.js';
import { type AppOptions, createApp, type VigilApp } from './app.js';
import type { CameraConfigEntry } from './schemas/config.js';

export interface ServerOptions extends Omit<AppOptions, 'manager'> {
  /**
   * Cluster mode: a node connected to NATS (ClusterNode.connect). It joins once the manager is open,
   * advertising `clusterUrl` (default this server's URL) to the other nodes; close() disposes it first.
   */
  clusterNode?: { node: ClusterNode; url?: string };
  /** Everything the stream manager needs (data folder, model, URL policy, limits, ...). */
  manager: StreamManagerOptions;
  /** Streams declared in the config file: created or updated once the manager is open. */
  cameras?: CameraConfigEntry[];
  /** Default 127.0.0.1: the service is reachable from elsewhere only when asked. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
}

export interface RunningServer extends VigilApp {
  server: Server;
  url: string;
  /** Resolves with the manager when the model and streams are loaded (rejects if that failed). */
  manager: Promise<StreamManager>;
  /** Stops accepting requests, ends open ones (SSE included), stops ingest and closes every memory. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP server at once and the stream manager behind it (model load, stream restore,
 * config cameras), so health checks answer while the model loads.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const manager = (async () => {
    const m = await StreamManager.open({ ...options.manager, log: options.manager.log ?? log });
    try {
      for (const camera of options.cameras ?? []) await m.declare(camera);
    } catch (error) {
      await m.dispose();
      throw error;
    }
    return m;
  })();
  // Unhandled until someone awaits it: the app reports a failed start through /readyz and 503s.
  manager.catch(() => {});
  const cluster = options.clusterNode?.node;
  const vigil = createApp({ ...options, manager, ...(cluster ? { cluster, clusterStreams: cluster } : {}) });
  const server = vigil.app.listen(options.port ?? 8080, options.host ?? '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  // In cluster mode the node joins (registers, starts taking streams) once the manager is open.
  const ready = cluster ? manager.then(async (m) => (await cluster.join(m, options.clusterNode?.url ?? url), m)) : manager;
  ready.catch(() => {});
  let closing: Promise<void> | null = null;
  return {
    ...vigil,
    server,
    url,
    manager: ready,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        // The node first: it hands its streams over (last snapshots, leases released) while the manager still runs them.
        await cluster?.dispose();
        await manager.then((m) => m.dispose(), () => undefined);
      })()),
  };
}
