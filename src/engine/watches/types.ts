/**
 * Watches: standing questions over a stream (issue 17). A watch's question is turned into per-layer
 * query vectors once; every newly encoded frame's representatives are scored against them (the
 * prefilter), and only when that score moves (or maxIntervalSec passes) does the model answer the
 * question over the current window (the check). A check whose answer meets the trigger is an alert.
 */

export type WatchTrigger = 'answer-changes' | 'answer-matches' | 'yes';
export const WATCH_TRIGGERS: readonly WatchTrigger[] = ['answer-changes', 'answer-matches', 'yes'];

/** Watches per stream at most (each costs a pass-1 at creation and open, and a check now and then). */
export const MAX_WATCHES = 16;
/** Longest answer-matches pattern, characters. */
export const MAX_PATTERN_CHARS = 200;
export const DEFAULT_COOLDOWN_SEC = 60;
export const DEFAULT_MAX_INTERVAL_SEC = 30;
/** Upper bound of cooldownSec and maxIntervalSec (a day). */
export const MAX_WATCH_SECONDS = 86_400;
/** Tokens a check may generate: answers are short (a color, yes/no, a few words). */
export const CHECK_MAX_NEW_TOKENS = 8;
/** Webhook ids one watch may notify at most. */
export const MAX_WATCH_NOTIFY = 16;

/** What a caller asks for (validated by parseWatchSpec). */
export interface WatchSpec {
  /** 'question' (the default when absent); health watches are HealthWatchSpec. */
  kind?: 'question';
  question: string;
  trigger: WatchTrigger;
  /** answer-matches: a JavaScript regular expression, matched case-insensitively against the answer. */
  pattern?: string;
  /** Stream seconds after an alert during which the same watch does not alert again; default 60. */
  cooldownSec?: number;
  /** Stream seconds between model checks at most, whatever the prefilter says; default 30. */
  maxIntervalSec?: number;
  /** Ids of the service's webhooks that get this watch's alerts (absent or empty: none; SSE and /v1/alerts only). */
  notify?: string[];
}

/** A question watch (a persisted one has no `kind`: absent means 'question'). */
export interface Watch {
  id: string;
  kind?: 'question';
  question: string;
  trigger: WatchTrigger;
  pattern?: string;
  cooldownSec: number;
  maxIntervalSec: number;
  /** Webhook ids its alerts are delivered to (absent: none). */
  notify?: string[];
  /** Wall time of creation, ms since the epoch. */
  createdAt: number;
}

/** One frame that made the prefilter ask for a check (or the frame a forced check ran after). */
export interface WatchEvidence {
  chunkId: number;
  t: number;
  tEnd: number;
  /** Sum over layers of dot(question query, frame representative). */
  score: number;
  /** How far the frame's per-layer scores moved from the last check's, in noise units (max over layers). */
  change: number;
}

export interface Alert {
  id: string;
  watchId: string;
  stream: string;
  /** Stream time of the newest frame the check saw. */
  t: number;
  /** Wall time of that frame, ms since the epoch. */
  wallTime: number;
  answer: string;
  evidence: WatchEvidence[];
  /** The model check's duration, ms. */
  checkMs: number;
  /** The answer before (answer-changes), else null; a health alert that resolves: the raising alert's answer. */
  previousAnswer: string | null;
  /** Health watches' alerts only (absent on a question watch's alert): which condition, raised or cleared. */
  health?: HealthAlertInfo;
}

// ---- health watches (no model: the ingest's own state; healthMonitor.ts) ----------------------

/**
 * offline: a live source delivers no frame (connecting, backing off, failed, ended);
 * frozen: a live source delivers frames that are all the same image;
 * lag: ingest is behind the live source (the oldest waiting frame's age, or the frame the model holds).
 */
export type HealthCondition = 'offline' | 'frozen' | 'lag';
export const HEALTH_CONDITIONS: readonly HealthCondition[] = ['offline', 'frozen', 'lag'];
/** Default cooldown of a health watch: wall seconds between two raised alerts of the same watch. */
export const DEFAULT_HEALTH_COOLDOWN_SEC = 60;
/** Bounds of a health watch's thresholdSec. */
export const MIN_HEALTH_THRESHOLD_SEC = 1;
export const MAX_HEALTH_THRESHOLD_SEC = MAX_WATCH_SECONDS;

/** A health watch as a caller asks for it (validated by parseHealthWatchSpec). */
export interface HealthWatchSpec {
  kind: 'health';
  condition: HealthCondition;
  /** offline / frozen: how long the condition must last; lag: the lag, seconds. */
  thresholdSec: number;
  /** Wall seconds after a raised alert before the same watch raises again; default 60. */
  cooldownSec?: number;
  notify?: string[];
}

export interface HealthWatch {
  id: string;
  kind: 'health';
  condition: HealthCondition;
  thresholdSec: number;
  cooldownSec: number;
  notify?: string[];
  createdAt: number;
}

/** Either kind of watch, as a stream lists and persists them. */
export type AnyWatch = Watch | HealthWatch;

export function isHealthWatch(watch: AnyWatch): watch is HealthWatch {
  return watch.kind === 'health';
}

export interface HealthAlertInfo {
  condition: HealthCondition;
  /** false: the condition was raised (lasted past the threshold); true: it cleared. */
  resolved: boolean;
  /** Wall time the condition began (ms since the epoch). */
  since: number;
  /** How long it had lasted when this alert was made, seconds. */
  durationSec: number;
}

/**
 * Alerts kept per stream at most, in memory and in alerts.ndjson (the oldest go first). The file is
 * compacted (rewritten with the newest MAX_ALERTS_PER_STREAM) once it holds ALERT_COMPACT_MARGIN more.
 */
export const MAX_ALERTS_PER_STREAM = 10_000;
/** Lines alerts.ndjson may hold beyond the bound before it is compacted, as a fraction of the bound. */
export const ALERT_COMPACT_MARGIN = 0.1;

/** Why a check ran: the prefilter saw a change, the interval bound, a flagged frame left the window, the first frame. */
export type CheckReason = 'score' | 'interval' | 'left-window' | 'first';

/** One model check's outcome (every check, alerting or not: the offline scan builds its spans from these). */
export interface WatchCheck {
  watchId: string;
  t: number;
  wallTime: number;
  reason: CheckReason;
  answer: string;
  /** yes / answer-matches: the condition holds; answer-changes: the answer differs from the previous check's. */
  condition: boolean;
  /** The alert it raised, if any (null: no trigger, or held back by the cooldown). */
  alert: Alert | null;
  /** A rising edge the cooldown held back. */
  suppressed: boolean;
  checkMs: number;
  evidence: WatchEvidence[];
}

/** Counters per watch since the session opened. */
export interface WatchStats {
  framesScored: number;
  /** Times a check this watch asked for waited for the next frame because the check queue was full. */
  deferred: number;
  checks: number;
  checksByReason: Record<CheckReason, number>;
  alerts: number;
  suppressed: number;
  errors: number;
  lastError: string | null;
  /** Mean prefilter time per frame over all watches, ms. */
  prefilterMs: number;
}
