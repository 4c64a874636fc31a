import type { Response } from 'express';

/**
 * A Server-Sent Events response. Headers go out on `open()` (or the first event), so an error found
 * before anything was streamed (a full queue, a bad stream id) can still be a normal JSON error with
 * its status. A comment line every 15 s keeps proxies from closing an idle stream. `signal` aborts
 * when the client goes away, so the work behind the stream can stop.
 */
export class SseStream {
  readonly signal: AbortSignal;
  private readonly abort = new AbortController();
  private heartbeat: NodeJS.Timeout | null = null;
  private started = false;

  constructor(
    private readonly res: Response,
    private readonly heartbeatMs = 15_000,
  ) {
    this.signal = this.abort.signal;
    // 'close' fires on the response when the connection ends: before finishing, that is the client leaving.
    res.on('close', () => {
      this.stopHeartbeat();
      if (!res.writableFinished) this.abort.abort();
    });
  }

  get opened(): boolean {
    return this.started;
  }

  open(): void {
    if (this.started) return;
    this.started = true;
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.res.setHeader('Connection', 'keep-alive');
    // nginx buffers responses by default; this header turns that off for this one.
    this.res.setHeader('X-Accel-Buffering', 'no');
    this.res.flushHeaders();
    this.res.socket?.setNoDelay(true);
    this.heartbeat = setInterval(() => this.res.write(': keep-alive\n\n'), this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** One event: `event: <name>` (omitted when null) and the JSON data (or a raw string such as `[DONE]`). */
  send(event: string | null, data: unknown): void {
    this.open();
    if (this.res.writableEnded) return;
    const payload = typeof data === 'string' ? data : JSON.stringify(data);
    this.res.write(`${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`);
  }

  end(): void {
    this.stopHeartbeat();
    if (!this.res.writableEnded) this.res.end();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}
