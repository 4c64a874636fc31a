// Takes a consistent local snapshot of one stream folder, without stopping its writer:
// - the manifest through SQLite's online backup (better-sqlite3 `backup()`) into a temp file, never
//   a copy of the live file (WAL pages, torn pages). The backup restarts by itself if the writer
//   commits meanwhile, so the copy is one committed state;
// - from that copy: which segments it references and up to where (`committed_end`): committed
//   records are never rewritten in place (appends go past them; demotion writes a new segment, then
//   deletes the old one), so those byte ranges can be read from the live files later;
// - the saved retrieval index (index/, replaced whole by each save: copied, then checked that no
//   save swapped it meanwhile) and the sealed blocks it lists (immutable files in index-blocks/).
import fs from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { streamIndexBlocksDir, streamIndexDir, streamStoreDir } from '../engine/dataLayout.js';
import { SOURCE_PROBE_FILE } from '../engine/manager/sourceProbeFile.js';
import type { RecoveryPoint } from './replicationManifest.js';

export const MANIFEST_FILE = 'manifest.sqlite';

/** A segment the snapshot's manifest references: its committed bytes are [0, committedEnd). */
export interface SegmentExtent {
  segment: number;
  committedEnd: number;
  /** Relative path in the stream folder. */
  path: string;
}

/** A file to replicate whole: `path` in the stream folder, bytes read from `source`. */
export interface WholeFile {
  path: string;
  source: string;
  /** Immutable while it exists (sealed index blocks): its pieces may be reused by name. */
  immutable: boolean;
}

export interface LocalSnapshot {
  takenAt: number;
  storeCreated: number;
  recoveryPoint: RecoveryPoint | null;
  /** The manifest backup (in `scratch`). */
  manifestCopy: string;
  segments: SegmentExtent[];
  /** The saved index (copies in `scratch`) and its sealed blocks (live files); empty when none was saved or none could be copied whole. */
  indexFiles: WholeFile[];
  /** Temp folder of this snapshot: removed by disposeSnapshot. */
  scratch: string;
}

/** Pages per backup step: a manifest of tens of MB goes in a few steps (each a short read transaction). */
const BACKUP_STEP_PAGES = 4096;
/** Tries to copy the index folder before a snapshot goes without it (a save swapped it each time). */
const INDEX_COPY_TRIES = 3;

export function manifestPath(streamDir: string): string {
  return path.join(streamStoreDir(streamDir), MANIFEST_FILE);
}

/** A read-only connection to the live manifest (the writer keeps it in WAL mode, so reading beside it is safe). */
export function openManifestReader(streamDir: string): Database.Database | null {
  const file = manifestPath(streamDir);
  if (!fs.existsSync(file)) return null;
  return new Database(file, { readonly: true, fileMustExist: true });
}

/** The newest committed chunk of a manifest connection (one primary-key seek). */
export function newestChunk(db: Database.Database): RecoveryPoint | null {
  const row = db.prepare('SELECT chunk_id AS chunkId, t_end AS streamTime, wall_time AS wallTime FROM chunks ORDER BY chunk_id DESC LIMIT 1').get() as RecoveryPoint | undefined;
  return row ?? null;
}

/** The oldest committed chunk's wall time (ms), null when empty. */
export function oldestWallTime(db: Database.Database): number | null {
  const row = db.prepare('SELECT wall_time AS w FROM chunks ORDER BY chunk_id ASC LIMIT 1').get() as { w: number } | undefined;
  return row?.w ?? null;
}

/** Changes whenever another connection (the writer) commits: a cheap "anything new?" probe. */
export function dataVersion(db: Database.Database): number {
  return db.pragma('data_version', { simple: true }) as number;
}

export async function captureSnapshot(db: Database.Database, streamDir: string, tempRoot: string): Promise<LocalSnapshot> {
  const scratch = await mkdtemp(path.join(tempRoot, 'vigil-replica-'));
  try {
    const takenAt = Date.now();
    const manifestCopy = path.join(scratch, MANIFEST_FILE);
    await db.backup(manifestCopy, { progress: () => BACKUP_STEP_PAGES });
    const copy = new Database(manifestCopy, { readonly: true, fileMustExist: true });
    let storeCreated: number;
    let recoveryPoint: RecoveryPoint | null;
    let segments: SegmentExtent[];
    try {
      storeCreated = (copy.prepare('SELECT created_wall AS c FROM stream WHERE id = 1').get() as { c: number }).c;
      recoveryPoint = newestChunk(copy);
      const rows = copy.prepare('SELECT segment_id AS segment, committed_end AS committedEnd FROM segment_summaries ORDER BY segment_id').all() as Array<{ segment: number; committedEnd: number }>;
      segments = rows.map((r) => ({ ...r, path: `kv/seg-${String(r.segment).padStart(6, '0')}.kvseg` }));
    } finally {
      copy.close();
    }
    const indexFiles = await copyIndex(streamDir, path.join(scratch, 'index'));
    for (const file of await copySmallFiles(streamDir, path.join(scratch, 'small'))) indexFiles.push(file);
    return { takenAt, storeCreated, recoveryPoint, manifestCopy, segments, indexFiles, scratch };
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
}

export async function disposeSnapshot(snapshot: LocalSnapshot): Promise<void> {
  await rm(snapshot.scratch, { recursive: true, force: true });
}

/**
 * Small files of the stream folder rewritten whole or appended to, copied so that a new owner keeps
 * them: the watches and their alert history (the watches' ids and alerts; at most a few MB, the
 * alert history is bounded) and the source's last probe (its first connection skips probing). A
 * file that is absent, or vanishes meanwhile, is left out.
 */
export const SMALL_FILES: readonly string[] = ['watches/watches.json', 'watches/alerts.ndjson', SOURCE_PROBE_FILE];

async function copySmallFiles(streamDir: string, dest: string): Promise<WholeFile[]> {
  const files: WholeFile[] = [];
  for (const name of SMALL_FILES) {
    const target = path.join(dest, ...name.split('/'));
    try {
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(path.join(streamDir, ...name.split('/')), target);
      files.push({ path: name, source: target, immutable: false });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return files;
}

/** What identifies one saved index: the folder (a save renames a new one in) and its meta file. */
async function indexIdentity(dir: string): Promise<{ ino: number; meta: Buffer } | null> {
  try {
    const { ino } = await stat(dir);
    return { ino, meta: await readFile(path.join(dir, 'index.json')) };
  } catch {
    return null;
  }
}

/** Copies the saved index whole (or nothing) and lists the sealed blocks it stands on. */
async function copyIndex(streamDir: string, dest: string): Promise<WholeFile[]> {
  const dir = streamIndexDir(streamDir);
  for (let attempt = 0; attempt < INDEX_COPY_TRIES; attempt++) {
    const before = await indexIdentity(dir);
    if (before === null) return [];
    try {
      await cp(dir, dest, { recursive: true });
    } catch {
      await rm(dest, { recursive: true, force: true });
      continue; // swapped away under the copy
    }
    const after = await indexIdentity(dir);
    if (after === null || after.ino !== before.ino || !after.meta.equals(before.meta)) {
      await rm(dest, { recursive: true, force: true });
      continue;
    }
    const files: WholeFile[] = [];
    for (const source of filesUnder(dest)) files.push({ path: `index/${path.relative(dest, source).split(path.sep).join('/')}`, source, immutable: false });
    const sealed = (JSON.parse(before.meta.toString('utf8')) as { sealed?: Array<{ file: string }> }).sealed ?? [];
    for (const block of sealed) files.push({ path: `index-blocks/${block.file}`, source: path.join(streamIndexBlocksDir(streamDir), block.file), immutable: true });
    return files.sort((a, b) => (a.path < b.path ? -1 : 1));
  }
  return [];
}

/** Every file under a folder (the index's layer folders are one level deep). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) for (const f of filesUnder(full)) out.push(f);
    else if (entry.isFile()) out.push(full);
  }
  return out;
}
