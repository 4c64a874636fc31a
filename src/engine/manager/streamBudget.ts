import type { KvStorageDtype } from '../../../memory/frameChunk.js';
import { type BudgetPlan, type BudgetShape, checkBudget, chunkMetaBytes } from '../../../memory/store/budget.js';
import type { RetentionPolicy } from '../../../memory/store/types.js';
import { describeBytes } from '../../../common/byteSize.js';
import { VigilError } from '../../../common/errors.js';
import { tiersInForce, type TierSettings } from '../../../common/settings.js';
import { streamTokensPerFrame } from '../../model/videoFrames.js';
import type { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { streamIndexBlocksDir, streamIndexDir } from '../dataLayout.js';
import { streamPromptFormat } from '../streamPromptFormat.js';

/**
 * A stream's disk budget in engine terms: the model's geometry and tokens per frame make the
 * store's budget shape (memory/store/budget.ts); the retention policy counts the stream's index
 * folder too. Used by the manager (`budget`, `--disk-budget`) and offline memories (`vigil ask --budget`).
 */

/** Stream seconds one hour holds: the first-hour estimate below. */
const HOUR_S = 3600;
/** The timestamp prompt grows with the time it prints: sized at a year of stream time. */
const LONG_STREAM_S = 365 * 24 * 3600;

/** Tokens of one frame's chunk at this model (image tokens and the timestamp prompt of a late frame). */
export function frameTokens(model: VisionLanguageModel): number {
  const format = streamPromptFormat(model.config.family, streamTokensPerFrame(model));
  return model.tokenizer.encode(format.frame(LONG_STREAM_S)).length;
}

export function budgetShape(model: VisionLanguageModel, dtype: KvStorageDtype, windowFrames: number): BudgetShape {
  const { numLayers, numKvHeads, headDim } = model.decoder.info;
  return { geometry: { numLayers, numKvHeads, headDim }, dtype, tokensPerFrame: frameTokens(model), windowFrames };
}

/** The plan for `budget` at this model and settings, or BAD_INPUT naming the limit (see checkBudget). */
export function streamBudgetPlan(model: VisionLanguageModel, budget: number, dtype: KvStorageDtype, windowFrames: number, what = 'budget'): BudgetPlan {
  return checkBudget(budget, budgetShape(model, dtype, windowFrames), what);
}

/**
 * Folders of a stream that count against its budget beside the chunk store: the retrieval index
 * and its sealed blocks (streamIndexBlocksDir). Thumbnails are not counted
 * (one small JPEG per chunk, deleted with it; listing them at every write would cost too much).
 */
export function budgetedFolders(dir: string): string[] {
  return [streamIndexDir(dir), streamIndexBlocksDir(dir)];
}

/**
 * The store's retention for a budgeted stream in `dir`: kv/ and the index folders count; the
 * stream's `tiers` become the policy's keepFullSec / kvShare / archive (a field not asked for is
 * left out: the store's default applies).
 */
export function budgetRetention(plan: BudgetPlan, dir: string, old: { maxBytes?: number; maxStreamAgeSec?: number } = {}, tiers: TierSettings = {}): RetentionPolicy {
  return {
    budgetBytes: plan.budgetBytes,
    alsoCount: budgetedFolders(dir),
    ...(old.maxBytes !== undefined ? { maxBytes: old.maxBytes } : {}),
    ...(old.maxStreamAgeSec !== undefined ? { maxStreamAgeSec: old.maxStreamAgeSec } : {}),
    ...(tiers.keepFullSec !== undefined ? { keepFullSec: tiers.keepFullSec } : {}),
    ...(tiers.kvShare !== undefined ? { kvShare: tiers.kvShare } : {}),
    ...(tiers.archive !== undefined ? { archive: tiers.archive } : {}),
  };
}

/** Bytes the KV share of a budget must hold: one store segment plus the window's frames (records). */
export function minKvBytes(plan: BudgetPlan, windowFrames: number): number {
  return plan.segmentBytes + windowFrames * plan.recordBytes;
}

/**
 * BAD_INPUT when the tiers asked for cannot work under this budget plan: with the archive on, the
 * KV share (kvShare x budget) must hold one store segment plus the window's frames, which always
 * keep their KV. Checked only for a kvShare that was asked for: the default share is the store's
 * business (a small budget at the default keeps what it can). `what` names the budget ('budget',
 * 'stream 'x': its share of the disk budget', '--budget'), `shareName` the kvShare setting.
 */
export function checkTiers(plan: BudgetPlan, windowFrames: number, tiers: TierSettings | undefined, what = 'budget', shareName = 'tiers.kvShare'): void {
  if (tiers?.kvShare === undefined || !tiersInForce(tiers).archive) return;
  const needed = minKvBytes(plan, windowFrames);
  const kvBytes = Math.floor(tiers.kvShare * plan.budgetBytes);
  if (kvBytes >= needed) return;
  const smallest = Math.ceil((1000 * needed) / plan.budgetBytes) / 1000;
  const hint = smallest <= 1 ? `use ${shareName} ${smallest} or more, or a larger budget` : 'use a larger budget';
  throw new VigilError(
    'BAD_INPUT',
    `${shareName} ${tiers.kvShare} is too small for ${what} ${describeBytes(plan.budgetBytes)}: its KV share (${describeBytes(kvBytes)}) must hold one store segment ` +
      `(${describeBytes(plan.segmentBytes)}) plus the window's ${windowFrames} frames (${windowFrames} x ${plan.recordBytes} bytes), ${describeBytes(needed)} in all; ${hint}`,
  );
}

/** Bytes the stream's first hour takes on disk (records and their index entries at `fps`), capped by its budget. */
export function firstHourBytes(plan: BudgetPlan, model: VisionLanguageModel, fps: number): number {
  const { numLayers, numKvHeads, headDim } = model.decoder.info;
  const perFrame = plan.recordBytes + chunkMetaBytes({ numLayers, numKvHeads, headDim });
  return Math.min(plan.budgetBytes, Math.ceil(perFrame * fps * HOUR_S));
}

/** BAD_INPUT when the filesystem (`free` bytes) cannot hold the stream's first hour; null free space (unknown) passes. */
export function checkFirstHour(free: number | null, needed: number, fps: number): void {
  if (free === null || free >= needed) return;
  throw new VigilError(
    'BAD_INPUT',
    `not enough disk space for this stream: its first hour at ${fps} frames/s needs ${describeBytes(needed)} (capped by its budget), ` +
      `the data folder's filesystem has ${describeBytes(free)} free; free space or set a smaller budget`,
  );
}
