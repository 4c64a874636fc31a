import type { AnswerMode } from './streamSession.js';

/**
 * Whether a chunk in an answer's context is listed as its evidence. Retrieval (rekv) must fill r
 * slots per layer: when fewer chunks match, the rest are filled with chunks that scored 0 on every
 * layer that took them. Those stay in the context (the model saw them) but did not make the
 * answer, so they are not evidence. A fixed selection (window, full, uniform, oracle) carries no
 * scores (all 0): every chunk it holds is listed.
 */
export function contributed(mode: AnswerMode, evidence: { meanScore: number }): boolean {
  return mode !== 'rekv' || evidence.meanScore !== 0;
}
