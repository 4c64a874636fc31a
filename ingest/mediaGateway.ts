/**
 * What ffmpeg may open for one source, and the only way it gets there (design.md: outbound policy).
 *
 * - Files and uploads: ffmpeg reads the path itself, but only as the plain container Vigil found
 *   in the first bytes (`-f <demuxer>`, protocols `file` only): playlists, concat lists, DASH and
 *   image sequences are refused whatever the name says.
 * - http(s): Vigil fetches (policy check at every connection and redirect) and serves the bytes to
 *   ffmpeg on a loopback relay: a progressive file with Range support, or an HLS stream whose
 *   playlists Vigil follows and whose segments it concatenates. Protocols `http,tcp` only.
 * - rtsp(s): ffmpeg talks to Vigil's RTSP relay on loopback, which connects to the camera through
 *   the policy, answers its auth challenges (credentials never reach ffmpeg's argv) and refuses
 *   redirects to refused addresses.
 *
 * Errors seen on Vigil's side (policy refusals, HTTP statuses, auth) are kept in `lastError`, so the
 * source reports them instead of ffmpeg's vaguer reading of the relay's answer.
 */
import type http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { VigilError, isVigilError } from '../common/errors.js';
import type { Readable } from 'node:stream';
import { SNIFF_BYTES, type Sniffed, sniffContainer, sniffFile, refusal } from './net/containerSniff.js';
import { type HlsInfo, MAX_PLAYLIST_BYTES, openHls, writeHls } from './net/hlsFeed.js';
import { LoopbackRelay } from './net/loopbackRelay.js';
import { MediaFetcher, networkError } from './net/mediaFetcher.js';
import type { OutboundPolicy } from './net/outboundPolicy.js';
import { RtspRelay } from './net/rtspRelay.js';
import type { SourceSpec } from './sourceSpec.js';

export interface MediaEndpoint {
  /** What ffmpeg opens: a local path, or a loopback relay URL. */
  input: string;
  /** Forced demuxer (`-f`), chosen by Vigil; null only for RTSP (ffmpeg's rtsp demuxer). */
  demuxer: string | null;
  /** ffmpeg's -protocol_whitelist for this input. */
  protocols: string;
  /** How ffmpeg reaches the input: its timeout options differ. */
  transport: 'file' | 'http' | 'rtsp';
  /** Known from the source itself (an HLS playlist with or without ENDLIST); null: decide by probing. */
  live: boolean | null;
  /** HLS: the playlist's duration (ffmpeg cannot see it in the concatenated stream). */
  durationS: number | null;
  /** A container label for probe info (e.g. "hls,mpegts"), when ffmpeg's would mislead. */
  container: string | null;
}

export interface GatewayOptions {
  policy: OutboundPolicy;
  socketTimeoutS: number;
}

type HttpMode = { kind: 'progressive'; url: URL } | { kind: 'hls'; info: HlsInfo };

export class MediaGateway {
  private httpRelay: LoopbackRelay | null = null;
  private rtspRelay: RtspRelay | null = null;
  private fetcher: MediaFetcher | null = null;
  private mode: HttpMode | null = null;
  private error: VigilError | null = null;
  private disposed = false;

  constructor(
    private readonly spec: SourceSpec,
    private readonly options: GatewayOptions,
  ) {}

  /** An error Vigil saw while serving ffmpeg since the last call (policy, HTTP status, auth); clears it. */
  takeError(): VigilError | null {
    const error = this.error;
    this.error = null;
    this.rtspRelay?.clearLastError();
    return error;
  }

  /**
   * Prepares the endpoint for the next ffmpeg/ffprobe run. Files are sniffed; URLs are fetched (the
   * first request decides progressive vs HLS and surfaces refusals and HTTP errors at once).
   */
  async open(signal?: AbortSignal): Promise<MediaEndpoint> {
    if (this.disposed) throw new VigilError('CANCELLED', `"${this.spec.display}" was stopped.`);
    this.error = null;
    switch (this.spec.kind) {
      case 'file':
      case 'upload': {
        const demuxer = sniffFile(this.spec.input, this.spec.display);
        return { input: this.spec.input, demuxer, protocols: 'file', transport: 'file', live: false, durationS: null, container: null };
      }
      case 'rtsp':
        return this.openRtsp();
      default:
        return this.openHttp(signal);
    }
  }

  private async openRtsp(): Promise<MediaEndpoint> {
    this.rtspRelay ??= await RtspRelay.start({
      upstream: this.spec.input,
      display: this.spec.display,
      policy: this.options.policy,
      connectTimeoutMs: this.options.socketTimeoutS * 1000,
      onError: (error) => (this.error = error),
    });
    return { input: this.rtspRelay.url, demuxer: null, protocols: 'rtsp,rtp,udp,tcp', transport: 'rtsp', live: true, durationS: null, container: null };
  }

  private async openHttp(signal?: AbortSignal): Promise<MediaEndpoint> {
    this.fetcher ??= new MediaFetcher({ policy: this.options.policy, display: this.spec.display, timeoutMs: this.options.socketTimeoutS * 1000 });
    const fetcher = this.fetcher;
    const url = new URL(this.spec.input);
    const first = await fetcher.get(url, signal ? { signal } : {});
    const { sniffed, bytes } = await sniffBody(first.body, this.spec.display, signal);
    let endpoint: MediaEndpoint;
    if (sniffed.kind === 'playlist' && sniffed.format === 'hls') {
      const info = await openHls(fetcher, first.url, bytes.toString('utf8'), this.spec.display, signal);
      this.mode = { kind: 'hls', info };
      endpoint = { input: '', demuxer: info.demuxer, protocols: 'http,tcp', transport: 'http', live: info.live, durationS: info.durationS, container: `hls,${info.demuxer === 'mov' ? 'fmp4' : 'mpegts'}` };
    } else {
      const refused = refusal(sniffed, this.spec.display, 'http');
      if (refused || sniffed.kind !== 'media') throw refused ?? new VigilError('NOT_A_VIDEO', `"${this.spec.display}" is not a video.`);
      this.mode = { kind: 'progressive', url };
      endpoint = { input: '', demuxer: sniffed.demuxer, protocols: 'http,tcp', transport: 'http', live: null, durationS: null, container: null };
    }
    this.httpRelay ??= await LoopbackRelay.start(
      (req, res, relaySignal) => this.serve(req, res, relaySignal),
      (error) => (this.error = isVigilError(error) ? error : networkError(error, this.spec.display)),
    );
    return { ...endpoint, input: this.httpRelay.url };
  }

  /** One ffmpeg request to the loopback relay. */
  private async serve(req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    const mode = this.mode;
    const fetcher = this.fetcher;
    if (!mode || !fetcher) throw new VigilError('CANCELLED', `"${this.spec.display}" is not open.`);
    if (mode.kind === 'progressive') {
      const range = req.headers.range;
      const response = await fetcher.get(mode.url, { signal, ...(range ? { range } : {}) });
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      for (const name of ['content-length', 'content-range', 'accept-ranges']) {
        const value = response.headers[name];
        if (value !== undefined) headers[name] = value;
      }
      res.writeHead(response.status, headers);
      try {
        await pipeline(response.body, res, { signal });
      } catch (error) {
        response.body.destroy();
        // ffmpeg closing the connection (a seek, or the end of a run) is normal.
        if (!signal.aborted) throw error;
      }
      return;
    }
    res.writeHead(200, { 'content-type': mode.info.demuxer === 'mov' ? 'video/mp4' : 'video/mp2t' });
    await writeHls(fetcher, mode.info, this.spec.display, res, signal);
    res.end();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.all([this.httpRelay?.dispose(), this.rtspRelay?.dispose(), this.fetcher?.dispose()]);
  }
}

/**
 * Reads a response's first bytes and decides what it is. A media body is closed right after (the
 * relay fetches it again for ffmpeg, with Range); an HLS playlist is read to its end.
 */
async function sniffBody(body: Readable, display: string, signal?: AbortSignal): Promise<{ sniffed: Sniffed; bytes: Buffer }> {
  const chunks: Buffer[] = [];
  let total = 0;
  let sniffed: Sniffed | null = null;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      if (total > MAX_PLAYLIST_BYTES) throw new VigilError('SOURCE_FAILED', `"${display}": the playlist is larger than ${MAX_PLAYLIST_BYTES >> 20} MiB.`);
      sniffed ??= total >= SNIFF_BYTES ? sniffContainer(Buffer.concat(chunks)) : null;
      // Leaving the loop destroys the body: a live stream is not read on.
      if (sniffed && !(sniffed.kind === 'playlist' && sniffed.format === 'hls')) break;
    }
  } catch (error) {
    throw isVigilError(error) ? error : networkError(error, display, signal);
  }
  if (total === 0) throw new VigilError('NOT_A_VIDEO', `Cannot read video source "${display}": the server sent an empty answer.`);
  const bytes = Buffer.concat(chunks);
  return { sniffed: sniffed ?? sniffContainer(bytes), bytes };
}
