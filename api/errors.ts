import type { ErrorRequestHandler, RequestHandler } from 'express';
import { isVigilError, type VigilErrorCode } from '../common/errors.js';
import { publicMessage } from '../src/engine/manager/publicMessage.js';

/**
 * The one HTTP error type: a status, a stable code and a message for the caller, rendered as
 * `{error:{code,message}}`. Anything else thrown by a handler becomes a 500 whose details go to the
 * log only (never a stack trace in a response).
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly options: { retryAfterS?: number; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/**
 * HTTP status of every engine error code: 4xx for what the request did wrong, 5xx for server faults
 * (a bug, a disposed model or session, store or model files, a camera that fails upstream). Total
 * over VigilErrorCode: a new code without a status does not compile. 5xx errors are logged.
 */
export const STATUS_BY_CODE: Readonly<Record<VigilErrorCode, number>> = {
  BAD_INPUT: 400,
  BAD_CONFIG: 400,
  FILE_NOT_FOUND: 400,
  NOT_A_VIDEO: 400,
  CORRUPT_VIDEO: 400,
  UNSUPPORTED_CODEC: 400,
  SOURCE_SCHEME: 400,
  SOURCE_UNREACHABLE: 400,
  SOURCE_FORBIDDEN: 403,
  STREAM_NOT_FOUND: 404,
  STREAM_EXISTS: 409,
  STREAM_UNAVAILABLE: 409,
  OVERLOADED: 429,
  CANCELLED: 499,
  // Server faults.
  INTERNAL: 500,
  DISPOSED: 503,
  CLUSTER_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  STORE_LOCKED: 503,
  DISK_FULL: 507,
  STORE_CORRUPT: 500,
  STORE_IO: 500,
  INDEX_CORRUPT: 500,
  NOT_A_MODEL: 500,
  UNSUPPORTED_MODEL: 500,
  CORRUPT_MODEL: 500,
  SHAPE_MISMATCH: 500,
  DTYPE_MISMATCH: 500,
  UNKNOWN_PROBE_MODEL: 500,
  FFMPEG_MISSING: 500,
  SOURCE_AUTH: 502,
  SOURCE_NOT_FOUND: 502,
  SOURCE_FAILED: 502,
  SOURCE_STALLED: 502,
  SOURCE_TIMEOUT: 504,
};

/** Retry-After (s) of a 429 whose cause gave no estimate: every 429 tells the client when to come back. */
const DEFAULT_RETRY_AFTER_S = 5;

/**
 * Turns anything thrown into an ApiError; the second value says whether it was unexpected (to be
 * logged). Engine messages may name server files (stores, uploads, models) for the operator's log;
 * the caller gets them without any absolute path (the manager already made stream paths relative).
 */
export function toApiError(error: unknown): { api: ApiError; unexpected: boolean } {
  if (error instanceof ApiError) return { api: error, unexpected: false };
  if (isVigilError(error)) {
    // A code cast in from elsewhere that is not in the table is a server fault too.
    const status = (STATUS_BY_CODE as Partial<Record<string, number>>)[error.code] ?? 500;
    const message = publicMessage(error.message);
    const retryAfterS = (error as { retryAfterS?: unknown }).retryAfterS;
    return { api: new ApiError(status, error.code, message, typeof retryAfterS === 'number' ? { retryAfterS } : {}), unexpected: status >= 500 };
  }
  const http = httpParserError(error);
  if (http) return { api: http, unexpected: false };
  return { api: new ApiError(500, 'INTERNAL', 'internal server error (details are in the server log)'), unexpected: true };
}

/** Errors raised by body parsers and multer before a handler runs. */
function httpParserError(error: unknown): ApiError | null {
  if (typeof error !== 'object' || error === null) return null;
  const e = error as { type?: string; status?: number; code?: string; field?: string; message?: string; name?: string };
  if (e.type === 'entity.too.large') return new ApiError(413, 'PAYLOAD_TOO_LARGE', 'the request body is larger than this server accepts');
  if (e.type === 'entity.parse.failed') return new ApiError(400, 'BAD_INPUT', 'the request body is not valid JSON');
  if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', e.message ?? 'unsupported encoding');
  if (e.name === 'MulterError') {
    if (e.code === 'LIMIT_FILE_SIZE') return new ApiError(413, 'PAYLOAD_TOO_LARGE', 'the uploaded file is larger than this server accepts');
    return new ApiError(400, 'BAD_INPUT', `bad upload: ${e.message ?? e.code}${e.field ? ` (field ${e.field})` : ''}`);
  }
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return new ApiError(e.status, 'BAD_INPUT', e.message ?? 'bad request');
  return null;
}

export function sendError(res: Parameters<RequestHandler>[1], api: ApiError): void {
  const retryAfterS = api.options.retryAfterS ?? (api.status === 429 ? DEFAULT_RETRY_AFTER_S : undefined);
  if (retryAfterS !== undefined) res.setHeader('Retry-After', String(retryAfterS));
  for (const [name, value] of Object.entries(api.options.headers ?? {})) res.setHeader(name, value);
  res.status(api.status).json({ error: { code: api.code, message: api.message } });
}

/** The last middleware: renders every error, logs the unexpected ones with their stack. */
export function errorHandler(log: (line: string) => void): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    const { api, unexpected } = toApiError(error);
    if (unexpected) log(`error ${req.method} ${req.path}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    if (res.headersSent) {
      // A streamed response already started: nothing to render, just end it.
      if (!res.writableEnded) res.end();
      return;
    }
    void next;
    sendError(res, api);
  };
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ApiError(404, 'NOT_FOUND', `no route ${req.method} ${req.path}`));
};
