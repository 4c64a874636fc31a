import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { removeStalePartials } from '../../common/stalePartials.js';

interface CacheEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/**
 * sha256 of a file's content, remembered in `cacheFile` by (path, size, mtime) so a 2 GB video or
 * model is hashed once, not on every question. A changed size or mtime means a fresh hash.
 */
export async function contentHash(file: string, cacheFile: string): Promise<string> {
  const resolved = path.resolve(file);
  const stat = fs.statSync(resolved);
  const cache = readCache(cacheFile);
  const hit = cache[resolved];
  if (hit && hit.size === stat.size && hit.mtimeMs === stat.mtimeMs) return hit.sha256;
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(resolved, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  cache[resolved] = { size: stat.size, mtimeMs: stat.mtimeMs, sha256 };
  writeCache(cacheFile, cache);
  return sha256;
}

function readCache(file: string): Record<string, CacheEntry> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, CacheEntry>;
  } catch {
    return {};
  }
}

function writeCache(file: string, cache: Record<string, CacheEntry>): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  removeStalePartials(file);
  const partial = `${file}.partial-${process.pid}`;
  fs.writeFileSync(partial, JSON.stringify(cache));
  fs.renameSync(partial, file);
}
