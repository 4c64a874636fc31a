import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../errors.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { type IngestProgress, ingestIntoSession } from './ingestToSession.js';
import { StreamSession, type StreamSessionOptions } from './streamSession.js';

export interface OfflineVideoOptions {
  dataDir: string;
  fps?: number;
  sinkFrames?: number;
  windowFrames?: number;
  storageDtype?: StreamSessionOptions['storageDtype'];
  /** Re-encode even when a complete memory of this video exists. */
  rebuild?: boolean;
  onProgress?: (progress: IngestProgress) => void;
}

export interface OfflineVideoMemory {
  session: StreamSession;
  dir: string;
  /** True when an existing memory was reused (no frame was encoded). */
  reused: boolean;
  framesEncoded: number;
}

interface MemoryRecord {
  video: string;
  size: number;
  mtimeMs: number;
  settings: Record<string, unknown>;
  complete: boolean;
  framesEncoded: number;
}

/**
 * A long video's memory on disk, reused across runs: keyed by the file (path, size, mtime), the
 * model folder and the encoding settings, so asking again costs a question, not a re-encode. A
 * memory whose ingest did not finish is rebuilt.
 */
export async function openOfflineVideo(model: VisionLanguageModel, video: string, options: OfflineVideoOptions): Promise<OfflineVideoMemory> {
  const file = path.resolve(video);
  if (!fs.existsSync(file)) throw new VigilError('FILE_NOT_FOUND', `video not found: ${file}`);
  const stat = fs.statSync(file);
  if (!stat.isFile()) throw new VigilError('BAD_INPUT', `${file} is not a file`);
  const settings = {
    model: model.config.dir,
    modelConfig: crypto.createHash('sha256').update(fs.readFileSync(path.join(model.config.dir, 'config.json'))).digest('hex').slice(0, 16),
    fps: options.fps ?? 1,
    sinkFrames: options.sinkFrames ?? 1,
    windowFrames: options.windowFrames ?? 16,
    storageDtype: options.storageDtype ?? 'float32',
  };
  const key = crypto.createHash('sha256').update(JSON.stringify({ file, size: stat.size, mtimeMs: stat.mtimeMs, settings })).digest('hex').slice(0, 20);
  const dir = path.join(options.dataDir, 'offline', key);
  const recordFile = path.join(dir, 'video.json');
  const record = readRecord(recordFile);
  const reuse = !options.rebuild && record?.complete === true;
  if (!reuse) fs.rmSync(dir, { recursive: true, force: true });

  const session = await StreamSession.open(model, {
    dir,
    sinkFrames: settings.sinkFrames,
    windowFrames: settings.windowFrames,
    storageDtype: settings.storageDtype,
    fsync: 'none',
  });
  if (reuse) return { session, dir, reused: true, framesEncoded: record!.framesEncoded };
  try {
    const write = (complete: boolean, framesEncoded: number) =>
      fs.writeFileSync(recordFile, `${JSON.stringify({ video: file, size: stat.size, mtimeMs: stat.mtimeMs, settings, complete, framesEncoded } satisfies MemoryRecord, null, 2)}\n`);
    write(false, 0);
    const result = await ingestIntoSession(session, file, { fps: settings.fps, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
    if (result.framesEncoded === 0) throw new VigilError('NOT_A_VIDEO', `${file}: no frame could be sampled`);
    // Complete only once every chunk is durable: a crash before this line means a rebuild next time.
    await session.store.flush();
    write(true, result.framesEncoded);
    return { session, dir, reused: false, framesEncoded: result.framesEncoded };
  } catch (error) {
    await session.close();
    throw error;
  }
}

function readRecord(file: string): MemoryRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as MemoryRecord;
  } catch {
    return undefined;
  }
}
