// Restores a stream's memory from its newest complete snapshot in the object store (replication.ts)
// into an empty folder, so that StreamSession.open (the store's recovery, the index's
// reconciliation) opens it like any stream folder. Every piece is checked (present, size, SHA-256
// as recorded) before the folder appears: a missing or damaged object fails the restore with
// STORE_CORRUPT naming it, and nothing is left at `dir`. What the stream saw after the recovery
// point is not in the snapshot: it is recorded as a gap, from the recovery point to the restore.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, open, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { ObjectStore } from 'nats';
import { isVigilError, VigilError } from '../../common/errors.js';
import { ChunkStore } from '../../memory/store/index.js';
import { checkStreamId, streamStoreDir } from '../engine/dataLayout.js';
import { getPiece, withTimeout } from './objectStoreFiles.js';
import { manifestObject, parseReplicationManifest, type RecoveryPoint, type ReplicationManifest } from './replicationManifest.js';

/** The reason of the gap a restore records (what the lost owner saw after the last snapshot). */
export const REPLICATION_GAP_REASON = 'not replicated: seen by the previous owner after its last snapshot (failover)';

export interface RestoreOptions {
  /** End of the gap, stream seconds; default the recovery point's stream time plus the wall time elapsed since its chunk. */
  gapEnd?: number;
  /** Per object: no data for this long fails the restore (STORE_IO); default 60,000 ms. */
  objectTimeoutMs?: number;
}

export interface RestoreReport {
  seq: number;
  takenAt: number;
  recoveryPoint: RecoveryPoint | null;
  files: number;
  bytes: number;
  ms: number;
  /** The gap recorded for what came after the recovery point (null: the snapshot held no chunk). */
  gap: { tStart: number; tEnd: number; reason: string } | null;
}

/** A restore that found an object gone retries this often when a newer snapshot replaced the one it read. */
const RESTORE_TRIES = 3;

function isEmptyOrAbsent(dir: string): boolean {
  if (!fs.existsSync(dir)) return true;
  return fs.statSync(dir).isDirectory() && fs.readdirSync(dir).length === 0;
}

async function readManifest(bucket: ObjectStore, streamId: string, timeoutMs: number): Promise<ReplicationManifest> {
  let data: Uint8Array | null;
  try {
    data = await withTimeout(bucket.getBlob(manifestObject(streamId)), timeoutMs, `reading the replication manifest of stream '${streamId}'`);
  } catch (error) {
    if (isVigilError(error)) throw error;
    // The client's digest check says "corrupt"; anything else is NATS itself (timeout, no responders).
    const message = (error as Error).message;
    throw new VigilError(/corrupt/i.test(message) ? 'STORE_CORRUPT' : 'STORE_IO', `replication manifest of stream '${streamId}' could not be read: ${message}`, { cause: error });
  }
  if (data === null) throw new VigilError('FILE_NOT_FOUND', `no replicated snapshot of stream '${streamId}' in the object store`);
  return parseReplicationManifest(Buffer.from(data).toString('utf8'), streamId);
}

/** Downloads every file of the manifest into `staging`, each piece checked; returns the bytes written. */
async function download(bucket: ObjectStore, manifest: ReplicationManifest, staging: string, timeoutMs: number): Promise<number> {
  let bytes = 0;
  for (const file of manifest.files) {
    const target = path.join(staging, ...file.path.split('/'));
    await mkdir(path.dirname(target), { recursive: true });
    const handle = await open(target, 'w');
    try {
      for (const piece of file.pieces) {
        const data = await getPiece(bucket, piece, `${file.path} bytes ${piece.offset}..${piece.offset + piece.size}`, timeoutMs);
        await handle.write(data, 0, data.length, piece.offset);
        bytes += data.length;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  return bytes;
}

/**
 * Restores stream `streamId` from `bucket` into `dir` (absent or empty). Resolves once the folder
 * is complete, checked, and the gap after the recovery point is recorded in its manifest.
 */
export async function restoreStream(bucket: ObjectStore, streamId: string, dir: string, options: RestoreOptions = {}): Promise<RestoreReport> {
  const started = performance.now();
  checkStreamId(streamId);
  if (!isEmptyOrAbsent(dir)) throw new VigilError('BAD_INPUT', `cannot restore stream '${streamId}' into ${dir}: the folder is not empty`);
  const timeoutMs = options.objectTimeoutMs ?? 60_000;
  let manifest = await readManifest(bucket, streamId, timeoutMs);
  let bytes = 0;
  for (let attempt = 1; ; attempt++) {
    const staging = `${dir}.restoring-${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(staging, { recursive: true });
      bytes = await download(bucket, manifest, staging, timeoutMs);
      if (fs.existsSync(dir)) await rmdir(dir);
      await rename(staging, dir);
      break;
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      // An object gone because the owner took a newer snapshot meanwhile (its old pieces deleted): read the new one.
      if (!isVigilError(error) || error.code !== 'STORE_CORRUPT' || attempt >= RESTORE_TRIES) throw error;
      const newer = await readManifest(bucket, streamId, timeoutMs);
      if (newer.seq === manifest.seq) throw error;
      manifest = newer;
    }
  }
  const rp = manifest.recoveryPoint;
  let gap: RestoreReport['gap'] = null;
  if (rp !== null && manifest.handedOver !== true) {
    const tEnd = Math.max(rp.streamTime, options.gapEnd ?? rp.streamTime + Math.max(0, (Date.now() - rp.wallTime) / 1000));
    gap = { tStart: rp.streamTime, tEnd, reason: REPLICATION_GAP_REASON };
    const store = ChunkStore.open({ dir: streamStoreDir(dir), create: false });
    try {
      store.recordGap(gap);
    } finally {
      await store.dispose();
    }
  }
  return { seq: manifest.seq, takenAt: manifest.takenAt, recoveryPoint: rp, files: manifest.files.length, bytes, ms: performance.now() - started, gap };
}
