/**
 * The only address ffmpeg is given for a network source: an HTTP server of Vigil's on 127.0.0.1
 * with an unguessable path. What it serves (a progressive file with Range support, or an HLS
 * stream's segments one after another) comes from Vigil's policy-checked fetches; it never sends a
 * redirect, so ffmpeg has nowhere else to go.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

export type RelayHandler = (req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal) => Promise<void>;

export class LoopbackRelay {
  private readonly sockets = new Set<net.Socket>();
  private disposed = false;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  /** Listens on 127.0.0.1 (a free port); `handler` answers every request to the relay's path. */
  static async start(handler: RelayHandler, onError: (error: unknown) => void): Promise<LoopbackRelay> {
    const token = randomBytes(16).toString('hex');
    const server = http.createServer((req, res) => {
      const loopback = /^(127\.|::1$|::ffff:127\.)/.test(req.socket.remoteAddress ?? '');
      if (!loopback || req.method !== 'GET' || new URL(req.url ?? '/', 'http://relay').pathname !== `/${token}`) {
        res.writeHead(404, { 'content-length': '0', connection: 'close' }).end();
        return;
      }
      const abort = new AbortController();
      res.on('close', () => abort.abort());
      handler(req, res, abort.signal).catch((error: unknown) => {
        onError(error);
        if (!res.headersSent) res.writeHead(502, { 'content-length': '0', connection: 'close' }).end();
        else res.destroy();
      });
    });
    server.on('clientError', (_error, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as net.AddressInfo).port;
    const relay = new LoopbackRelay(server, `http://127.0.0.1:${port}/${token}`);
    server.on('connection', (socket) => {
      relay.sockets.add(socket);
      socket.on('close', () => relay.sockets.delete(socket));
    });
    return relay;
  }

  /** Closes the server and every connection (ffmpeg sees its input end). Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
