import type { ClusterStreams } from '../src/cluster/streamRoutes.js';
import type { StreamManager } from '../src/engine/streamManager.js';
import { publicMessage } from '../src/engine/manager/publicMessage.js';
import { ApiError } from './errors.js';

/**
 * What route handlers share: the stream manager once it is ready (the HTTP server starts before the
 * model has loaded, so health checks answer at once; API routes give 503 NOT_READY until then).
 */
export class ServiceContext {
  private current: StreamManager | null = null;
  private failure: Error | null = null;
  readonly ready: Promise<void>;

  constructor(
    manager: StreamManager | Promise<StreamManager>,
    readonly log: (line: string) => void,
    /** Cluster mode (`vigil serve --cluster`): stream creation, deletion, stop/start and watch changes go through the node. */
    readonly cluster: ClusterStreams | null = null,
  ) {
    this.ready = Promise.resolve(manager).then(
      (m) => {
        this.current = m;
      },
      (error: unknown) => {
        this.failure = error instanceof Error ? error : new Error(String(error));
        log(`startup failed: ${this.failure.message}`);
      },
    );
  }

  /** The ready manager; 503 while it is loading, after a failed start, or while shutting down. */
  manager(): StreamManager {
    if (this.current && !this.current.disposed) return this.current;
    if (this.failure) throw new ApiError(503, 'NOT_READY', `the service failed to start: ${publicMessage(this.failure.message)}`);
    if (this.current) throw new ApiError(503, 'NOT_READY', 'the service is shutting down', { retryAfterS: 5 });
    throw new ApiError(503, 'NOT_READY', 'the service is starting (loading the model and streams)', { retryAfterS: 2 });
  }

  /** The manager if it is ready, else null (for health and metrics, which must not throw). */
  peek(): StreamManager | null {
    return this.current && !this.current.disposed ? this.current : null;
  }
}
