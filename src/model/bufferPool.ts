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

  /**
   * A buffer of at least `bytes`: the smallest kept one that fits, else a new one. (A kept buffer
   * much larger than the need still beats a new one: it is resident already, and a new one would
   * add its size to the process and pay the page faults.)
   */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    this.free.forEach((buffer, i) => {
      if (buffer.byteLength >= bytes && (best < 0 || buffer.byteLength < this.free[best]!.byteLength)) best = i;
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

/** The process's pool for question contexts, layer reads and decode steps (1.5 GiB kept at most: an r = 64 question at smolvlm2-256m geometry uses ~1.1 GiB). */
export const sharedBufferPool = new BufferPool(1.5 * 2 ** 30);
