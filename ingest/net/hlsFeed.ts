/**
 * HLS followed by Vigil, not by ffmpeg: playlists are fetched through the policy-checked
 * MediaFetcher and parsed with hls-parser, one variant is chosen, and its segments (and fMP4 init
 * sections) are fetched one by one and written as one continuous byte stream, which ffmpeg reads
 * from Vigil's loopback relay with a forced plain demuxer. ffmpeg's own HLS demuxer (which would
 * open whatever URLs a playlist lists) never runs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import * as HLS from 'hls-parser';
import type { MasterPlaylist, MediaPlaylist, Segment } from 'hls-parser/types.js';
import { VigilError, isVigilError } from '../../common/errors.js';
import type { MediaFetcher } from './mediaFetcher.js';

export const MAX_PLAYLIST_BYTES = 4 * 1024 * 1024;
/** Live playlists start this many segments from the live edge (RFC 8216 6.3.3: at least 3 target durations). */
const LIVE_START_SEGMENTS = 3;
const SEGMENT_TRIES = 3;

export interface HlsInfo {
  /** The media playlist that is followed (a variant of a master playlist, or the source itself). */
  mediaUrl: URL;
  live: boolean;
  /** Sum of the segment durations of a finished (VOD/ENDLIST) playlist; null when live. */
  durationS: number | null;
  /** What the segments are: MPEG-TS, or fragmented MP4 (with an init section). */
  demuxer: 'mpegts' | 'mov';
  variant: { bandwidth: number; height: number | null } | null;
}

HLS.setOptions({ strictMode: false, silent: true });

/** Parses the first playlist (already fetched), follows a master playlist to its chosen variant. */
export async function openHls(fetcher: MediaFetcher, url: URL, text: string, display: string, signal?: AbortSignal): Promise<HlsInfo> {
  let playlist = parsePlaylist(text, display);
  let mediaUrl = url;
  let variant: HlsInfo['variant'] = null;
  if (playlist.isMasterPlaylist) {
    const chosen = chooseVariant(playlist, display);
    variant = { bandwidth: chosen.bandwidth, height: chosen.resolution?.height ?? null };
    const media = await fetcher.text(new URL(chosen.uri, url), MAX_PLAYLIST_BYTES, signal);
    mediaUrl = media.url;
    playlist = parsePlaylist(media.text, display);
    if (playlist.isMasterPlaylist) throw new VigilError('CORRUPT_VIDEO', `"${display}": a variant of the master playlist is itself a master playlist.`);
  }
  checkMedia(playlist, display);
  return {
    mediaUrl,
    live: !playlist.endlist,
    durationS: playlist.endlist ? playlist.segments.reduce((s, seg) => s + seg.duration, 0) : null,
    demuxer: playlist.segments.some((s) => s.map) ? 'mov' : 'mpegts',
    variant,
  };
}

/**
 * Writes the stream's bytes to `out` (not ending it): every segment of a finished playlist, or a
 * live playlist from near its edge, polling for new segments until `signal` aborts or the playlist
 * ends. Resolves when done; throws a VigilError when the playlist or a segment cannot be fetched.
 */
export async function writeHls(fetcher: MediaFetcher, info: HlsInfo, display: string, out: Writable, signal: AbortSignal): Promise<void> {
  let playlist = parsePlaylist((await fetcher.text(info.mediaUrl, MAX_PLAYLIST_BYTES, signal)).text, display) as MediaPlaylist;
  checkMedia(playlist, display);
  let next = playlist.endlist ? first(playlist) : Math.max(first(playlist), first(playlist) + playlist.segments.length - LIVE_START_SEGMENTS);
  let initWritten: string | null = null;
  for (;;) {
    let wrote = false;
    for (const segment of playlist.segments) {
      if (signal.aborted || out.destroyed) return;
      if (segment.mediaSequenceNumber < next) continue;
      if (segment.map) {
        const id = `${segment.map.uri}@${segment.map.byterange?.offset ?? ''}`;
        if (id !== initWritten) {
          await copy(fetcher, new URL(segment.map.uri, info.mediaUrl), segment.map.byterange, out, signal);
          initWritten = id;
        }
      }
      await copySegment(fetcher, segment, info.mediaUrl, out, signal);
      next = segment.mediaSequenceNumber + 1;
      wrote = true;
    }
    if (playlist.endlist || signal.aborted || out.destroyed) return;
    // Live: reload after a target duration (half of it when nothing new came, RFC 8216 6.3.4).
    await sleep((wrote ? 1 : 0.5) * Math.max(0.5, playlist.targetDuration) * 1000, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
    const reloaded = parsePlaylist((await fetcher.text(info.mediaUrl, MAX_PLAYLIST_BYTES, signal)).text, display);
    if (reloaded.isMasterPlaylist) throw new VigilError('CORRUPT_VIDEO', `"${display}": the media playlist turned into a master playlist.`);
    checkMedia(reloaded, display);
    playlist = reloaded;
    // A playlist that restarted its numbering (server restart) resumes at its live edge.
    if (first(playlist) + playlist.segments.length < next) next = Math.max(first(playlist), first(playlist) + playlist.segments.length - LIVE_START_SEGMENTS);
  }
}

function first(playlist: MediaPlaylist): number {
  return playlist.segments[0]?.mediaSequenceNumber ?? playlist.mediaSequenceBase ?? 0;
}

async function copySegment(fetcher: MediaFetcher, segment: Segment, base: URL, out: Writable, signal: AbortSignal): Promise<void> {
  const url = new URL(segment.uri, base);
  for (let attempt = 1; ; attempt++) {
    try {
      await copy(fetcher, url, segment.byterange, out, signal);
      return;
    } catch (error) {
      // A segment that fails half-way cannot be retried: its first bytes are already in the stream.
      if (signal.aborted || attempt >= SEGMENT_TRIES || (isVigilError(error) && error.code === 'SOURCE_FORBIDDEN') || (error as { partial?: boolean }).partial) throw error;
      await sleep(250 * attempt, undefined, { signal }).catch(() => undefined);
    }
  }
}

async function copy(fetcher: MediaFetcher, url: URL, range: { offset?: number; length: number } | undefined, out: Writable, signal: AbortSignal): Promise<void> {
  const rangeHeader = range ? `bytes=${range.offset ?? 0}-${(range.offset ?? 0) + range.length - 1}` : undefined;
  const response = await fetcher.get(url, { signal, ...(rangeHeader ? { range: rangeHeader } : {}) });
  let sent = 0;
  try {
    // By hand, not stream.pipeline({ end: false }): that leaves listeners on `out` for every segment.
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (signal.aborted || out.destroyed) break;
      sent += chunk.length;
      if (!out.write(chunk)) await once(out, 'drain', { signal });
    }
  } catch (error) {
    response.body.destroy();
    if (sent > 0) Object.assign(error as object, { partial: true });
    throw error;
  }
}

function parsePlaylist(text: string, display: string): MasterPlaylist | MediaPlaylist {
  try {
    return HLS.parse(text);
  } catch (error) {
    throw new VigilError('CORRUPT_VIDEO', `"${display}": the HLS playlist cannot be parsed (${(error as Error).message.split('\n')[0]}).`, { cause: error });
  }
}

function checkMedia(playlist: MasterPlaylist | MediaPlaylist, display: string): asserts playlist is MediaPlaylist {
  if (playlist.isMasterPlaylist) throw new VigilError('CORRUPT_VIDEO', `"${display}": expected a media playlist.`);
  const encrypted = playlist.segments.find((s) => s.key && s.key.method.toUpperCase() !== 'NONE');
  if (encrypted) throw new VigilError('UNSUPPORTED_CODEC', `"${display}": encrypted HLS (${encrypted.key!.method}) is not supported.`);
  if (playlist.endlist && playlist.segments.length === 0) throw new VigilError('CORRUPT_VIDEO', `"${display}": the HLS playlist has no segments.`);
}

/**
 * The variant to follow: the smallest one at least 480 px tall (Vigil scales frames down to the
 * model's input size, so more pixels only cost decode time), else the largest; I-frame-only and
 * audio-only variants are skipped.
 */
export function chooseVariant(master: MasterPlaylist, display: string): MasterPlaylist['variants'][number] {
  const variants = master.variants.filter((v) => !v.isIFrameOnly && !(v.codecs && !/avc|hvc|hev|vp0?9|av01|mp4v/i.test(v.codecs)));
  if (variants.length === 0) throw new VigilError('NOT_A_VIDEO', `"${display}": the master playlist has no video variant.`);
  const byBandwidth = [...variants].sort((a, b) => a.bandwidth - b.bandwidth);
  const tall = byBandwidth.find((v) => (v.resolution?.height ?? 0) >= 480);
  return tall ?? byBandwidth[byBandwidth.length - 1]!;
}
