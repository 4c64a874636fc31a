/**
 * Which demuxer ffmpeg may use for a file, an upload or an HTTP body, decided by Vigil from the
 * first bytes, never by ffmpeg's own guess (which follows the file name and content into playlist
 * and indirection formats: HLS, DASH, concat, image sequences ... each of which opens more URLs or
 * files). Only plain media containers are allowed; ffmpeg is then run with `-f <demuxer>`.
 */
import fs from 'node:fs';
import { VigilError } from '../../common/errors.js';

/** Bytes to read before deciding. */
export const SNIFF_BYTES = 4096;

/** ffmpeg demuxers that read one self-contained stream and open nothing else. */
export type PlainDemuxer = 'mov' | 'matroska' | 'mpegts' | 'avi' | 'flv' | 'mpeg' | 'ogg' | 'h264' | 'hevc' | 'mpjpeg';

export type Sniffed =
  | { kind: 'media'; demuxer: PlainDemuxer }
  | { kind: 'playlist'; format: 'hls' | 'dash' | 'concat' | 'sdp' }
  | { kind: 'other'; what: string };

const ISO_BOXES = new Set(['ftyp', 'moov', 'mdat', 'free', 'wide', 'skip', 'pnot', 'uuid', 'styp', 'sidx', 'moof']);

export function sniffContainer(head: Uint8Array): Sniffed {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const ascii = (from: number, to: number) => b.subarray(from, to).toString('latin1');
  const text = b.subarray(0, 512).toString('utf8').replace(/^\uFEFF/, '').trimStart();

  if (/^#EXTM3U/i.test(text)) return { kind: 'playlist', format: 'hls' };
  if (/^ffconcat/i.test(text) || /^file\s+'/m.test(text)) return { kind: 'playlist', format: 'concat' };
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<MPD[\s>]/i.test(text)) return { kind: 'playlist', format: 'dash' };
  if (/^v=0\r?\no=/.test(text)) return { kind: 'playlist', format: 'sdp' };

  if (b.length >= 8 && ISO_BOXES.has(ascii(4, 8))) return { kind: 'media', demuxer: 'mov' };
  if (b.length >= 4 && b.readUInt32BE(0) === 0x1a45dfa3) return { kind: 'media', demuxer: 'matroska' };
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'AVI ') return { kind: 'media', demuxer: 'avi' };
  if (ascii(0, 3) === 'FLV') return { kind: 'media', demuxer: 'flv' };
  if (ascii(0, 4) === 'OggS') return { kind: 'media', demuxer: 'ogg' };
  if (isTransportStream(b)) return { kind: 'media', demuxer: 'mpegts' };
  if (b.length >= 4 && b.readUInt32BE(0) === 0x000001ba) return { kind: 'media', demuxer: 'mpeg' };
  const nal = annexBNal(b);
  if (nal === 'h264' || nal === 'hevc') return { kind: 'media', demuxer: nal };
  if (/^--[^\r\n]{1,70}\r?\n(?:[^\r\n]+\r?\n)*?content-type:\s*image\/jpeg/i.test(text)) return { kind: 'media', demuxer: 'mpjpeg' };

  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WAVE') return { kind: 'other', what: 'a WAV audio file' };
  if (ascii(0, 3) === 'ID3' || (b.length >= 2 && b[0] === 0xff && (b[1]! & 0xe0) === 0xe0)) return { kind: 'other', what: 'an MP3 audio file' };
  if (ascii(0, 4) === 'fLaC') return { kind: 'other', what: 'a FLAC audio file' };
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { kind: 'other', what: 'a JPEG image' };
  if (ascii(1, 4) === 'PNG') return { kind: 'other', what: 'a PNG image' };
  if (ascii(0, 4) === 'GIF8') return { kind: 'other', what: 'a GIF image' };
  if (looksLikeText(b)) return { kind: 'other', what: 'a text file' };
  return { kind: 'other', what: 'not a container Vigil reads (MP4/MOV, Matroska/WebM, MPEG-TS, AVI, FLV, MPEG-PS, Ogg, raw H.264/H.265)' };
}

/**
 * The VigilError for a sniff result that ffmpeg must not open, or null for plain media.
 * Playlists and indirection formats are SOURCE_FORBIDDEN for files and uploads (they would make
 * ffmpeg open other files or URLs); anything else unknown is NOT_A_VIDEO.
 */
export function refusal(sniffed: Sniffed, display: string, origin: 'file' | 'http'): VigilError | null {
  if (sniffed.kind === 'media') return null;
  if (sniffed.kind === 'playlist') {
    const name = { hls: 'an HLS playlist', dash: 'a DASH manifest', concat: 'an ffconcat list', sdp: 'an SDP description' }[sniffed.format];
    const hint = origin === 'file' ? 'files and uploads must be plain video containers; serve a playlist over HTTP(S) instead' : 'only HLS playlists are followed, by Vigil itself';
    return new VigilError('SOURCE_FORBIDDEN', `"${display}" is ${name}: ${hint}.`);
  }
  if (/audio/.test(sniffed.what)) return new VigilError('NOT_A_VIDEO', `"${display}" has no video stream (${sniffed.what}): not a video.`);
  return new VigilError('NOT_A_VIDEO', `"${display}" is not a video (${sniffed.what}).`);
}

/** Reads a file's first bytes and decides its demuxer; throws the refusal. */
export function sniffFile(file: string, display: string): PlainDemuxer {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(SNIFF_BYTES);
      head = head.subarray(0, fs.readSync(fd, head, 0, SNIFF_BYTES, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VigilError('FILE_NOT_FOUND', `Video file not found: "${display}".`, { cause: error });
    throw new VigilError('BAD_INPUT', `Cannot read "${display}" (${code ?? 'read error'}).`, { cause: error });
  }
  if (head.length === 0) throw new VigilError('NOT_A_VIDEO', `"${display}" is empty (0 bytes), not a video.`);
  const sniffed = sniffContainer(head);
  const refused = refusal(sniffed, display, 'file');
  if (refused || sniffed.kind !== 'media') throw refused ?? new VigilError('NOT_A_VIDEO', `"${display}" is not a video.`);
  return sniffed.demuxer;
}

/** MPEG-TS: sync byte 0x47 every 188 bytes (or 192 with a 4-byte M2TS prefix), at least 3 in a row. */
function isTransportStream(b: Buffer): boolean {
  for (const [offset, stride] of [[0, 188], [4, 192]] as const) {
    const packets = Math.min(5, Math.floor((b.length - offset) / stride));
    if (packets < 3) continue;
    let ok = true;
    for (let i = 0; i < packets && ok; i++) ok = b[offset + i * stride] === 0x47;
    if (ok) return true;
  }
  return false;
}

/** Raw Annex-B video: a start code, then a parameter set or access unit delimiter NAL. */
function annexBNal(b: Buffer): 'h264' | 'hevc' | null {
  const at = b.length >= 5 && b.readUInt32BE(0) === 1 ? 4 : b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 1 ? 3 : -1;
  if (at < 0) return null;
  const header = b[at]!;
  const h264Type = header & 0x1f;
  if ((header & 0x80) === 0 && [7, 9].includes(h264Type)) return 'h264';
  const hevcType = (header >> 1) & 0x3f;
  if ((header & 0x80) === 0 && [32, 33, 35].includes(hevcType)) return 'hevc';
  return null;
}

function looksLikeText(b: Buffer): boolean {
  const sample = b.subarray(0, 512);
  if (sample.length === 0) return false;
  let printable = 0;
  for (const c of sample) if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 0xc0) printable++;
  return printable / sample.length > 0.95;
}
