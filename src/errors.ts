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
  | 'UNKNOWN_PROBE_MODEL';

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
