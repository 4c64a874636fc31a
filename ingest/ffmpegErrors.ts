/**
 * Reads ffmpeg's or ffprobe's last stderr lines and says, in one sentence, what went wrong, with a
 * stable error code. The patterns are the messages both the 4.1 and the 5.1 builds print (checked by
 * the bad-input tests, which run every case against both).
 */
import { VigilError, type VigilErrorCode } from '../common/errors.js';

interface Rule {
  code: VigilErrorCode;
  pattern: RegExp;
  explain: (match: RegExpExecArray) => string;
}

const RULES: Rule[] = [
  { code: 'SOURCE_AUTH', pattern: /(401 Unauthorized|403 Forbidden|authorization failed|access denied)/i, explain: (m) => `the server refused the credentials (${m[1]}): check user and password in the URL` },
  { code: 'SOURCE_NOT_FOUND', pattern: /(404 Not Found|method DESCRIBE failed: 404[^\n]*|Server returned 404)/i, explain: () => 'the server has no such stream or file (404 Not Found): check the path' },
  { code: 'SOURCE_NOT_FOUND', pattern: /(Server returned 4\d\d[^\n]*)/i, explain: (m) => `the server rejected the request (${m[1]!.trim()})` },
  { code: 'SOURCE_UNREACHABLE', pattern: /(Server returned 5\d\d[^\n]*|method \w+ failed: 5\d\d[^\n]*)/i, explain: (m) => `the server failed (${m[1]!.trim()})` },
  { code: 'SOURCE_UNREACHABLE', pattern: /(Connection refused)/i, explain: () => 'connection refused: nothing listens at that host and port' },
  { code: 'SOURCE_UNREACHABLE', pattern: /(Failed to resolve hostname[^\n]*|Name or service not known|Temporary failure in name resolution)/i, explain: (m) => `cannot resolve the host name (${m[1]!.trim()})` },
  { code: 'SOURCE_UNREACHABLE', pattern: /(No route to host|Network is unreachable|Host is unreachable|Connection reset by peer|Broken pipe)/i, explain: (m) => `network error: ${m[1]}` },
  { code: 'SOURCE_TIMEOUT', pattern: /(Connection timed out|Operation timed out|timed out|Timeout)/, explain: () => 'no answer from the server within the socket timeout' },
  { code: 'UNSUPPORTED_CODEC', pattern: /(Decoder \(codec ([\w-]+)\) not found|Unknown decoder '([\w-]+)'|Unsupported codec[^\n]*)/i, explain: (m) => `no decoder for this video codec (${m[2] ?? m[3] ?? 'unknown codec'})` },
  { code: 'NOT_A_VIDEO', pattern: /(Stream map '0:v:0' matches no streams|matches no streams|does not contain any stream|Output file #0 does not contain any stream)/i, explain: () => 'it has no video stream' },
  { code: 'CORRUPT_VIDEO', pattern: /(moov atom not found)/i, explain: () => 'the MP4 index (moov atom) is missing: the file is truncated or still being written' },
  { code: 'NOT_A_VIDEO', pattern: /(Invalid data found when processing input)/i, explain: () => 'ffmpeg cannot recognise it as a video (invalid data)' },
  { code: 'FILE_NOT_FOUND', pattern: /(No such file or directory)/i, explain: () => 'no such file' },
  { code: 'SOURCE_UNREACHABLE', pattern: /(Input\/output error|End of file)/i, explain: (m) => `the connection failed (${m[1]})` },
];

/** The lines worth showing: ffmpeg's [error]/[fatal] lines (or the last lines when untagged). */
export function errorLines(lines: readonly string[], max = 3): string[] {
  const tagged = lines.filter((l) => /\[(error|fatal|panic)\]/.test(l));
  const chosen = tagged.length > 0 ? tagged : lines.filter((l) => l.trim() && !/\[(debug|verbose|trace|info)\]/.test(l));
  return chosen.slice(-max).map((l) => l.replace(/\[[\w,./:-]+ @ 0x[0-9a-f]+\]\s*/g, '').replace(/\[(error|fatal|panic|warning)\]\s*/g, '').trim());
}

/** Finds the first rule that matches the stderr tail, most specific first. */
export function classifyStderr(lines: readonly string[]): { code: VigilErrorCode; reason: string } | null {
  const relevant = lines.filter((l) => !/\[(debug|trace)\]/.test(l));
  const text = relevant.slice(-60).join('\n');
  for (const rule of RULES) {
    const m = rule.pattern.exec(text);
    if (m) return { code: rule.code, reason: rule.explain(m) };
  }
  return null;
}

export interface FailureContext {
  /** rtsp/http/hls/file/upload: network sources read "invalid data" as a bad or missing answer. */
  kind?: string;
  elapsedMs?: number;
  socketTimeoutS?: number;
}

/**
 * Builds the VigilError for a failed ffmpeg/ffprobe run on `display` (a path or redacted URL).
 * `what` is the step, e.g. "probing" or "decoding".
 */
export function ffmpegFailure(
  display: string,
  what: string,
  lines: readonly string[],
  exit: { code: number | null; signal: NodeJS.Signals | null },
  context: FailureContext = {},
): VigilError {
  const classified = classifyStderr(lines);
  const network = context.kind === 'rtsp' || context.kind === 'http' || context.kind === 'hls';
  if (classified && network && classified.code === 'NOT_A_VIDEO' && /invalid data/.test(classified.reason)) {
    // ffmpeg says "Invalid data" when an RTSP server never answers before the socket timeout, or
    // answers with something that is not RTSP/HTTP media.
    const timedOut = context.elapsedMs !== undefined && context.socketTimeoutS !== undefined && context.elapsedMs >= context.socketTimeoutS * 900;
    return timedOut
      ? new VigilError('SOURCE_TIMEOUT', `Cannot read video source "${display}": no valid answer within the ${context.socketTimeoutS} s socket timeout (the server is silent).`)
      : new VigilError('NOT_A_VIDEO', `Cannot read video source "${display}": the server's answer is not a video stream ffmpeg can read.`);
  }
  if (classified && !network && context.kind !== undefined && classified.code === 'SOURCE_UNREACHABLE') {
    // A local file has no connection to fail: an I/O error or early end of file is a damaged file.
    return new VigilError('CORRUPT_VIDEO', `Cannot read video "${display}": the file ends early or is damaged (truncated?).`);
  }
  if (classified) return new VigilError(classified.code, `Cannot read video source "${display}": ${classified.reason}.`);
  if (exit.signal && exit.signal !== 'SIGKILL' && exit.signal !== 'SIGTERM') {
    return new VigilError('SOURCE_FAILED', `ffmpeg crashed (${exit.signal}) while ${what} "${display}".`);
  }
  const detail = redactInText(errorLines(lines).join('; '));
  const how = exit.signal ? `was killed (${exit.signal})` : `exited with code ${exit.code}`;
  return new VigilError('SOURCE_FAILED', `ffmpeg ${how} while ${what} "${display}"${detail ? `: ${detail}` : ''}.`);
}

/** Redacts `user:pass@` inside any URL found in an ffmpeg message. */
export function redactInText(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
}
