/**
 * Cuts ffmpeg's raw RGB stdout into frames. Each sampled frame is announced on stderr (showinfo:
 * pts and size) and written on stdout (width * height * 3 bytes), in the same order; the two pipes
 * arrive independently, so headers and bytes are queued until both are there. The per-frame size
 * makes a mid-stream resolution change safe.
 */
import type { SampledFrameInfo } from './ffmpegLog.js';

export interface RawFrame {
  info: SampledFrameInfo;
  data: Uint8Array;
}

interface Header {
  info: SampledFrameInfo;
  /** A placeholder for a showinfo line that was lost: its bytes are skipped, not delivered. */
  lost: boolean;
}

export class FrameAssembler {
  private readonly headers: Header[] = [];
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private nextN = 0;
  /** Frames whose header line was lost (garbled stderr) and whose bytes were skipped. */
  lostFrames = 0;

  constructor(private readonly onFrame: (frame: RawFrame) => void) {}

  /**
   * A showinfo line's parsed header. showinfo numbers frames 0, 1, 2...; a jump means a line was
   * lost, and its frame (assumed to have this frame's size) is skipped so the byte stream stays aligned.
   */
  header(info: SampledFrameInfo): void {
    for (; this.nextN < info.n; this.nextN++) {
      this.headers.push({ info: { ...info, n: this.nextN, ptsTime: null }, lost: true });
    }
    this.nextN = info.n + 1;
    this.headers.push({ info, lost: false });
    this.drain();
  }

  /** Bytes from stdout. */
  bytes(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.drain();
  }

  /** Bytes waiting for a header (or the rest of a frame). */
  get pendingBytes(): number {
    return this.buffered;
  }

  get pendingHeaders(): number {
    return this.headers.length;
  }

  private drain(): void {
    while (this.headers.length > 0) {
      const { info, lost } = this.headers[0]!;
      const size = info.width * info.height * 3;
      if (this.buffered < size) return;
      this.headers.shift();
      const data = this.take(size);
      if (lost) this.lostFrames++;
      else this.onFrame({ info, data });
    }
  }

  private take(size: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length === size) {
      this.chunks.shift();
      this.buffered -= size;
      return new Uint8Array(first.buffer, first.byteOffset, size);
    }
    const out = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      const chunk = this.chunks[0]!;
      const need = size - filled;
      if (chunk.length <= need) {
        out.set(chunk, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        out.set(chunk.subarray(0, need), filled);
        this.chunks[0] = chunk.subarray(need);
        filled += need;
      }
    }
    this.buffered -= size;
    return out;
  }
}
