import path from 'node:path';
import { VigilError } from '../../../common/errors.js';
import type { StreamSettings } from './streamRecord.js';
import type { CreateStreamRequest, StreamQuestion } from './types.js';

/** Checks on what callers ask of the manager, for code that does not come through the API's schemas. */

export interface StreamDefaults {
  fps?: number;
  window?: number;
  sinks?: number;
  storage?: StreamSettings['storage'];
}

const SETTINGS_LIMITS = { fps: [0.01, 30], window: [1, 4096], sinks: [0, 64] } as const;
const STORAGE = ['float32', 'float16', 'int8'] as const;

/** A create request's settings with the defaults filled in, each checked against its range. */
export function streamSettings(request: CreateStreamRequest, d: StreamDefaults = {}): StreamSettings {
  const fps = request.fps ?? d.fps ?? 1;
  const windowFrames = request.window ?? d.window ?? 16;
  const sinkFrames = request.sinks ?? d.sinks ?? 1;
  const storage = request.storage ?? d.storage ?? 'float32';
  inRange('fps', fps, SETTINGS_LIMITS.fps, false);
  inRange('window', windowFrames, SETTINGS_LIMITS.window, true);
  inRange('sinks', sinkFrames, SETTINGS_LIMITS.sinks, true);
  if (!STORAGE.includes(storage)) throw new VigilError('BAD_INPUT', `storage must be one of ${STORAGE.join(', ')}`);
  const retention: StreamSettings['retention'] = {};
  if (request.retention?.maxBytes !== undefined) retention.maxBytes = request.retention.maxBytes;
  if (request.retention?.maxAgeSec !== undefined) retention.maxStreamAgeSec = request.retention.maxAgeSec;
  return { fps, windowFrames, sinkFrames, storage, retention };
}

/** The question's stream-time range, or null when it has none. */
export function timeRange(q: StreamQuestion): { start: number; end: number } | null {
  if (q.from === undefined && q.to === undefined) return null;
  const start = q.from ?? 0;
  const end = q.to ?? Number.MAX_SAFE_INTEGER;
  if (!(start >= 0 && end >= start)) throw new VigilError('BAD_INPUT', `the time range must have 0 <= from <= to (got ${start}..${end})`);
  return { start, end };
}

function inRange(name: string, value: number, [min, max]: readonly [number, number], integer: boolean): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new VigilError('BAD_INPUT', `${name} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max} (got ${String(value)})`);
  }
}

/** A file name safe to show and to take an extension from: no folders, no control characters. */
export function safeName(name: string): string {
  const base = path.basename(name.replace(/\\/g, '/')).replace(/[^\w.() -]/g, '_').slice(0, 100);
  return base || 'video';
}
