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

export interface Watch {
  id: string;
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
  /** The answer before (answer-changes), else null. */
  previousAnswer: string | null;
}

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
