import fs from 'node:fs';
import path from 'node:path';
import { parseSource, type SourceSpec } from '../../../ingest/index.js';
import { sniffFile } from '../../../ingest/net/containerSniff.js';
import { type HostLookup, OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';
import { VigilError } from '../../../common/errors.js';

export interface SourcePolicyOptions {
  /** URL schemes a stream source may use. Default rtsp, rtsps, http, https (file sources need `filesDir`). */
  allowedSchemes?: readonly string[];
  /** Let URLs reach loopback, private and link-local addresses. Default false. */
  allowPrivateNetworks?: boolean;
  /** Addresses or CIDR ranges exempt from the private-network rule (e.g. a camera VLAN, or 127.0.0.1 in tests). */
  allowNetworks?: readonly string[];
  /** Server-side video files may be read from this folder (and below), nowhere else. Default: none. */
  filesDir?: string | null;
  /** Name resolution for the address checks (tests inject DNS rebinding here). Default: the system resolver. */
  lookup?: HostLookup;
}

export interface CheckedSource {
  spec: SourceSpec;
  /** Safe to print: the URL without user:password, or the file path. */
  display: string;
}

const DEFAULT_SCHEMES = ['rtsp', 'rtsps', 'http', 'https'];

/**
 * What an API caller may ingest. URLs: an allowed scheme, and a host whose every address is public
 * unless its range is explicitly allowed. That check runs here, when the stream is created (so the
 * caller gets a 403 at once), and again by the ingest's OutboundPolicy at EVERY connection the
 * source causes (reconnects, redirects, HLS playlists and segments, RTSP redirects), on the resolved
 * address, which defeats DNS rebinding. Files: only below `filesDir`, after resolving symlinks, so
 * neither `../` nor a link can leave it, and only plain video containers (checked from the content:
 * playlists and other indirection formats are refused whatever the name says).
 */
export class SourcePolicy {
  private readonly schemes: string[];
  private readonly filesDir: string | null;
  /** The connection policy that ingest applies to API callers' sources. */
  readonly outbound: OutboundPolicy;

  constructor(private readonly options: SourcePolicyOptions = {}) {
    this.schemes = (options.allowedSchemes ?? DEFAULT_SCHEMES).map((s) => s.toLowerCase());
    this.filesDir = options.filesDir ? path.resolve(options.filesDir) : null;
    this.outbound = new OutboundPolicy({
      ...(options.allowPrivateNetworks !== undefined ? { allowPrivateNetworks: options.allowPrivateNetworks } : {}),
      ...(options.allowNetworks ? { allowNetworks: options.allowNetworks } : {}),
      ...(options.lookup ? { lookup: options.lookup } : {}),
    });
  }

  /** The policy for a stream's connections: the URL policy for API callers, none for operator-declared cameras. */
  outboundFor(origin: 'api' | 'config'): OutboundPolicy {
    return origin === 'api' ? this.outbound : OutboundPolicy.trusted;
  }

  /** An uploaded file: refused (SOURCE_FORBIDDEN / NOT_A_VIDEO) unless its content is a plain video container. */
  checkUpload(file: string, display: string): void {
    sniffFile(file, display);
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
    await this.outbound.resolve(new URL(text).hostname, spec.display);
    return { spec, display: spec.display };
  }

  /** Checks only the syntax and scheme, for sources the operator declared (config cameras). */
  checkTrusted(source: string): CheckedSource {
    const spec = parseSource(source.trim());
    return { spec, display: spec.display };
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
    const display = path.relative(this.filesDir, resolved);
    sniffFile(real, display);
    return { spec: { ...spec, display }, display };
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
