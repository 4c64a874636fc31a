/**
 * Answering a camera's 401 on ffmpeg's behalf (RFC 2617 / 7616, for RTSP and HTTP sources), so the
 * credentials in the camera URL stay in Vigil and never reach ffmpeg: parsing WWW-Authenticate,
 * picking the strongest challenge we can answer (Digest MD5 / MD5-sess / SHA-256, with and without
 * qop=auth, else Basic) and computing the Authorization of each request (Digest nc counting).
 */
import { createHash, randomBytes } from 'node:crypto';

export interface Credentials {
  username: string;
  password: string;
}

/** The user:password@ of a URL (percent-decoded where valid), or null when it has none. */
export function credentialsOf(url: URL): Credentials | null {
  return url.username || url.password ? { username: safeDecode(url.username), password: safeDecode(url.password) } : null;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export interface Challenge {
  scheme: string; // lower case
  params: Record<string, string>; // keys lower case
}

/** Parses WWW-Authenticate values (several challenges per value allowed). */
export function parseChallenges(values: string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    let current: Challenge | null = null;
    while (i < value.length) {
      while (i < value.length && /[\s,]/.test(value[i]!)) i++;
      const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(value.slice(i))?.[0];
      if (!token) break;
      i += token.length;
      while (i < value.length && value[i] === ' ') i++;
      if (value[i] !== '=') {
        current = { scheme: token.toLowerCase(), params: {} };
        out.push(current);
        continue;
      }
      if (!current) break;
      i++;
      while (i < value.length && value[i] === ' ') i++;
      let v = '';
      if (value[i] === '"') {
        i++;
        while (i < value.length && value[i] !== '"') {
          if (value[i] === '\\' && i + 1 < value.length) i++;
          v += value[i++];
        }
        i++;
      } else {
        v = /^[^,\s]*/.exec(value.slice(i))![0];
        i += v.length;
      }
      current.params[token.toLowerCase()] = v;
    }
  }
  return out;
}

const DIGEST_HASHES: Record<string, string> = { 'md5': 'md5', 'md5-sess': 'md5', 'sha-256': 'sha256', 'sha-256-sess': 'sha256' };

export interface DigestInput {
  username: string;
  password: string;
  realm: string;
  nonce: string;
  method: string;
  uri: string;
  algorithm?: string;
  qop?: 'auth';
  nc?: number;
  cnonce?: string;
}

export function digestResponse(d: DigestInput): string {
  const algorithm = (d.algorithm ?? 'MD5').toLowerCase();
  const hashName = DIGEST_HASHES[algorithm];
  if (!hashName) throw new Error(`unsupported digest algorithm ${d.algorithm}`);
  const h = (s: string) => createHash(hashName).update(s, 'utf8').digest('hex');
  let ha1 = h(`${d.username}:${d.realm}:${d.password}`);
  if (algorithm.endsWith('-sess')) ha1 = h(`${ha1}:${d.nonce}:${d.cnonce ?? ''}`);
  const ha2 = h(`${d.method}:${d.uri}`);
  if (d.qop) return h(`${ha1}:${d.nonce}:${ncText(d.nc ?? 1)}:${d.cnonce ?? ''}:${d.qop}:${ha2}`);
  return h(`${ha1}:${d.nonce}:${ha2}`);
}

const ncText = (nc: number) => nc.toString(16).padStart(8, '0');
const quote = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;
const qopList = (c: Challenge) => (c.params.qop ?? '').split(',').map((s) => s.trim().toLowerCase());

/** Authorizes the requests of one upstream connection against the challenge it chose. */
export class Authenticator {
  private nc = 0;

  private constructor(
    private readonly credentials: Credentials,
    private readonly challenge: Challenge,
  ) {}

  /** Picks the strongest challenge the relay can answer, or null. */
  static choose(credentials: Credentials, challenges: Challenge[]): Authenticator | null {
    const digests = challenges.filter((c) => c.scheme === 'digest' && c.params.nonce !== undefined && DIGEST_HASHES[(c.params.algorithm ?? 'MD5').toLowerCase()]);
    const usable = digests.filter((c) => c.params.qop === undefined || qopList(c).includes('auth'));
    const rank = (c: Challenge) => ((c.params.algorithm ?? 'md5').toLowerCase().startsWith('sha-256') ? 1 : 0);
    const digest = usable.sort((a, b) => rank(b) - rank(a))[0];
    if (digest) return new Authenticator(credentials, digest);
    const basic = challenges.find((c) => c.scheme === 'basic');
    return basic ? new Authenticator(credentials, basic) : null;
  }

  get stale(): boolean {
    return this.challenge.params.stale?.toLowerCase() === 'true';
  }

  authorization(method: string, uri: string): string {
    const { username, password } = this.credentials;
    if (this.challenge.scheme !== 'digest') return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
    const p = this.challenge.params;
    const qop = p.qop !== undefined ? ('auth' as const) : undefined;
    const nc = ++this.nc;
    const cnonce = randomBytes(8).toString('hex');
    const response = digestResponse({ username, password, realm: p.realm ?? '', nonce: p.nonce!, method, uri, algorithm: p.algorithm, qop, nc, cnonce });
    const parts = [`username=${quote(username)}`, `realm=${quote(p.realm ?? '')}`, `nonce=${quote(p.nonce!)}`, `uri=${quote(uri)}`, `response=${quote(response)}`];
    if (p.algorithm) parts.push(`algorithm=${p.algorithm}`);
    if (p.opaque !== undefined) parts.push(`opaque=${quote(p.opaque)}`);
    if (qop) parts.push(`qop=${qop}`, `nc=${ncText(nc)}`, `cnonce=${quote(cnonce)}`);
    return `Digest ${parts.join(', ')}`;
  }
}
