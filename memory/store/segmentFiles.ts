// Segment files on disk: names, listing, creation, and the read-side file descriptors.
import fs from 'node:fs';
import path from 'node:path';
import { encodeSegmentHeader, SEGMENT_HEADER_BYTES } from './recordFormat.js';

const SEGMENT_NAME = /^seg-(\d{6,})\.kvseg$/;

export function segmentFileName(segment: number): string {
  return `seg-${String(segment).padStart(6, '0')}.kvseg`;
}

export function segmentPath(dir: string, segment: number): string {
  return path.join(dir, segmentFileName(segment));
}

/** Segment files in the folder, ascending by id, with their sizes. */
export function listSegmentFiles(dir: string): Array<{ segment: number; size: number }> {
  const out: Array<{ segment: number; size: number }> = [];
  for (const name of fs.readdirSync(dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m === null) continue;
    out.push({ segment: Number(m[1]), size: fs.statSync(path.join(dir, name)).size });
  }
  return out.sort((a, b) => a.segment - b.segment);
}

/** fsync of the folder itself, so that created or renamed entries survive a power loss. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The segment being appended to: its write descriptor and size. */
export interface WritableSegment {
  segment: number;
  fd: number;
  size: number;
}

/**
 * Creates a new segment file (fails if it exists) and writes its header. On failure (a full disk)
 * no file is left behind, so the id can be tried again.
 */
export function createSegment(dir: string, segment: number): WritableSegment {
  const file = segmentPath(dir, segment);
  const fd = fs.openSync(file, 'wx');
  try {
    const header = encodeSegmentHeader(segment);
    let done = 0;
    while (done < SEGMENT_HEADER_BYTES) done += fs.writeSync(fd, header, done, SEGMENT_HEADER_BYTES - done, done);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw e;
  }
  return { segment, fd, size: SEGMENT_HEADER_BYTES };
}

/** Opens an existing segment for appending at its current end. */
export function openSegmentForAppend(dir: string, segment: number): WritableSegment {
  const fd = fs.openSync(segmentPath(dir, segment), 'r+');
  return { segment, fd, size: fs.fstatSync(fd).size };
}

/**
 * Read descriptors, one per segment, opened on demand and shared by concurrent reads. Retention
 * may delete a segment while a read is in flight: the file is unlinked at once (the open
 * descriptor keeps the bytes readable), and the descriptor is closed when the last reader leaves,
 * so a closed descriptor number is never reused under a running read.
 */
export class SegmentReaders {
  private readonly open = new Map<number, { fd: number; refs: number; retired: boolean }>();

  constructor(private readonly dir: string) {}

  /** Throws ENOENT if the file is missing. Pair with release(). */
  acquire(segment: number): number {
    let e = this.open.get(segment);
    if (e === undefined) {
      e = { fd: fs.openSync(segmentPath(this.dir, segment), 'r'), refs: 0, retired: false };
      this.open.set(segment, e);
    }
    e.refs++;
    return e.fd;
  }

  release(segment: number): void {
    const e = this.open.get(segment);
    if (e === undefined) return;
    e.refs--;
    if (e.refs === 0 && e.retired) {
      this.open.delete(segment);
      fs.closeSync(e.fd);
    }
  }

  /** Closes the descriptor now, or when its last reader releases it. */
  retire(segment: number): void {
    const e = this.open.get(segment);
    if (e === undefined) return;
    if (e.refs === 0) {
      this.open.delete(segment);
      fs.closeSync(e.fd);
    } else {
      e.retired = true;
    }
  }

  /** Keeps at most `max` idle descriptors open (the segment count of a long stream is unbounded). */
  trim(max: number): void {
    if (this.open.size <= max) return;
    for (const [segment, e] of this.open) {
      if (this.open.size <= max) break;
      if (e.refs === 0) {
        this.open.delete(segment);
        fs.closeSync(e.fd);
      }
    }
  }

  closeAll(): void {
    for (const e of this.open.values()) fs.closeSync(e.fd);
    this.open.clear();
  }
}
