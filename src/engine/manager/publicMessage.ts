import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../../common/errors.js';

/**
 * Error messages shown to API callers never contain server paths (the data folder, upload spool
 * files, model folders, the allowed files folder): they name the stream and the problem. Messages
 * are made in many layers (store, ingest, model), which rightly name files for the operator's log;
 * this turns them into what a caller may see.
 */
export interface PathRoots {
  /** The data folder: `<data>/streams/<id>/...` becomes `stream '<id>' .../...`; `<data>/incoming/...` an upload. */
  dataDir?: string | null;
  /** The folder callers may ingest files from: paths below it are shown relative to it. */
  filesDir?: string | null;
}

const SEGMENT = String.raw`[^\s'"\`:;,()<>\[\]/]+`;
/**
 * An absolute path: a `/` not preceded by anything that makes it part of a URL, a relative path or
 * a word (`rtsp://host/x`, `a/b`, `and/or`), then one or more segments.
 */
const ABSOLUTE_PATH = new RegExp(String.raw`(?<![\w.:/~@%*-])\/(?:${SEGMENT}\/)*${SEGMENT}\/?`, 'g');

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function spellings(dir: string): string[] {
  const out = new Set([path.resolve(dir)]);
  try {
    out.add(fs.realpathSync(dir));
  } catch {
    // Not there (yet): the resolved spelling is all there is.
  }
  // Longest first, so a folder inside another root is matched by its own rule.
  return [...out].sort((a, b) => b.length - a.length);
}

/** `message` with every server path replaced by what a caller may see. */
export function publicMessage(message: string, roots: PathRoots = {}): string {
  let out = message;
  if (roots.filesDir) {
    for (const dir of spellings(roots.filesDir)) {
      out = out.replace(new RegExp(`${escape(dir)}(?:/(${SEGMENT}(?:/${SEGMENT})*))?`, 'g'), (_m, rest: string | undefined) => rest ?? '.');
    }
  }
  if (roots.dataDir) {
    for (const dir of spellings(roots.dataDir)) {
      const d = escape(dir);
      out = out
        .replace(new RegExp(`${d}/streams/(${SEGMENT})/video/${SEGMENT}`, 'g'), (_m, id: string) => `the uploaded video of stream '${id}'`)
        .replace(new RegExp(`${d}/streams/(${SEGMENT})(?:/(${SEGMENT}(?:/${SEGMENT})*))?`, 'g'), (_m, id: string, rest: string | undefined) => `stream '${id}'${rest ? ` (${rest})` : ''}`)
        .replace(new RegExp(`${d}/incoming(?:/${SEGMENT})*`, 'g'), 'the uploaded file')
        .replace(new RegExp(`${d}(?:/${SEGMENT})*`, 'g'), 'the data folder');
    }
  }
  // Anything else absolute (a model folder, a temp file, ffmpeg's view of a file): its last name only.
  return out.replace(ABSOLUTE_PATH, (p) => `…/${path.basename(p)}`);
}

/** The same error with a public message (same code; the original stays as the cause for the log). */
export function publicError(error: unknown, roots: PathRoots = {}): unknown {
  if (!(error instanceof VigilError)) return error;
  const message = publicMessage(error.message, roots);
  if (message === error.message) return error;
  const copy = new VigilError(error.code, message, { cause: error });
  // Extra fields such as OverloadedError's retryAfterS travel with it.
  for (const [key, value] of Object.entries(error)) if (!(key in copy)) (copy as unknown as Record<string, unknown>)[key] = value;
  return copy;
}
