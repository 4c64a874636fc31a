// Positional reads on the libuv thread pool, so a large reload does not stall the event loop.
import fs from 'node:fs';

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Reads [position, position + length) into a fresh 8-aligned buffer; shorter only at end of file. */
export async function readRange(fd: number, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const n = await readAt(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** Runs `work` over items with at most `limit` in flight (the thread pool has 4 threads by default). */
export async function forEachConcurrent<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function readvAt(fd: number, bufs: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.readv(fd, bufs, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

// Linux accepts up to 1024 buffers per readv (IOV_MAX); stay well under it.
const MAX_IOV = 512;

/**
 * Fills `bufs` from consecutive file bytes starting at `position` with as few readv calls as the
 * kernel allows; stops early only at end of file. Returns the bytes read.
 */
export async function readvFully(fd: number, bufs: readonly Buffer[], position: number): Promise<{ bytes: number; calls: number }> {
  let idx = 0;
  let off = 0; // bytes already in bufs[idx]
  let bytes = 0;
  let calls = 0;
  while (idx < bufs.length) {
    const iov = [bufs[idx]!.subarray(off), ...bufs.slice(idx + 1, idx + MAX_IOV)];
    const n = await readvAt(fd, iov, position + bytes);
    calls++;
    if (n === 0) break;
    bytes += n;
    for (let left = n; left > 0; ) {
      const room = bufs[idx]!.length - off;
      if (left >= room) {
        left -= room;
        idx++;
        off = 0;
      } else {
        off += left;
        left = 0;
      }
    }
    while (idx < bufs.length && bufs[idx]!.length === 0) idx++;
  }
  return { bytes, calls };
}
