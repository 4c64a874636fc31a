// The replication manifest: one JSON object per stream in the bucket (`<stream>/replication.json`),
// written last, after every object it lists, so it always names a complete snapshot. It lists what
// a restore needs: each file of the stream folder (relative path) as pieces (object, offset, size,
// SHA-256), and the recovery point (the newest chunk the snapshot holds).
import { VigilError } from '../../common/errors.js';
import type { ExpectedPiece } from './objectStoreFiles.js';

export const REPLICATION_FORMAT = 'vigil-replication';
export const REPLICATION_VERSION = 1;

/** One piece of a file: bytes [offset, offset + size) are the object's. */
export interface FilePiece extends ExpectedPiece {
  offset: number;
}

export interface ReplicatedFile {
  /** Relative to the stream folder, '/'-separated: kv/..., index/..., index-blocks/... */
  path: string;
  size: number;
  pieces: FilePiece[];
}

/** The newest chunk a snapshot holds: what a failover keeps. */
export interface RecoveryPoint {
  chunkId: number;
  /** Its end, stream seconds. */
  streamTime: number;
  /** Its wall time, ms since the epoch. */
  wallTime: number;
}

export interface ReplicationManifest {
  format: typeof REPLICATION_FORMAT;
  version: typeof REPLICATION_VERSION;
  streamId: string;
  /** Increases with every snapshot of this stream (across replicator restarts). */
  seq: number;
  /** Wall ms when the snapshot was taken (the manifest backup). */
  takenAt: number;
  /** The store's `created_wall`: a snapshot's pieces are reused only by the same store. */
  storeCreated: number;
  /** null: the store held no chunk yet. */
  recoveryPoint: RecoveryPoint | null;
  files: ReplicatedFile[];
  /**
   * Taken after the owner stopped ingesting to hand the stream over (a drain, a clean stop): it
   * holds everything the owner stored, so a restore from it records no gap.
   */
  handedOver?: boolean;
}

/** Object names of one stream; every name starts with `<stream>/`. */
export function manifestObject(streamId: string): string {
  return `${streamId}/replication.json`;
}

export function pieceObject(streamId: string, sha256: string): string {
  return `${streamId}/piece/${sha256}`;
}

/** Every object a manifest references. */
export function referencedObjects(manifest: ReplicationManifest): Set<string> {
  const names = new Set<string>();
  for (const f of manifest.files) for (const p of f.pieces) names.add(p.object);
  return names;
}

// The memory (kv/, index/, index-blocks/) and the small files of replicationSnapshot.ts SMALL_FILES.
const FILE_PATH = /^(kv\/(manifest\.sqlite|seg-\d{6,}\.kvseg)|index\/[\w.-]+(\/[\w.-]+)*|index-blocks\/[\w.-]+|watches\/(watches\.json|alerts\.ndjson)|source-probe\.json)$/;

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Parses and checks a manifest read from the bucket (STORE_CORRUPT naming the problem). */
export function parseReplicationManifest(text: string, streamId: string): ReplicationManifest {
  const bad = (why: string): VigilError => new VigilError('STORE_CORRUPT', `replication manifest of stream '${streamId}': ${why}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  const m = value as Partial<ReplicationManifest>;
  if (typeof m !== 'object' || m === null || m.format !== REPLICATION_FORMAT) throw bad('not a Vigil replication manifest');
  if (m.version !== REPLICATION_VERSION) throw bad(`unsupported version ${JSON.stringify(m.version)}`);
  if (m.streamId !== streamId) throw bad(`it is for stream ${JSON.stringify(m.streamId)}`);
  if (!isCount(m.seq) || typeof m.takenAt !== 'number' || typeof m.storeCreated !== 'number') throw bad('bad seq, takenAt or storeCreated');
  const rp = m.recoveryPoint;
  if (rp !== null && (typeof rp !== 'object' || rp === undefined || !isCount(rp.chunkId) || !Number.isFinite(rp.streamTime) || !Number.isFinite(rp.wallTime))) throw bad('bad recovery point');
  if (m.handedOver !== undefined && typeof m.handedOver !== 'boolean') throw bad('bad handedOver');
  if (!Array.isArray(m.files)) throw bad('no file list');
  const seen = new Set<string>();
  for (const f of m.files) {
    if (typeof f?.path !== 'string' || !FILE_PATH.test(f.path) || f.path.split('/').includes('..') || seen.has(f.path)) throw bad(`bad file path ${JSON.stringify(f?.path)}`);
    seen.add(f.path);
    if (!isCount(f.size) || !Array.isArray(f.pieces)) throw bad(`bad size or pieces of ${f.path}`);
    let end = 0;
    for (const p of f.pieces) {
      if (!isCount(p?.offset) || !isCount(p.size) || typeof p.object !== 'string' || !p.object.startsWith(`${streamId}/`) || typeof p.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256)) {
        throw bad(`bad piece of ${f.path}`);
      }
      if (p.offset !== end) throw bad(`pieces of ${f.path} do not tile the file (a piece at ${p.offset}, expected ${end})`);
      end += p.size;
    }
    if (end !== f.size) throw bad(`pieces of ${f.path} cover ${end} bytes, the file has ${f.size}`);
  }
  if (!seen.has('kv/manifest.sqlite')) throw bad('it lists no kv/manifest.sqlite');
  return m as ReplicationManifest;
}
