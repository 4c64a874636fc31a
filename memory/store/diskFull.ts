// "No space left" is the one write failure a store recovers from by itself: nothing committed is
// touched, the failed append is undone, and the next one succeeds once space returns. Every other
// write error still stops further appends (STORE_IO).
import { VigilError } from '../../common/errors.js';

/**
 * ENOSPC/EDQUOT from the file system; SQLITE_FULL from the manifest (SQLite maps ENOSPC on a
 * write to it); SQLITE_IOERR_SHMSIZE when the WAL index cannot grow, which on a local disk only
 * a full one causes.
 */
export function isNoSpace(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_SHMSIZE';
}

export function diskFullError(dir: string, what: string, cause: unknown): VigilError {
  return new VigilError(
    'DISK_FULL',
    `memory store ${dir}: no space left ${what} (${(cause as Error).message}); nothing committed is lost, retry once space returns`,
    { cause },
  );
}

/** The DISK_FULL error for a no-space failure; `otherwise(e)` for any other error. */
export function classifyWriteError(dir: string, what: string, e: unknown, otherwise: (e: unknown) => VigilError): VigilError {
  if (e instanceof VigilError) return e;
  return isNoSpace(e) ? diskFullError(dir, what, e) : otherwise(e);
}
