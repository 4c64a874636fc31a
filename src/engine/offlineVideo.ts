import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';
import { DEFAULT_STORAGE, LIMITS, parseSetting, Settings, type TierSettings } from '../../common/settings.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { contentHash } from './fileFingerprint.js';
import { DEFAULT_GATE, type GateSetting } from './frameGate.js';
import { type IngestProgress, ingestIntoSession } from './ingestToSession.js';
import { StreamSession, type StreamSessionOptions } from './streamSession.js';
import { budgetRetention, checkTiers, streamBudgetPlan } from './manager/streamBudget.js';

export interface OfflineVideoOptions {
  dataDir: string;
  fps?: number;
  sinkFrames?: number;
  windowFrames?: number;
  storageDtype?: StreamSessionOptions['storageDtype'];
  /** Frame gating (default DEFAULT_GATE; 'off' encodes every sampled frame). */
  gate?: GateSetting;
  /** Retrieval score (the index is derived data: changing it does not re-encode). */
  similarity?: 'ip' | 'cosine';
  /** Re-encode from scratch even when a memory of this video exists. */
  rebuild?: boolean;
  /**
   * Disk budget of this memory, bytes (`vigil ask --budget`): the oldest frames go first once it is
   * full. Part of the memory's identity (a memory kept under a budget lacks old frames). Default: none.
   */
  budget?: number;
  /**
   * Memory tiers under the budget (`vigil ask --keep-full / --kv-share / --no-archive`): fields left
   * out take the store's defaults. Needs `budget`. Part of the memory's identity when given.
   */
  tiers?: TierSettings;
  onProgress?: (progress: IngestProgress) => void;
  signal?: AbortSignal;
}

export interface OfflineVideoMemory {
  session: StreamSession;
  dir: string;
  /** 'reused': complete memory found; 'resumed': an interrupted encode was continued; 'built': encoded now. */
  status: 'reused' | 'resumed' | 'built';
  framesEncoded: number;
  /** Frames the gate turned away in this run (0 when reused). */
  framesGated: number;
}

interface MemoryRecord {
  video: string;
  videoSha256: string;
  settings: Record<string, unknown>;
  complete: boolean;
}

/** The files whose content defines the model: config, tokenizer, the graphs in use and their external data. */
function modelFiles(model: VisionLanguageModel): string[] {
  const graphs = [model.vision.file, model.embedder.file, model.decoder.graph.file];
  const data = graphs.map((g) => `${g}_data`).filter((f) => fs.existsSync(f));
  return [path.join(model.config.dir, 'config.json'), path.join(model.config.dir, 'tokenizer.json'), ...graphs, ...data];
}

function checkWritable(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (error) {
    throw new VigilError('STORE_IO', `data folder ${dir} is not writable (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error });
  }
}

/**
 * A long video's memory on disk, reused across runs. Its identity is the video's content hash, the
 * model files' content hashes and the encoding settings, so nothing is reused across incompatible
 * settings. An interrupted encode (Ctrl-C, SIGKILL) is never marked complete: the next run reopens
 * the store (recovery drops any torn tail) and continues from the last committed frame.
 */
export async function openOfflineVideo(model: VisionLanguageModel, video: string, options: OfflineVideoOptions): Promise<OfflineVideoMemory> {
  const file = path.resolve(video);
  if (!fs.existsSync(file)) throw new VigilError('FILE_NOT_FOUND', `video not found: ${file}`);
  if (!fs.statSync(file).isFile()) throw new VigilError('BAD_INPUT', `${file} is not a file`);
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch {
    throw new VigilError('BAD_INPUT', `video ${file} is not readable`);
  }
  const offlineDir = path.join(options.dataDir, 'offline');
  checkWritable(offlineDir);
  const hashCache = path.join(offlineDir, 'file-hashes.json');
  const videoSha256 = await contentHash(file, hashCache);
  const gate = options.gate ?? DEFAULT_GATE;
  const tiers = options.tiers === undefined ? undefined : parseSetting('tiers', Settings.tiers, options.tiers);
  if (tiers !== undefined && options.budget === undefined) throw new VigilError('BAD_INPUT', 'memory tiers (--keep-full, --kv-share, --no-archive) need a disk budget (--budget)');
  const modelHashes: string[] = [];
  for (const f of modelFiles(model)) modelHashes.push(await contentHash(f, hashCache));
  const settings = {
    model: crypto.createHash('sha256').update(modelHashes.join(',')).digest('hex').slice(0, 16),
    fps: options.fps ?? LIMITS.fps.default,
    sinkFrames: options.sinkFrames ?? LIMITS.sinks.default,
    windowFrames: options.windowFrames ?? LIMITS.window.default,
    storageDtype: options.storageDtype ?? DEFAULT_STORAGE,
    // Which frames are encoded depends on the gate. 'off' adds nothing, so memories made before
    // gating existed (every frame encoded) keep their key.
    ...(gate === 'off' ? {} : { gate }),
    ...(options.budget !== undefined ? { budget: options.budget } : {}),
    // What the budget keeps depends on the tiers; none given adds nothing (earlier memories keep their key).
    ...(tiers !== undefined && Object.keys(tiers).length > 0 ? { tiers } : {}),
  };
  // Checked before anything is hashed into a folder or written: BAD_INPUT naming the limit.
  const plan = options.budget === undefined ? undefined : streamBudgetPlan(model, options.budget, settings.storageDtype, settings.windowFrames, '--budget');
  if (plan) checkTiers(plan, settings.windowFrames, tiers, '--budget', '--kv-share');
  const key = crypto.createHash('sha256').update(JSON.stringify({ videoSha256, settings })).digest('hex').slice(0, 20);
  const dir = path.join(offlineDir, key);
  const recordFile = path.join(dir, 'video.json');
  const record = readRecord(recordFile);
  if (options.rebuild || !record) fs.rmSync(dir, { recursive: true, force: true });
  const writeRecord = (complete: boolean) => {
    fs.mkdirSync(dir, { recursive: true });
    const partial = `${recordFile}.partial`;
    fs.writeFileSync(partial, `${JSON.stringify({ video: file, videoSha256, settings, complete } satisfies MemoryRecord, null, 2)}\n`);
    fs.renameSync(partial, recordFile);
  };

  const session = await StreamSession.open(model, {
    dir,
    sinkFrames: settings.sinkFrames,
    windowFrames: settings.windowFrames,
    storageDtype: settings.storageDtype,
    gate,
    fsync: { intervalMs: 1000 },
    ...(options.similarity ? { similarity: options.similarity } : {}),
    ...(plan ? { retention: budgetRetention(plan, dir, {}, tiers), segmentBytes: plan.segmentBytes } : {}),
  });
  const stored = session.stats().storedChunks;
  if (record?.complete && !options.rebuild) return { session, dir, status: 'reused', framesEncoded: stored, framesGated: 0 };
  try {
    writeRecord(false);
    const resumeAfter = stored > 0 ? session.stats().lastFrameTime : null;
    const result = await ingestIntoSession(session, file, {
      fps: settings.fps,
      ...(resumeAfter !== null ? { startAtS: (Math.floor(resumeAfter * settings.fps + 1e-9) + 1) / settings.fps, skipUntilAfter: resumeAfter } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (options.signal?.aborted) throw new VigilError('CANCELLED', 'interrupted; the memory will be completed on the next run');
    if (stored + result.framesEncoded === 0) throw new VigilError('NOT_A_VIDEO', `${file}: no frame could be sampled`);
    // Complete only once every chunk is durable: a crash before this line means a resume next time.
    await session.flush();
    writeRecord(true);
    return { session, dir, status: stored > 0 ? 'resumed' : 'built', framesEncoded: stored + result.framesEncoded, framesGated: result.framesGated };
  } catch (error) {
    await session.dispose();
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
