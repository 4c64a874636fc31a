/**
 * Health watch specs ({kind: 'health', condition, thresholdSec, cooldownSec?, notify?}) and the
 * choice between the two kinds of watch: a spec whose `kind` is 'health' is a health watch,
 * anything else a question watch (parseWatchSpec).
 */
import crypto from 'node:crypto';
import { VigilError } from '../../../common/errors.js';
import { notifyList, parseWatchSpec } from './parseWatchSpec.js';
import {
  type AnyWatch,
  DEFAULT_HEALTH_COOLDOWN_SEC,
  HEALTH_CONDITIONS,
  type HealthCondition,
  type HealthWatch,
  MAX_HEALTH_THRESHOLD_SEC,
  MAX_WATCH_SECONDS,
  MIN_HEALTH_THRESHOLD_SEC,
} from './types.js';

const HEALTH_FIELDS = new Set(['kind', 'condition', 'thresholdSec', 'cooldownSec', 'notify']);

/** Whether a caller's spec asks for a health watch (the rest of it is checked by parseHealthWatchSpec). */
export function isHealthSpec(spec: unknown): boolean {
  return typeof spec === 'object' && spec !== null && (spec as { kind?: unknown }).kind === 'health';
}

/** Checks a health watch spec (every field; unknown ones refused) and makes the record. */
export function parseHealthWatchSpec(spec: unknown, now = Date.now()): HealthWatch {
  if (!isHealthSpec(spec) || Array.isArray(spec)) throw new VigilError('BAD_INPUT', "a health watch must be an object {kind: 'health', condition, thresholdSec, ...}");
  const s = spec as Record<string, unknown>;
  const unknown = Object.keys(s).filter((k) => !HEALTH_FIELDS.has(k));
  if (unknown.length > 0) throw new VigilError('BAD_INPUT', `unknown health watch field(s): ${unknown.join(', ')} (${[...HEALTH_FIELDS].join(', ')})`);
  const condition = s.condition;
  if (typeof condition !== 'string' || !HEALTH_CONDITIONS.includes(condition as HealthCondition)) {
    throw new VigilError('BAD_INPUT', `unknown health condition ${JSON.stringify(condition)} (${HEALTH_CONDITIONS.join(', ')})`);
  }
  const threshold = s.thresholdSec;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold < MIN_HEALTH_THRESHOLD_SEC || threshold > MAX_HEALTH_THRESHOLD_SEC) {
    throw new VigilError('BAD_INPUT', `thresholdSec must be a number of seconds in [${MIN_HEALTH_THRESHOLD_SEC}, ${MAX_HEALTH_THRESHOLD_SEC}], got ${JSON.stringify(threshold)}`);
  }
  const cooldown = s.cooldownSec ?? DEFAULT_HEALTH_COOLDOWN_SEC;
  if (typeof cooldown !== 'number' || !Number.isFinite(cooldown) || cooldown < 0 || cooldown > MAX_WATCH_SECONDS) {
    throw new VigilError('BAD_INPUT', `cooldownSec must be a number of seconds in [0, ${MAX_WATCH_SECONDS}], got ${JSON.stringify(cooldown)}`);
  }
  const notify = notifyList(s.notify);
  return {
    id: `w_${crypto.randomBytes(6).toString('hex')}`,
    kind: 'health',
    condition: condition as HealthCondition,
    thresholdSec: threshold,
    cooldownSec: cooldown,
    ...(notify !== undefined ? { notify } : {}),
    createdAt: now,
  };
}

/** Either kind of watch from a caller's spec: BAD_INPUT naming the problem. */
export function parseAnyWatchSpec(spec: unknown, now = Date.now()): AnyWatch {
  return isHealthSpec(spec) ? parseHealthWatchSpec(spec, now) : parseWatchSpec(spec, now);
}
