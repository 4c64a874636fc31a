import dns from 'node:dns/promises';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseSource, redactUrl, type SourceSpec } from '../../../ingest/index.js';
import { VigilError } from '../../../common/errors.js';
import { AddressSet, PRIVATE_RANGES } from '../../../ingest/net/addressSet.js';

export interface SourcePolicyOptions {
  /** URL schemes a stream source may use. Default rtsp, rtsps, http, https (file sources need `filesDir`). */
  allowedSchemes?: readonly string[];
  /** Let URLs reach loopback, private and link-local addresses. Default false. */
  allowPrivateNetworks?: boolean;
  /** Addresses or CIDR ranges exempt from the private-network rule (e.g. a camera VLAN, or 127.0.0.1 in tests). */
  allowNetworks?: readonly string[];
  /** Server-side video files may be read from this folder (and below), nowhere else. Default: none. */
  filesDir?: string | null;
}

export interface CheckedSource {
  spec: SourceSpec;
  /** Safe to print: the URL without user:password, or the file path. */
  display: string;
}

const DEFAULT_SCHEMES = ['rtsp', 'rtsps', 'http', 'https'];

/**
 * What an API caller may ingest. URLs: an allowed scheme, and a host whose every address is public
 * unless its range is explicitly allowed (checked on the resolved addresses, so a name that points at
 * 127.0.0.1 is refused too). Files: only below `filesDir`, after resolving symlinks, so neither
 * `../` nor a link can leave it; relative paths are taken relative to `filesDir`.
 *
 * Known limit: the check runs when the stream is created and when it is restored; a DNS name that
 * later changes to a private address (rebinding) is not re-checked on every reconnect.
 */
export class SourcePolicy {
  private readonly schemes: string[];
  private readonly blocked: AddressSet;
  private readonly allowed: AddressSet;
  private readonly filesDir: string | null;

  constructor(private readonly options: SourcePolicyOptions = {}) {
    this.schemes = (options.allowedSchemes ?? DEFAULT_SCHEMES).map((s) => s.toLowerCase());
    this.blocked = new AddressSet(PRIVATE_RANGES);
    this.allowed = new AddressSet(options.allowNetworks ?? []);
    this.filesDir = options.filesDir ? path.resolve(options.filesDir) : null;
  }

  /** Checks a source from an untrusted caller; throws SOURCE_FORBIDDEN (or the parse error) when refused. */
  async check(source: string): Promise<CheckedSource> {
    const text = source.trim();
    if (isFileLike(text)) return this.checkFile(text);
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)![1]!.toLowerCase();
    if (!this.schemes.includes(scheme)) {
      throw new VigilError('SOURCE_SCHEME', `URL scheme "${scheme}:" is not allowed for a stream source (allowed: ${this.schemes.map((s) => `${s}:`).join(', ')}).`);
    }
    const spec = parseSource(text, { allowedSchemes: this.schemes });
    if (!this.options.allowPrivateNetworks) await this.checkHost(new URL(text).hostname, spec.display);
    return { spec, display: spec.display };
  }

  /** Checks only the syntax and scheme, for sources the operator declared (config cameras). */
  checkTrusted(source: string): CheckedSource {
    const spec = parseSource(source.trim());
    return { spec, display: spec.display };
  }

  private async checkHost(hostname: string, display: string): Promise<void> {
    const host = hostname.replace(/^\[(.*)\]$/, '$1');
    let addresses: string[];
    if (net.isIP(host)) addresses = [host];
    else {
      try {
        addresses = (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
      } catch (error) {
        throw new VigilError('SOURCE_UNREACHABLE', `cannot resolve the host of "${display}"`, { cause: error });
      }
    }
    const refused = addresses.find((a) => this.blocked.has(a) && !this.allowed.has(a));
    if (refused !== undefined) {
      throw new VigilError(
        'SOURCE_FORBIDDEN',
        `"${redactUrl(display)}" points at a private or loopback address (${refused}); the server's URL policy does not allow it (allowNetworks / allowPrivateNetworks).`,
      );
    }
  }

  private checkFile(text: string): CheckedSource {
    if (!this.filesDir) {
      throw new VigilError('SOURCE_FORBIDDEN', 'server-side file sources are disabled on this server (start it with --allow-files DIR); upload the video instead.');
    }
    let file: string;
    try {
      file = text.toLowerCase().startsWith('file:') ? new URL(text).pathname : text;
      file = decodeURIComponent(file);
    } catch (error) {
      throw new VigilError('BAD_INPUT', `"${text}" is not a valid file path or file: URL`, { cause: error });
    }
    if (file.includes('\0')) throw new VigilError('BAD_INPUT', 'a file path cannot contain NUL');
    const resolved = path.resolve(this.filesDir, file);
    if (!inside(this.filesDir, resolved)) throw outside(text);
    let real: string;
    try {
      real = fs.realpathSync(resolved);
    } catch (error) {
      throw new VigilError('FILE_NOT_FOUND', `video file not found: "${file}"`, { cause: error });
    }
    // A symlink inside the folder may point anywhere: the real path must stay inside too.
    if (!inside(realOr(this.filesDir), real)) throw outside(text);
    const spec = parseSource(real, { allowedSchemes: ['file'] });
    return { spec, display: path.relative(this.filesDir, resolved) };
  }
}

function isFileLike(text: string): boolean {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text);
  return !scheme || scheme[1]!.toLowerCase() === 'file';
}

function inside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

function realOr(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    return dir;
  }
}

function outside(text: string): VigilError {
  return new VigilError('SOURCE_FORBIDDEN', `"${text}" is outside the folder this server may read videos from`);
}
