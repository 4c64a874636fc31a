/**
 * Large scratch buffers kept for reuse between decoder calls. On the project's VMs the first touch
 * of fresh memory costs ~3.7 ms per MiB (page faults): a question over a 5k-token context used to
 * spend most of its prefill and every decode step faulting in the ~200 MiB `present` that
 * onnxruntime returns. Buffers are handed out whole (not zeroed: callers overwrite what they use)
 * and come back with give(); at most `maxRetainedBytes` are kept, oldest dropped first.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private retained = 0;

  constructor(readonly maxRetainedBytes: number) {}

  /** A buffer of at least `bytes` (a kept one no larger than twice that, else a new one). */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    this.free.forEach((buffer, i) => {
      if (buffer.byteLength >= bytes && buffer.byteLength <= 2 * bytes && (best < 0 || buffer.byteLength < this.free[best]!.byteLength)) best = i;
    });
    if (best < 0) return new ArrayBuffer(bytes);
    const [buffer] = this.free.splice(best, 1);
    this.retained -= buffer!.byteLength;
    return buffer!;
  }

  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength > this.maxRetainedBytes || this.free.includes(buffer)) return;
    this.free.push(buffer);
    this.retained += buffer.byteLength;
    while (this.retained > this.maxRetainedBytes) this.retained -= this.free.shift()!.byteLength;
  }

  get retainedBytes(): number {
    return this.retained;
  }
}

/** The process's pool for question contexts and decode steps (bounded: 1 GiB kept at most). */
export const sharedBufferPool = new BufferPool(2 ** 30);
