import path from 'node:path';
import { VigilError } from '../../../common/errors.js';
import { parseByteSize } from '../../../common/byteSize.js';
import { DEFAULT_STORAGE, LIMITS, parseSetting, Settings, type TierSettings } from '../../../common/settings.js';
import { type GateRequest, gateSettings } from '../frameGate.js';
import type { StreamSettings } from './streamRecord.js';
import type { CreateStreamRequest, StreamQuestion } from './types.js';

/** Checks on what callers ask of the manager, for code that does not come through the API's schemas. */

export interface StreamDefaults {
  fps?: number;
  window?: number;
  sinks?: number;
  storage?: StreamSettings['storage'];
  /** The gate of streams created without one (default DEFAULT_GATE). */
  gate?: GateRequest;
  /** Disk budget for streams that do not set one (bytes or a size string). Default 20 GB. */
  budget?: number | string;
  /** Memory tiers of streams that set none, field by field (a stream's own fields win). */
  tiers?: TierSettings;
}

/** A create request's settings with the defaults filled in, each checked against its range (common/settings.ts). */
export function streamSettings(request: CreateStreamRequest, d: StreamDefaults = {}): StreamSettings {
  const fps = parseSetting('fps', Settings.fps, request.fps ?? d.fps ?? LIMITS.fps.default);
  const windowFrames = parseSetting('window', Settings.window, request.window ?? d.window ?? LIMITS.window.default);
  const sinkFrames = parseSetting('sinks', Settings.sinks, request.sinks ?? d.sinks ?? LIMITS.sinks.default);
  const storage = parseSetting('storage', Settings.storage, request.storage ?? d.storage ?? DEFAULT_STORAGE);
  const gate = gateSettings(request.gate, gateSettings(d.gate));
  const retention: StreamSettings['retention'] = {};
  if (request.retention?.maxBytes !== undefined) retention.maxBytes = parseSetting('retention.maxBytes', Settings.retentionMaxBytes, request.retention.maxBytes);
  if (request.retention?.maxAgeSec !== undefined) retention.maxStreamAgeSec = parseSetting('retention.maxAgeSec', Settings.retentionMaxAgeSec, request.retention.maxAgeSec);
  const budget = parseByteSize(request.budget ?? d.budget ?? LIMITS.budget.default, 'budget');
  const tiers = tierSettings(request.tiers, d.tiers);
  return { fps, windowFrames, sinkFrames, storage, gate, retention, budget, ...(tiers ? { tiers } : {}) };
}

/**
 * The tiers asked for: the request's fields over the defaults' ones, each checked against its range
 * (common/settings.ts); undefined when neither sets any (the store's defaults apply). Whether the
 * budget leaves kvShare room for the window is checked against the model (streamBudget.ts, checkTiers).
 */
export function tierSettings(request: TierSettings | undefined, defaults: TierSettings | undefined): TierSettings | undefined {
  const own = request === undefined ? {} : parseSetting('tiers', Settings.tiers, request);
  const base = defaults === undefined ? {} : parseSetting('defaults.tiers', Settings.tiers, defaults);
  const merged: TierSettings = { ...base, ...own };
  for (const key of Object.keys(merged) as Array<keyof TierSettings>) if (merged[key] === undefined) delete merged[key];
  return Object.keys(merged).length > 0 ? merged : undefined;
}

/** The question's stream-time range, or null when it has none. */
export function timeRange(q: StreamQuestion): { start: number; end: number } | null {
  if (q.from === undefined && q.to === undefined) return null;
  const start = q.from ?? 0;
  const end = q.to ?? Number.MAX_SAFE_INTEGER;
  if (!(start >= 0 && end >= start)) throw new VigilError('BAD_INPUT', `the time range must have 0 <= from <= to (got ${start}..${end})`);
  return { start, end };
}

/** A file name safe to show and to take an extension from: no folders, no control characters. */
export function safeName(name: string): string {
  const base = path.basename(name.replace(/\\/g, '/')).replace(/[^\w.() -]/g, '_').slice(0, 100);
  return base || 'video';
}
