// Validates and completes ChunkStoreOptions, so every misuse fails at open with one clear line.
import { VigilError } from '../../common/errors.js';
import type { KvStorageDtype } from '../frameChunk.js';
import type { ChunkGeometry, ChunkStoreOptions, FsyncPolicy, RetentionPolicy } from './types.js';
import { isStorageDtype, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from './recordFormat.js';

export const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
/** Stream seconds kept at the stream's dtype under a demoting budget (retention.keepFullSec). */
export const DEFAULT_KEEP_FULL_SEC = 1800;
/** Share of a demoting budget that chunks holding KV may take before the oldest go to the archive (retention.kvShare). */
export const DEFAULT_KV_SHARE = 0.4;

export interface ResolvedOptions {
  dir: string;
  geometry: ChunkGeometry | undefined;
  dtype: KvStorageDtype | undefined;
  fsync: FsyncPolicy;
  segmentBytes: number;
  cacheBytes: number;
  retention: RetentionPolicy | undefined;
  recoveryCheck: 'auto' | 'full';
  create: boolean;
}

function bad(message: string): VigilError {
  return new VigilError('BAD_CONFIG', `memory store: ${message}`);
}

function positiveInt(name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw bad(`${name} must be an integer in 1..${max}, got ${String(v)}`);
  }
  return v;
}

export function validateGeometry(g: unknown): ChunkGeometry {
  if (typeof g !== 'object' || g === null) throw bad('geometry must be { numLayers, numKvHeads, headDim }');
  const x = g as Record<string, unknown>;
  // The record header keeps these as u16.
  return {
    numLayers: positiveInt('geometry.numLayers', x.numLayers, 65535),
    numKvHeads: positiveInt('geometry.numKvHeads', x.numKvHeads, 65535),
    headDim: positiveInt('geometry.headDim', x.headDim, 65535),
  };
}

export function validateFsyncPolicy(p: unknown): FsyncPolicy {
  if (p === 'every-chunk' || p === 'none') return p;
  if (typeof p === 'object' && p !== null) {
    const keys = Object.keys(p);
    const x = p as Record<string, unknown>;
    if (keys.length === 1 && keys[0] === 'everyChunks') return { everyChunks: positiveInt('fsync.everyChunks', x.everyChunks) };
    if (keys.length === 1 && keys[0] === 'intervalMs') return { intervalMs: positiveInt('fsync.intervalMs', x.intervalMs, 2 ** 31 - 1) };
  }
  throw bad(`fsync must be 'every-chunk' | 'none' | { everyChunks: N } | { intervalMs: N }, got ${JSON.stringify(p)}`);
}

/** A retention policy checked against the segment size (at open, and by ChunkStore.setRetention). */
export function validateRetention(r: unknown, segmentBytes: number): RetentionPolicy {
  if (typeof r !== 'object' || r === null) throw bad('retention must be { budgetBytes?, alsoCount?, maxBytes?, maxStreamAgeSec?, demote?, keepFullSec?, archive?, kvShare? }');
  const x = r as RetentionPolicy;
  const out: RetentionPolicy = {};
  // Whole segments are deleted and the one being written is kept: a limit under one segment cannot hold.
  if (x.budgetBytes !== undefined) {
    out.budgetBytes = positiveInt('retention.budgetBytes', x.budgetBytes);
    if (out.budgetBytes < segmentBytes) throw bad(`retention.budgetBytes ${out.budgetBytes} is below segmentBytes ${segmentBytes}`);
  }
  if (x.alsoCount !== undefined) {
    if (!Array.isArray(x.alsoCount) || !x.alsoCount.every((d) => typeof d === 'string' && d.length > 0)) throw bad('retention.alsoCount must be a list of folders');
    out.alsoCount = [...x.alsoCount];
  }
  if (x.maxBytes !== undefined) {
    out.maxBytes = positiveInt('retention.maxBytes', x.maxBytes);
    if (out.maxBytes < segmentBytes) throw bad(`retention.maxBytes ${out.maxBytes} is below segmentBytes ${segmentBytes}`);
  }
  if (x.maxStreamAgeSec !== undefined) {
    if (typeof x.maxStreamAgeSec !== 'number' || !(x.maxStreamAgeSec >= 0) || !Number.isFinite(x.maxStreamAgeSec)) {
      throw bad(`retention.maxStreamAgeSec must be a finite number >= 0, got ${String(x.maxStreamAgeSec)}`);
    }
    out.maxStreamAgeSec = x.maxStreamAgeSec;
  }
  if (x.demote !== undefined) {
    if (typeof x.demote !== 'boolean') throw bad(`retention.demote must be true or false, got ${String(x.demote)}`);
    out.demote = x.demote;
  }
  if (x.keepFullSec !== undefined) {
    if (typeof x.keepFullSec !== 'number' || !(x.keepFullSec >= 0) || !Number.isFinite(x.keepFullSec)) {
      throw bad(`retention.keepFullSec must be a finite number >= 0, got ${String(x.keepFullSec)}`);
    }
    out.keepFullSec = x.keepFullSec;
  }
  if (x.archive !== undefined) {
    if (typeof x.archive !== 'boolean') throw bad(`retention.archive must be true or false, got ${String(x.archive)}`);
    out.archive = x.archive;
  }
  if (x.kvShare !== undefined) {
    if (typeof x.kvShare !== 'number' || !(x.kvShare >= 0 && x.kvShare <= 1)) throw bad(`retention.kvShare must be a number from 0 to 1, got ${String(x.kvShare)}`);
    out.kvShare = x.kvShare;
  }
  return out;
}

export function resolveOptions(o: ChunkStoreOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw bad('options object required');
  if (typeof o.dir !== 'string' || o.dir.length === 0) throw bad('dir must be a non-empty path');
  const segmentBytes = o.segmentBytes === undefined ? DEFAULT_SEGMENT_BYTES : positiveInt('segmentBytes', o.segmentBytes);
  if (segmentBytes < SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) {
    throw bad(`segmentBytes ${segmentBytes} is smaller than one record header`);
  }
  const cacheBytes = o.cacheBytes ?? DEFAULT_CACHE_BYTES;
  if (typeof cacheBytes !== 'number' || !Number.isFinite(cacheBytes) || cacheBytes < 0) {
    throw bad(`cacheBytes must be >= 0, got ${String(cacheBytes)}`);
  }
  if (o.dtype !== undefined && !isStorageDtype(o.dtype)) {
    throw new VigilError('DTYPE_MISMATCH', `memory store: dtype must be 'float32' | 'float16' | 'int8' | 'kivi4', got ${String(o.dtype)}`);
  }
  const retention = o.retention === undefined ? undefined : validateRetention(o.retention, segmentBytes);
  const recoveryCheck = o.recoveryCheck ?? 'auto';
  if (recoveryCheck !== 'auto' && recoveryCheck !== 'full') throw bad(`recoveryCheck must be 'auto' | 'full'`);
  return {
    dir: o.dir,
    geometry: o.geometry === undefined ? undefined : validateGeometry(o.geometry),
    dtype: o.dtype,
    fsync: validateFsyncPolicy(o.fsync ?? 'every-chunk'),
    segmentBytes,
    cacheBytes,
    retention,
    recoveryCheck,
    create: o.create ?? true,
  };
}
