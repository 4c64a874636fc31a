/**
 * The two sets of URLs the relay stands between: the camera's (`Target`, parsed from the source URL
 * or a redirect's Location) and the relay's own rtsp://127.0.0.1:PORT base that ffmpeg sees. Request
 * URIs are mapped to the camera; every absolute rtsp(s):// URL a camera sends back (Content-Base,
 * Content-Location, RTP-Info url=, SDP a=control:) is mapped to the relay, so ffmpeg has nowhere
 * else to go.
 */
import { VigilError } from '../../../common/errors.js';
import { header, type RtspMessage, setHeader } from './framing.js';

export interface Target {
  scheme: 'rtsp:' | 'rtsps:';
  host: string; // as in the URL (IPv6 in brackets)
  port: number;
  /** scheme://host[:port] as written, no credentials. */
  base: string;
  /** The full URL without credentials. */
  href: string;
}

const DEFAULT_PORTS: Record<string, number> = { 'rtsp:': 554, 'rtsps:': 322 };

export function parseTarget(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new VigilError('BAD_INPUT', 'not a valid rtsp:// URL');
  }
  const scheme = u.protocol.toLowerCase();
  if (scheme !== 'rtsp:' && scheme !== 'rtsps:') throw new VigilError('SOURCE_SCHEME', `the RTSP relay takes rtsp:// or rtsps:// URLs, not ${scheme}`);
  if (!u.hostname) throw new VigilError('BAD_INPUT', 'the RTSP URL has no host');
  const port = u.port ? Number(u.port) : DEFAULT_PORTS[scheme]!;
  const base = `${scheme}//${u.host}`;
  return { scheme, host: u.hostname, port, base, href: `${base}${u.pathname}${u.search}` };
}

/** A URI under the relay's base, moved to the upstream's base; any other URI unchanged. */
export function toUpstreamBase(uri: string, relayBase: string, upstreamBase: string): string {
  if (uri.toLowerCase().startsWith(relayBase) && (uri.length === relayBase.length || '/?'.includes(uri[relayBase.length]!))) return upstreamBase + uri.slice(relayBase.length);
  return uri;
}

/** Any absolute rtsp(s):// URL, moved to the relay's base. */
export function toRelayUrl(url: string, relayBase: string): string {
  return url.replace(/^rtsps?:\/\/[^/?#\s]*/i, relayBase);
}

/** Rewrites every absolute rtsp(s):// URL in a message from upstream that ffmpeg could use, and drops Location. */
export function rewriteToRelay(m: RtspMessage, relayBase: string): void {
  for (const name of ['Content-Base', 'Content-Location']) {
    const v = header(m, name);
    if (v !== undefined) setHeader(m, name, toRelayUrl(v, relayBase));
  }
  const rtpInfo = header(m, 'RTP-Info');
  if (rtpInfo !== undefined) {
    // ffmpeg matches these URLs against its control URLs (seq / rtptime of each stream).
    setHeader(m, 'RTP-Info', rtpInfo.replace(/(^|[,\s])url=("?)(rtsps?:\/\/[^;,"]*)/gi, (_all, lead: string, q: string, url: string) => `${lead}url=${q}${toRelayUrl(url, relayBase)}`));
  }
  setHeader(m, 'Location', null);
  const type = header(m, 'content-type') ?? '';
  if (m.body.length > 0 && /application\/sdp/i.test(type)) {
    const sdp = m.body.toString('utf8');
    const rewritten = sdp.replace(/^(a=control:)(rtsps?:\/\/[^\r\n]*)$/gim, (_all, prefix: string, url: string) => prefix + toRelayUrl(url, relayBase));
    if (rewritten !== sdp) m.body = Buffer.from(rewritten, 'utf8');
  }
}
