// A stream folder at the start of a node's tenure (docs/scale-out.md, "Failover"): which copy of
// a stream's memory a new owner opens. Epochs of one stream's lease only grow, and exactly one node
// holds each epoch, so a folder marked "node N, epoch E-1" on node N, taken again by N at epoch E, is
// the newest copy there is (nobody wrote the stream in between): it is kept. Any other local copy may
// be older than what the last owner replicated, or of another lineage: it is replaced by the newest
// snapshot in the object store (restoreStream), or, when the store has none, by an empty folder.
import fs from 'node:fs';
import path from 'node:path';
import type { ObjectStore } from 'nats';
import { isVigilError } from '../../common/errors.js';
import { removeRecord } from '../engine/manager/streamRecord.js';
import { restoreStream, type RestoreReport } from './replication.js';

const TENURE_FILE = 'cluster-tenure.json';

interface Tenure {
  nodeId: string;
  epoch: number;
}

export type FolderOrigin = { kind: 'kept' } | { kind: 'restored'; report: RestoreReport } | { kind: 'fresh' };

function readTenure(dir: string): Tenure | null {
  try {
    const value = JSON.parse(fs.readFileSync(path.join(dir, TENURE_FILE), 'utf8')) as Partial<Tenure>;
    return typeof value.nodeId === 'string' && typeof value.epoch === 'number' ? { nodeId: value.nodeId, epoch: value.epoch } : null;
  } catch {
    return null;
  }
}

/** Records this node's tenure in the folder (written, fsynced, renamed into place). */
export function recordTenure(dir: string, nodeId: string, epoch: number): void {
  writeTenure(dir, { nodeId, epoch });
}

function writeTenure(dir: string, tenure: Tenure): void {
  const file = path.join(dir, TENURE_FILE);
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(tenure));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

/**
 * Makes `dir` the stream's memory for `nodeId`'s tenure at `epoch` and records it there. The
 * stream record (stream.json) is removed either way: the new owner writes it from desired state.
 */
export async function prepareTenureFolder(bucket: ObjectStore, streamId: string, dir: string, nodeId: string, epoch: number, objectTimeoutMs?: number): Promise<FolderOrigin> {
  const previous = readTenure(dir);
  let origin: FolderOrigin;
  if (previous && previous.nodeId === nodeId && previous.epoch === epoch - 1) {
    origin = { kind: 'kept' };
  } else {
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      origin = { kind: 'restored', report: await restoreStream(bucket, streamId, dir, objectTimeoutMs !== undefined ? { objectTimeoutMs } : {}) };
    } catch (error) {
      if (!isVigilError(error) || error.code !== 'FILE_NOT_FOUND') throw error;
      origin = { kind: 'fresh' };
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  removeRecord(dir);
  writeTenure(dir, { nodeId, epoch });
  return origin;
}
