import { normalizeAnswer } from './trigger.js';
import type { WatchCheck, WatchEvidence, WatchTrigger } from './types.js';

/** A stretch of stream time over which a watch's condition held, as the checks saw it. */
export interface ConditionSpan {
  /** Stream time of the check that found it true (for answer-changes: the check that saw the new answer). */
  from: number;
  /** Stream time of the first check that found it no longer true (answer-changes: the next change); null: true until the end. */
  to: number | null;
  answer: string;
  /** The frames that led to the check at `from`, with their scores. */
  evidence: WatchEvidence[];
  /** The check's duration at `from`, ms. */
  checkMs: number;
}

/**
 * The checks of one watch, in time order, as spans: yes / answer-matches: each run of checks whose
 * condition held, ended by the first check where it did not; answer-changes: each answer after the
 * first, until the next change.
 */
export function conditionSpans(checks: readonly WatchCheck[], trigger: WatchTrigger): ConditionSpan[] {
  const spans: ConditionSpan[] = [];
  let open: ConditionSpan | null = null;
  let previous: string | null = null;
  for (const check of checks) {
    const answer = normalizeAnswer(check.answer);
    if (trigger === 'answer-changes') {
      if (previous !== null && answer !== previous) {
        if (open) open.to = check.t;
        open = { from: check.t, to: null, answer: check.answer, evidence: check.evidence, checkMs: check.checkMs };
        spans.push(open);
      }
      previous = answer;
      continue;
    }
    if (check.condition && !open) {
      open = { from: check.t, to: null, answer: check.answer, evidence: check.evidence, checkMs: check.checkMs };
      spans.push(open);
    } else if (!check.condition && open) {
      open.to = check.t;
      open = null;
    }
  }
  return spans;
}
