// Whole-range reads for open-time recovery (synchronous: opening is not on the hot path).
import fs from 'node:fs';

/** Reads [offset, offset + length) or less at end of file; the result is 8-aligned in its buffer. */
export function readRangeSync(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}
