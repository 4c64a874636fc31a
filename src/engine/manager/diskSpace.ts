import fs from 'node:fs';
import { isVigilError } from '../../../common/errors.js';

/**
 * Whether a write failed because the disk (or the user's quota) is full: the store's DISK_FULL, or a
 * raw ENOSPC / EDQUOT from the manager's own files (thumbnails, stream.json). Nothing else pauses
 * ingest: any other write error still fails the stream, so a broken disk is not mistaken for a full one.
 */
export function isDiskFull(error: unknown): boolean {
  if (isVigilError(error)) return error.code === 'DISK_FULL';
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Bytes an unprivileged writer may still use, on the fullest of the filesystems holding `dirs` (a
 * stream's memory, index and thumbnails may sit on different mounts); null when no statfs worked.
 */
export async function freeBytes(dirs: readonly string[]): Promise<number | null> {
  let least: number | null = null;
  for (const dir of dirs) {
    try {
      const s = await fs.promises.statfs(dir);
      const free = s.bavail * s.bsize;
      if (least === null || free < least) least = free;
    } catch {
      // A folder not made yet (or gone) tells nothing about space.
    }
  }
  return least;
}

/** Free space in a short human form for messages (e.g. "312 KiB"). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
