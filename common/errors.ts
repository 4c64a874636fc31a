/**
 * Every failure a user can cause (bad path, wrong model, bad input) is a VigilError with a stable
 * `code`, so the CLI and the API can print one clear line instead of a stack trace.
 */
export type VigilErrorCode =
  | 'FILE_NOT_FOUND'
  | 'NOT_A_MODEL'
  | 'UNSUPPORTED_MODEL'
  | 'CORRUPT_MODEL'
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'BAD_INPUT'
  | 'BAD_CONFIG'
  | 'UNKNOWN_PROBE_MODEL'
  // memory/store: damaged or foreign store files; a failed write or fsync; use after close.
  | 'STORE_CORRUPT'
  | 'STORE_IO'
  | 'STORE_CLOSED'
  | 'STORE_LOCKED' // the store is open in another process (two servers on one data folder)
  | 'DISK_FULL' // a write found no space left (ENOSPC, SQLITE_FULL): nothing committed is lost; retry once space returns
  | 'INDEX_CORRUPT' // retrieval/: an index folder that is damaged, foreign, or disagrees with its own meta.
  // ingest/: sources that cannot be read, reached or decoded (docs/ingest.md lists which input gives which).
  | 'NOT_A_VIDEO' | 'CORRUPT_VIDEO' | 'UNSUPPORTED_CODEC' | 'SOURCE_UNREACHABLE' | 'SOURCE_AUTH' | 'SOURCE_NOT_FOUND' | 'SOURCE_TIMEOUT' | 'SOURCE_SCHEME' | 'SOURCE_STALLED' | 'SOURCE_FAILED' | 'FFMPEG_MISSING'
  | 'STREAM_NOT_FOUND' | 'STREAM_EXISTS' | 'STREAM_UNAVAILABLE' | 'SOURCE_FORBIDDEN' | 'OVERLOADED' | 'CANCELLED' // engine/manager: the multi-stream service.
  | 'CLUSTER_UNAVAILABLE' // cluster/: NATS out of reach, the node not joined yet, or a stream between owners (retry).
  // Server faults, never the caller's: a broken invariant (a bug), and use of an object after dispose().
  | 'INTERNAL'
  | 'DISPOSED';

/** Every code once, in declaration order (for exhaustive tables and tests). */
export const VIGIL_ERROR_CODES = [
  'FILE_NOT_FOUND', 'NOT_A_MODEL', 'UNSUPPORTED_MODEL', 'CORRUPT_MODEL', 'SHAPE_MISMATCH', 'DTYPE_MISMATCH', 'BAD_INPUT', 'BAD_CONFIG', 'UNKNOWN_PROBE_MODEL',
  'STORE_CORRUPT', 'STORE_IO', 'STORE_CLOSED', 'STORE_LOCKED', 'DISK_FULL', 'INDEX_CORRUPT',
  'NOT_A_VIDEO', 'CORRUPT_VIDEO', 'UNSUPPORTED_CODEC', 'SOURCE_UNREACHABLE', 'SOURCE_AUTH', 'SOURCE_NOT_FOUND', 'SOURCE_TIMEOUT', 'SOURCE_SCHEME', 'SOURCE_STALLED', 'SOURCE_FAILED', 'FFMPEG_MISSING',
  'STREAM_NOT_FOUND', 'STREAM_EXISTS', 'STREAM_UNAVAILABLE', 'SOURCE_FORBIDDEN', 'OVERLOADED', 'CANCELLED',
  'CLUSTER_UNAVAILABLE',
  'INTERNAL', 'DISPOSED',
] as const satisfies readonly VigilErrorCode[];
// The list above names every code: a code added to the union but not to the list fails to compile here.
const _everyCodeListed: Exclude<VigilErrorCode, (typeof VIGIL_ERROR_CODES)[number]> extends never ? true : never = true;
void _everyCodeListed;

export class VigilError extends Error {
  override readonly name = 'VigilError';
  constructor(
    readonly code: VigilErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isVigilError(error: unknown): error is VigilError {
  return error instanceof VigilError;
}

/**
 * Asserts something the code itself guarantees; a failure is a bug in Vigil, not the caller's
 * mistake, so it is an INTERNAL error (HTTP 500), never BAD_INPUT.
 */
export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new VigilError('INTERNAL', `internal error: ${typeof message === 'function' ? message() : message}`);
}

/** The error for any use of an object after its dispose(). */
export function disposedError(what: string): VigilError {
  return new VigilError('DISPOSED', `${what} has been disposed`);
}
