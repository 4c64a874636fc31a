/**
 * Parses the two per-frame lines ffmpeg writes on stderr during a decode run:
 * - showinfo (info level), one per *sampled* frame, after select/scale/format: its pts_time and size
 *   tell which bytes on stdout belong to which timestamp;
 * - select (debug level), one per *decoded* frame: the frames-decoded counter and the watchdog's
 *   heartbeat (a stream that decodes but is not sampled yet is alive).
 * The line formats are the same in 4.1 and 5.x (checked by tests on both builds).
 */

export interface SampledFrameInfo {
  /** Index of the frame among those showinfo saw in this run. */
  n: number;
  /** pts in seconds (null when the frame had no timestamp). */
  ptsTime: number | null;
  width: number;
  height: number;
  keyframe: boolean;
}

export interface DecodedFrameInfo {
  t: number | null;
  keyframe: boolean;
}

const SHOWINFO = /\[Parsed_showinfo_\d+ @ [^\]]+\].*?\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:(\S+)\s.*?\bs:(\d+)x(\d+)\b.*?\biskey:(\d)/;
// select logs each frame in three av_log calls ("n: pts: t: key:", " interlace_type...", " -> select:");
// decoder threads can print between them, so only the first part, which starts the line, is relied on.
const SELECT = /\[Parsed_select_\d+ @ [^\]]+\]\s*(?:\[debug\]\s*)?n:[\d.]+\s+pts:\S+\s+t:(\S+)\s+key:(\d)/;

export function parseShowinfo(line: string): SampledFrameInfo | null {
  if (!line.includes('Parsed_showinfo')) return null;
  const m = SHOWINFO.exec(line);
  if (!m) return null;
  const pts = Number(m[3]);
  return {
    n: Number(m[1]),
    ptsTime: m[2] === 'NOPTS' || !Number.isFinite(pts) ? null : pts,
    width: Number(m[4]),
    height: Number(m[5]),
    keyframe: m[6] === '1',
  };
}

export function parseSelect(line: string): DecodedFrameInfo | null {
  if (!line.includes('Parsed_select')) return null;
  const m = SELECT.exec(line);
  if (!m) return null;
  const t = Number(m[1]);
  return { t: Number.isFinite(t) ? t : null, keyframe: m[2] === '1' };
}

/** ffmpeg's log level tag (from `-loglevel level+...`), e.g. "error"; null when untagged. */
export function logLevelOf(line: string): string | null {
  return /\[(panic|fatal|error|warning|info|verbose|debug|trace)\]/.exec(line)?.[1] ?? null;
}

/** Decode-error lines in a damaged stream (the file still plays, with holes). */
export function isCorruptionLine(line: string): boolean {
  return /\[(error|warning)\]/.test(line) && /(corrupt|error while decoding|Invalid NAL|partial file|concealing|missing picture|Truncat|invalid data|decode_slice_header error|co located POCs unavailable|no frame!|Packet corrupt)/i.test(line);
}

/** The codec and coded picture size of a video stream, from ffmpeg's stream dump. */
export interface StreamVideoInfo {
  codec: string;
  width: number;
  height: number;
}

// "[info]   Stream #0:0[0x1](und), 1, 1/90000: Video: h264 (High), yuv420p(progressive), 320x180 [SAR 1:1 ...]"
const STREAM_VIDEO = /Stream #\d+:\d+[^:]*: Video: ([\w-]+).*?, (\d+)x(\d+)\b/;

/** A "Stream #…: Video:" line of the dump (the input's comes before the output's). */
export function parseStreamVideo(line: string): StreamVideoInfo | null {
  if (!line.includes(': Video: ')) return null;
  const m = STREAM_VIDEO.exec(line);
  if (!m) return null;
  return { codec: m[1]!, width: Number(m[2]), height: Number(m[3]) };
}
