import crypto from 'node:crypto';
import { VigilError } from '../../../common/errors.js';
import { MAX_QUESTION_CHARS } from '../../../common/settings.js';
import {
  DEFAULT_COOLDOWN_SEC,
  DEFAULT_MAX_INTERVAL_SEC,
  MAX_PATTERN_CHARS,
  MAX_WATCH_NOTIFY,
  MAX_WATCH_SECONDS,
  type Watch,
  type WatchSpec,
  WATCH_TRIGGERS,
  type WatchTrigger,
} from './types.js';

function seconds(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > MAX_WATCH_SECONDS) {
    throw new VigilError('BAD_INPUT', `${name} must be a number of seconds in [${min}, ${MAX_WATCH_SECONDS}], got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The answer-matches pattern as a RegExp (case-insensitive); BAD_INPUT when it does not compile. */
export function compilePattern(pattern: string): RegExp {
  try {
    return new RegExp(pattern, 'i');
  } catch (error) {
    throw new VigilError('BAD_INPUT', `pattern is not a valid regular expression: ${(error as Error).message}`);
  }
}

/** Same syntax as a webhook id (src/engine/notify/webhook.ts). */
const WEBHOOK_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The notify list: webhook ids (syntax only; whether they are configured is the service's check),
 * duplicates dropped; absent or empty means no webhook.
 */
export function notifyList(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !WEBHOOK_ID.test(v))) {
    throw new VigilError('BAD_INPUT', 'notify must be a list of webhook ids (1-64 letters, digits, ".", "_", "-" or ":")');
  }
  const ids = [...new Set(value as string[])];
  if (ids.length > MAX_WATCH_NOTIFY) throw new VigilError('BAD_INPUT', `notify names ${ids.length} webhooks; the limit is ${MAX_WATCH_NOTIFY}`);
  return ids.length > 0 ? ids : undefined;
}

/** Checks a caller's watch spec (every field, unknown ones refused) and makes the Watch record. */
export function parseWatchSpec(spec: unknown, now = Date.now()): Watch {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new VigilError('BAD_INPUT', 'a watch must be an object {question, trigger, ...}');
  const s = spec as Record<string, unknown>;
  // kind 'question' may be said explicitly; it is the default, so the record does not keep it.
  if (s.kind !== undefined && s.kind !== 'question') {
    throw new VigilError('BAD_INPUT', `a question watch has kind 'question' (or none), got ${JSON.stringify(s.kind)}; health watches: {kind: 'health', condition, thresholdSec}`);
  }
  const known = new Set(['kind', 'question', 'trigger', 'pattern', 'cooldownSec', 'maxIntervalSec', 'notify']);
  const unknown = Object.keys(s).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new VigilError('BAD_INPUT', `unknown watch field(s): ${unknown.join(', ')}`);
  const { question, trigger, pattern } = s as Partial<WatchSpec> & Record<string, unknown>;
  if (typeof question !== 'string' || question.trim() === '') throw new VigilError('BAD_INPUT', 'a watch needs a non-empty question');
  if (question.length > MAX_QUESTION_CHARS) throw new VigilError('BAD_INPUT', `the watch question has ${question.length} characters; the limit is ${MAX_QUESTION_CHARS}`);
  if (typeof trigger !== 'string' || !WATCH_TRIGGERS.includes(trigger as WatchTrigger)) {
    throw new VigilError('BAD_INPUT', `unknown trigger ${JSON.stringify(trigger)} (${WATCH_TRIGGERS.join(', ')})`);
  }
  if (trigger === 'answer-matches') {
    if (typeof pattern !== 'string' || pattern === '') throw new VigilError('BAD_INPUT', 'trigger answer-matches needs a pattern (a regular expression)');
    if (pattern.length > MAX_PATTERN_CHARS) throw new VigilError('BAD_INPUT', `pattern has ${pattern.length} characters; the limit is ${MAX_PATTERN_CHARS}`);
    compilePattern(pattern);
  } else if (pattern !== undefined) {
    throw new VigilError('BAD_INPUT', `a pattern is only for trigger answer-matches, not ${trigger}`);
  }
  const notify = notifyList(s.notify);
  return {
    id: `w_${crypto.randomBytes(6).toString('hex')}`,
    question,
    trigger: trigger as WatchTrigger,
    ...(trigger === 'answer-matches' ? { pattern: pattern as string } : {}),
    cooldownSec: seconds('cooldownSec', s.cooldownSec, DEFAULT_COOLDOWN_SEC, 0),
    maxIntervalSec: seconds('maxIntervalSec', s.maxIntervalSec, DEFAULT_MAX_INTERVAL_SEC, 1),
    ...(notify !== undefined ? { notify } : {}),
    createdAt: now,
  };
}
