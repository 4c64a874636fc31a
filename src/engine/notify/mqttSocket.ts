/**
 * The MQTT client's connection, made through the outbound address policy: the broker's host is
 * resolved, every address checked, and only a checked address connected to, on every (re)connect.
 *
 * mqtt.js asks its stream builder for a stream synchronously and writes CONNECT to it at once,
 * while resolving and checking is asynchronous; so this Duplex connects in `_construct` (Node holds
 * writes and reads until it calls back) and then relays bytes to and from the socket. A refused or
 * failed connection destroys the stream with the error, which mqtt.js reports and retries later.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { connectOnce, type OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';
import type { CheckedMqtt } from './mqttConfig.js';

export class PolicySocket extends Duplex {
  private conn: net.Socket | null = null;
  private readonly abort = new AbortController();

  constructor(
    private readonly broker: CheckedMqtt,
    private readonly policy: OutboundPolicy,
    private readonly timeoutMs: number,
  ) {
    super();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.connect().then(
      (socket) => {
        this.conn = socket;
        socket.on('data', (chunk: Buffer) => {
          if (!this.push(chunk)) socket.pause();
        });
        socket.on('end', () => this.push(null));
        socket.on('error', (error) => this.destroy(error));
        socket.on('close', () => this.destroy());
        callback();
      },
      (error: Error) => callback(error),
    );
  }

  override _read(): void {
    this.conn?.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.conn!.write(chunk, encoding, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.conn!.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.conn?.destroy();
    callback(error);
  }

  /** Node runs `_destroy` only once `_construct` has called back: a connection still being made is given up now. */
  override destroy(error?: Error): this {
    this.abort.abort();
    return super.destroy(error);
  }

  private async connect(): Promise<net.Socket> {
    const { broker } = this;
    const addresses = await this.policy.resolve(broker.host, broker.display);
    let last: unknown = null;
    for (const address of addresses) {
      if (this.abort.signal.aborted) break;
      try {
        return await this.connectTo(address);
      } catch (error) {
        last = error;
      }
    }
    throw last ?? Object.assign(new Error('the connection was closed'), { code: 'ECONNABORTED' });
  }

  private connectTo(address: string): Promise<net.Socket> {
    const { broker } = this;
    return connectOnce(address, {
      host: broker.host,
      port: broker.port,
      tls: broker.tls,
      display: broker.display,
      timeoutMs: this.timeoutMs,
      signal: this.abort.signal,
      ...(broker.ca !== undefined ? { ca: broker.ca } : {}),
    }).then((socket) => socket.setNoDelay(true));
  }
}
