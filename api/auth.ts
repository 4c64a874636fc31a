import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { ApiError } from './errors.js';

/** Who may call the API: a list of bearer tokens, or nobody checked at all (`--no-auth`, local use only). */
export type AuthConfig = { tokens: readonly string[] } | { disabled: true };

/**
 * `Authorization: Bearer <token>` against the configured tokens. Tokens are compared as SHA-256
 * digests with a constant-time compare, so neither the token length nor a matching prefix shows in
 * the response time. Failures are 401 with a `WWW-Authenticate` challenge and never echo the token.
 */
export function bearerAuth(config: AuthConfig): RequestHandler {
  if ('disabled' in config) return (_req, _res, next) => next();
  if (config.tokens.length === 0) throw new Error('bearerAuth needs at least one token (or auth disabled)');
  const digests = config.tokens.map(digest);
  return (req, _res, next) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) return next(challenge('UNAUTHORIZED', 'missing bearer token: send "Authorization: Bearer <token>"'));
    const given = digest(match[1]!);
    // Every token is compared (no early exit), so the time does not say which one nearly matched.
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(d, given) || ok;
    if (!ok) return next(challenge('UNAUTHORIZED', 'invalid bearer token'));
    next();
  };
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function challenge(code: string, message: string): ApiError {
  return new ApiError(401, code, message, { headers: { 'WWW-Authenticate': 'Bearer realm="vigil"' } });
}
