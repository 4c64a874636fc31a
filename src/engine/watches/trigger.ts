import { compilePattern } from './parseWatchSpec.js';
import type { Watch } from './types.js';

/** An answer as triggers compare it: trimmed, lower case, inner whitespace collapsed, trailing punctuation dropped. */
export function normalizeAnswer(answer: string): string {
  return answer
    .trim()
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/[.!?,;:]+$/, '');
}

/**
 * Whether a check's answer meets the watch's condition: 'yes' when the answer starts with the word
 * yes; 'answer-matches' when the pattern matches; 'answer-changes' when it differs from the previous
 * check's answer (never on the first check: there is nothing to differ from).
 */
export function conditionHolds(watch: Pick<Watch, 'trigger' | 'pattern'>, answer: string, previousAnswer: string | null): boolean {
  const normalized = normalizeAnswer(answer);
  switch (watch.trigger) {
    case 'yes':
      return /^yes\b/.test(normalized);
    case 'answer-matches':
      return compilePattern(watch.pattern!).test(answer.trim());
    case 'answer-changes':
      return previousAnswer !== null && normalized !== normalizeAnswer(previousAnswer);
  }
}

/**
 * Whether a check raises an alert: answer-changes on every change; yes and answer-matches on the
 * rising edge only (the condition held at this check and not at the previous one), so a condition
 * that lasts alerts once.
 */
export function isAlertEdge(watch: Pick<Watch, 'trigger'>, condition: boolean, previousCondition: boolean): boolean {
  return watch.trigger === 'answer-changes' ? condition : condition && !previousCondition;
}
