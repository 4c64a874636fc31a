import { z } from 'zod';
import { VigilError } from './errors.js';

/**
 * The one definition of every user-facing setting's range and default: stream settings (fps, window,
 * sinks, storage, budget, tiers) and question settings (question length, r, answer tokens, sampling). The API's
 * request schemas, the config file schema, the command line options and the engine's own checks
 * all use these, so a limit cannot differ between them. Leaf module: imports only zod.
 */

/** Limits (inclusive) and defaults. */
export const LIMITS = {
  fps: { min: 0.01, max: 30, default: 1 },
  window: { min: 1, max: 4096, default: 16 },
  sinks: { min: 0, max: 64, default: 1 },
  /** Chunks retrieved per layer (rekv) or frames sampled (uniform). */
  r: { min: 1, max: 1024, default: 64 },
  maxTokens: { min: 1, max: 1024, default: 64 },
  /** Longer questions would crowd the retrieved frames out of the context. */
  questionChars: { min: 1, max: 2000 },
  temperature: { min: 0, max: 5, default: 0 },
  /** Nucleus mass: > 0. */
  topP: { max: 1, default: 1 },
  /** Retention byte budget: at least 1 MiB. */
  retentionMinBytes: 1024 * 1024,
  /** A new stream's disk budget: 20 GB (decimal, 20e9 bytes). The smallest one depends on the model (memory/store/budget.ts). */
  budget: { default: 20e9 },
  /** Frame gating (docs/ingest.md): fraction of the frame that must change for it to be encoded... */
  gateThreshold: { min: 0.0001, max: 1, default: 0.005 },
  /** ...and the longest stretch of stream time (s) without an encoded frame. */
  gateMaxHoldSec: { min: 1, max: 86_400, default: 60 },
  /**
   * Memory tiers under a budget (`tiers`, docs/memory-store.md, Demotion): the newest stream seconds
   * kept at the stream's dtype (memory/store DEFAULT_KEEP_FULL_SEC)...
   */
  keepFullSec: { min: 0, default: 1800 },
  /**
   * ...and the share of the budget that chunks holding KV may take before the oldest go to the
   * archive (memory/store DEFAULT_KV_SHARE). Its smallest useful value depends on the model and the
   * budget (one segment plus the window's frames: src/engine/manager/streamBudget.ts, checkTiers).
   */
  kvShare: { min: 0, max: 1, default: 0.4 },
  /** The archive tier (no KV, the frame's still, re-encoded on demand) is on by default under a budget. */
  archive: { default: true },
} as const;

export const STORAGE_DTYPES = ['float32', 'float16', 'int8', 'kivi4'] as const;
export type StorageDtype = (typeof STORAGE_DTYPES)[number];
export const DEFAULT_STORAGE: StorageDtype = 'float32';

/** Memory tier settings of a stream with a budget (`tiers`); a field left out takes its default (LIMITS). */
export interface TierSettings {
  keepFullSec?: number;
  kvShare?: number;
  archive?: boolean;
}

/** The tiers in force: each field asked for, else its default. */
export function tiersInForce(tiers: TierSettings = {}): Required<TierSettings> {
  return {
    keepFullSec: tiers.keepFullSec ?? LIMITS.keepFullSec.default,
    kvShare: tiers.kvShare ?? LIMITS.kvShare.default,
    archive: tiers.archive ?? LIMITS.archive.default,
  };
}

/** The longest question, in characters (UTF-16 code units, as JavaScript counts them). */
export const MAX_QUESTION_CHARS = LIMITS.questionChars.max;

// Memory tiers (`tiers`): its three fields, also settings of their own (CLI flags, checks).
const keepFullSec = z
  .number()
  .min(LIMITS.keepFullSec.min)
  .meta({ description: `Memory tiers: the newest stream seconds kept at the stream's storage dtype; older history may be demoted to 4-bit KV (kivi4) under budget pressure. Default ${LIMITS.keepFullSec.default}.` });
const kvShare = z
  .number()
  .min(LIMITS.kvShare.min)
  .max(LIMITS.kvShare.max)
  .meta({
    description: `Memory tiers: share of the disk budget that chunks holding KV may take before the oldest become archive records, ${LIMITS.kvShare.min}..${LIMITS.kvShare.max}. Default ${LIMITS.kvShare.default}. It must leave room for one store segment plus the window's frames (400 naming both otherwise).`,
  });
const archive = z
  .boolean()
  .meta({ description: 'Memory tiers: under budget pressure the oldest KV chunks become archive records (no KV, a still of the frame, re-encoded when a question retrieves it). false: KV tiers only, then deletion. Default true.' });

export const Settings = {
  fps: z.number().min(LIMITS.fps.min).max(LIMITS.fps.max).meta({ description: `Frames sampled per second. Default ${LIMITS.fps.default}.` }),
  window: z.int().min(LIMITS.window.min).max(LIMITS.window.max).meta({ description: `Recent frames kept in context while encoding. Default ${LIMITS.window.default}.` }),
  sinks: z.int().min(LIMITS.sinks.min).max(LIMITS.sinks.max).meta({ description: `First frames kept in context forever. Default ${LIMITS.sinks.default}.` }),
  storage: z.enum(STORAGE_DTYPES).meta({ description: `KV payload dtype on disk. Default ${DEFAULT_STORAGE} (exact).` }),
  question: z.string().trim().min(LIMITS.questionChars.min).max(LIMITS.questionChars.max).meta({ description: `The question (at most ${LIMITS.questionChars.max} characters).` }),
  r: z.int().min(LIMITS.r.min).max(LIMITS.r.max).meta({ description: `Chunks retrieved per layer (rekv) or frames (uniform). Default ${LIMITS.r.default}.` }),
  maxTokens: z.int().min(LIMITS.maxTokens.min).max(LIMITS.maxTokens.max).meta({ description: `Most answer tokens. Default ${LIMITS.maxTokens.default}.` }),
  temperature: z.number().min(LIMITS.temperature.min).max(LIMITS.temperature.max).meta({ description: '0 = greedy (default); > 0 samples.' }),
  topP: z.number().gt(0).max(LIMITS.topP.max).meta({ description: 'Nucleus mass when sampling. Default 1.' }),
  retentionMaxBytes: z.int().min(LIMITS.retentionMinBytes).meta({ description: 'Disk budget in bytes (at least 1 MiB); oldest segments are deleted first.' }),
  budget: z
    .union([z.int().positive(), z.string().min(1).max(40)])
    .meta({ description: 'Disk budget of the stream: bytes, or a size such as "20GB" or "200MB" (powers of 1000) or "1.5GiB" (powers of 1024). Default 20GB. Checked against the model: too small for one segment or for the window is 400.' }),
  keepFullSec,
  kvShare,
  archive,
  tiers: z.strictObject({ keepFullSec: keepFullSec.optional(), kvShare: kvShare.optional(), archive: archive.optional() }).meta({
    description: `Memory tiers under the disk budget (docs/memory-store.md, Demotion): old memory is kept at lower fidelity before it is forgotten. keepFullSec (default ${LIMITS.keepFullSec.default}), kvShare (default ${LIMITS.kvShare.default}), archive (default true); a field left out takes the server's default.`,
  }),
  retentionMaxAgeSec: z.number().positive().meta({ description: 'Keep only this many seconds of stream time.' }),
  gateThreshold: z
    .number()
    .min(LIMITS.gateThreshold.min)
    .max(LIMITS.gateThreshold.max)
    .meta({ description: `Frame gating: a frame is encoded when at least this fraction of its downscaled luminance image changed since the last encoded frame. Default ${LIMITS.gateThreshold.default}.` }),
  gateMaxHoldSec: z
    .number()
    .min(LIMITS.gateMaxHoldSec.min)
    .max(LIMITS.gateMaxHoldSec.max)
    .meta({ description: `Frame gating: a frame is encoded at least this often (stream seconds), changed or not. Default ${LIMITS.gateMaxHoldSec.default}.` }),
};

/** A value checked against a setting's schema, or BAD_INPUT naming the setting, its problem and the value. */
export function parseSetting<S extends z.ZodType>(name: string, schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  // A field of an object setting (tiers.kvShare) is named with its path.
  const at = issue && issue.path.length > 0 ? `${name}.${issue.path.join('.')}` : name;
  throw new VigilError('BAD_INPUT', `${at}: ${issue?.message ?? 'invalid value'} (got ${JSON.stringify(value) ?? String(value)})`);
}
