/**
 * Turns what the user typed (a path or a URL) into a checked source description. Only file paths,
 * `file://`, `rtsp(s)://` and `http(s)://` are accepted; everything else ffmpeg could open
 * (`concat:`, `subfile:`, `data:`, `ftp://`, `pipe:` ...) is refused up front, because a URL may come
 * from an API caller and ffmpeg would happily read local files or devices through it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VigilError } from '../common/errors.js';
import type { SourceKind } from './types.js';

export interface SourceSpec {
  kind: SourceKind;
  /** What ffmpeg opens: an absolute path or the URL (with credentials, if any). */
  input: string;
  /** For logs, stats and errors: the URL without user:password. */
  display: string;
  /** Live by nature (rtsp) or by declaration; http(s) is decided by probing (a duration means a file). */
  live: boolean | null;
  scheme: string;
}

export const DEFAULT_ALLOWED_SCHEMES = ['file', 'rtsp', 'rtsps', 'http', 'https'] as const;

/** Removes `user:password@` from a URL for display. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}

export function parseSource(raw: string, options: { allowedSchemes?: readonly string[] } = {}): SourceSpec {
  const text = raw.trim();
  if (text.length === 0) throw new VigilError('BAD_INPUT', 'The source is empty: give a file path or an rtsp:// or http(s):// URL.');
  const allowed = (options.allowedSchemes ?? DEFAULT_ALLOWED_SCHEMES).map((s) => s.toLowerCase());
  const schemeMatch = /^([a-z][a-z0-9+.-]*):/i.exec(text);
  // A Windows drive letter (C:\...) is a path, not a scheme.
  const scheme = schemeMatch && !/^[a-z]:[\\/]/i.test(text) ? schemeMatch[1]!.toLowerCase() : null;

  if (scheme === null || scheme === 'file') {
    if (scheme === 'file' && !allowed.includes('file')) throw schemeError('file', allowed);
    let file: string;
    try {
      file = scheme === 'file' ? fileURLToPath(text) : path.resolve(text);
    } catch (error) {
      throw new VigilError('BAD_INPUT', `"${text}" is not a valid file URL.`, { cause: error });
    }
    checkFile(file);
    return { kind: 'file', input: file, display: file, live: false, scheme: 'file' };
  }
  if (!allowed.includes(scheme)) throw schemeError(scheme, allowed);
  let url: URL;
  try {
    url = new URL(text);
  } catch (error) {
    throw new VigilError('BAD_INPUT', `"${redactUrl(text)}" is not a valid URL.`, { cause: error });
  }
  if (!url.hostname) throw new VigilError('BAD_INPUT', `"${redactUrl(text)}" has no host.`);
  const display = redactUrl(text);
  if (scheme === 'rtsp' || scheme === 'rtsps') return { kind: 'rtsp', input: text, display, live: true, scheme };
  if (scheme === 'http' || scheme === 'https') {
    const hls = /\.m3u8?$/i.test(url.pathname);
    return { kind: hls ? 'hls' : 'http', input: text, display, live: null, scheme };
  }
  throw schemeError(scheme, allowed.filter((s) => (DEFAULT_ALLOWED_SCHEMES as readonly string[]).includes(s)));
}

function schemeError(scheme: string, allowed: readonly string[]): VigilError {
  return new VigilError(
    'SOURCE_SCHEME',
    `URL scheme "${scheme}:" is not allowed for a video source (allowed: ${allowed.map((s) => `${s}:`).join(', ')} or a file path).`,
  );
}

function checkFile(file: string): void {
  let info: fs.Stats;
  try {
    info = fs.statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new VigilError('FILE_NOT_FOUND', `Video file not found: "${file}".`, { cause: error });
    throw new VigilError('BAD_INPUT', `Cannot read "${file}": ${(error as Error).message}`, { cause: error });
  }
  if (info.isDirectory()) throw new VigilError('BAD_INPUT', `"${file}" is a directory, not a video file.`);
  if (!info.isFile()) throw new VigilError('BAD_INPUT', `"${file}" is not a regular file.`);
  if (info.size === 0) throw new VigilError('NOT_A_VIDEO', `"${file}" is empty (0 bytes), not a video.`);
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (error) {
    throw new VigilError('BAD_INPUT', `"${file}" is not readable: ${(error as Error).message}`, { cause: error });
  }
}
