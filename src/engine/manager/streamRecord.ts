import fs from 'node:fs';
import path from 'node:path';
import type { KvStorageDtype } from '../../../memory/frameChunk.js';
import { VigilError } from '../../../common/errors.js';
import type { TierSettings } from '../../../common/settings.js';
import type { GateSetting } from '../frameGate.js';

/** How a stream is encoded; fixed when it is created (its stored KV depends on them). */
export interface StreamSettings {
  fps: number;
  windowFrames: number;
  sinkFrames: number;
  storage: KvStorageDtype;
  retention: { maxBytes?: number; maxStreamAgeSec?: number };
  /** Frame gating; absent in records written before gating existed (they get the server's default gate). */
  gate?: GateSetting;
  /** Disk budget in bytes; absent in records written before budgets existed (those keep no budget). */
  budget?: number;
  /**
   * Memory tiers under the budget, as asked (the request's fields over the server's defaults); a
   * field left out takes the store's default. Absent when none was asked, and in older records.
   */
  tiers?: TierSettings;
}

/**
 * `<data>/streams/<id>/stream.json`: what is needed to bring a stream back after a restart. Written
 * atomically (temp file + rename) and readable by the owner only, because a source URL given through
 * the API may carry camera credentials that are needed to reconnect. Streams declared in the config
 * file keep `${VAR}` placeholders here instead, expanded from the environment when they start.
 */
export interface StreamRecord {
  version: 1;
  id: string;
  name: string;
  /** api: created by a caller; config: declared in the config file (trusted, env placeholders). */
  origin: 'api' | 'config';
  /** The source as given (a URL, a path, or the stored upload's path). */
  source: string;
  /** Safe to show: credentials removed. */
  display: string;
  kind: 'file' | 'upload' | 'rtsp' | 'http' | 'hls';
  /** An uploaded video kept in the stream folder until it has been fully ingested. */
  upload: { name: string; file: string } | null;
  settings: StreamSettings;
  createdAt: string;
  /** running: ingest should run (and resume after a restart); stopped: a caller stopped it. */
  desired: 'running' | 'stopped';
  /** A finite source (file, upload) that was read to its end: nothing left to ingest. */
  completed: boolean;
  lastError: { code: string; message: string } | null;
}

export const RECORD_FILE = 'stream.json';

export function recordPath(streamDir: string): string {
  return path.join(streamDir, RECORD_FILE);
}

export function readRecord(streamDir: string): StreamRecord | null {
  const file = recordPath(streamDir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const record = JSON.parse(text) as StreamRecord;
    if (record.version !== 1 || typeof record.id !== 'string' || typeof record.source !== 'string') throw new Error('missing fields');
    return record;
  } catch (error) {
    throw new VigilError('BAD_CONFIG', `${file} is not a valid stream record: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Replaces stream.json atomically. When the write fails the temp file is removed and the previous
 * record stays whole; a full disk is DISK_FULL (retry once there is space), anything else is thrown as is.
 */
export function writeRecord(streamDir: string, record: StreamRecord): void {
  fs.mkdirSync(streamDir, { recursive: true });
  const file = recordPath(streamDir);
  const tmp = `${file}.tmp`;
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new VigilError('DISK_FULL', `stream '${record.id}': its record could not be saved, the disk is full (the previous record is kept)`, { cause: error });
    }
    throw error;
  }
}

export function removeRecord(streamDir: string): void {
  fs.rmSync(recordPath(streamDir), { force: true });
}
