/**
 * `vigil watch VIDEO "question"`: a watch over a video file, start to end. The file is streamed
 * through a fresh session (in a scratch folder, removed afterwards) with the watch attached, so the
 * prefilter and the model checks run exactly as they would on a live stream; every check is kept and
 * the result is when the condition became true and false again, with evidence.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import type { GateSetting } from '../frameGate.js';
import { type IngestProgress, ingestIntoSession } from '../ingestToSession.js';
import { StreamSession } from '../streamSession.js';
import { type ConditionSpan, conditionSpans } from './conditionSpans.js';
import { parseWatchSpec } from './parseWatchSpec.js';
import type { Alert, Watch, WatchCheck, WatchSpec, WatchStats } from './types.js';

export interface OfflineWatchOptions {
  fps?: number;
  /** Frames the check sees besides the sinks; default 1 (the condition is about the newest frame). */
  windowFrames?: number;
  sinkFrames?: number;
  gate?: GateSetting;
  /** Scratch folder parent (default: the OS temp folder). */
  tempDir?: string;
  onProgress?: (progress: IngestProgress) => void;
  signal?: AbortSignal;
}

export interface OfflineWatchResult {
  watch: Watch;
  framesEncoded: number;
  framesGated: number;
  checks: WatchCheck[];
  spans: ConditionSpan[];
  alerts: Alert[];
  stats: WatchStats;
  /** Share of encoded frames that cost a model check. */
  checkFraction: number;
  prefilterMsPerFrame: number;
}

export async function watchVideo(model: VisionLanguageModel, video: string, spec: WatchSpec, options: OfflineWatchOptions = {}): Promise<OfflineWatchResult> {
  // Offline, every rising edge is reported: no cooldown unless asked.
  const checked = parseWatchSpec({ cooldownSec: 0, ...spec });
  const scratch = fs.mkdtempSync(path.join(options.tempDir ?? os.tmpdir(), 'vigil-watch-'));
  try {
    const session = await StreamSession.open(model, {
      dir: path.join(scratch, path.basename(video).replace(/[^A-Za-z0-9._-]/g, '_') || 'video'),
      sinkFrames: options.sinkFrames ?? 1,
      windowFrames: options.windowFrames ?? 1,
      ...(options.gate !== undefined ? { gate: options.gate } : {}),
      fsync: { intervalMs: 1000 },
    });
    try {
      const { cooldownSec, maxIntervalSec, question, trigger, pattern } = checked;
      const watch = await session.addWatch({ question, trigger, cooldownSec, maxIntervalSec, ...(pattern !== undefined ? { pattern } : {}) });
      const checks: WatchCheck[] = [];
      session.watches.onCheck((c) => checks.push(c));
      const result = await ingestIntoSession(session, video, {
        ...(options.fps !== undefined ? { fps: options.fps } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      await session.watches.idle();
      const stats = session.watches.stats()[watch.id]!;
      return {
        watch,
        framesEncoded: result.framesEncoded,
        framesGated: result.framesGated,
        checks,
        spans: conditionSpans(checks, watch.trigger),
        alerts: session.alerts(),
        stats,
        checkFraction: stats.checks / Math.max(1, result.framesEncoded),
        prefilterMsPerFrame: session.watches.prefilterMsPerFrame,
      };
    } finally {
      await session.dispose();
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
