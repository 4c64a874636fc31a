import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';

/**
 * Where a data folder keeps each stream: <data>/streams/<id>/ with kv/ (chunk store) and index/
 * (retrieval index, derived data).
 */
const STREAM_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function checkStreamId(id: string): string {
  if (!STREAM_ID.test(id)) {
    throw new VigilError('BAD_INPUT', `stream id '${id}' is not valid: use 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
  }
  return id;
}

export function streamDir(dataDir: string, streamId: string): string {
  return path.join(dataDir, 'streams', checkStreamId(streamId));
}

export function streamStoreDir(dir: string): string {
  return path.join(dir, 'kv');
}

export function streamIndexDir(dir: string): string {
  return path.join(dir, 'index');
}

/** Sealed index blocks: beside the saved index (a save replaces the index folder whole). */
export function streamIndexBlocksDir(dir: string): string {
  return path.join(dir, 'index-blocks');
}

/** Ids of the streams that have a folder in the data folder, sorted. */
export function listStreamIds(dataDir: string): string[] {
  const root = path.join(dataDir, 'streams');
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && STREAM_ID.test(e.name))
    .map((e) => e.name)
    .sort();
}
