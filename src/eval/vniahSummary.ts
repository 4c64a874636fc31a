/** Aggregates of V-NIAH cells shared by the markdown table and the heatmap. */
import type { KvStorageDtype } from '../../memory/frameChunk.js';
import type { AnswerMode } from '../engine/streamSession.js';
import { mean, median } from './metrics.js';
import type { VniahCell, VniahResults } from './vniahRunner.js';
import { EVAL_MODES, STORAGE_DTYPES } from './vniahSettings.js';

/** One measured method: a mode on one storage dtype (a table row, a heatmap panel). */
export interface Method {
  mode: AnswerMode;
  dtype: KvStorageDtype;
  label: string;
}

/** Methods present in the results, modes in table order, then dtypes. */
export function methods(results: VniahResults): Method[] {
  const out: Method[] = [];
  for (const mode of EVAL_MODES) {
    for (const dtype of STORAGE_DTYPES) {
      if (results.cells.some((c) => c.mode === mode && c.dtype === dtype)) out.push({ mode, dtype, label: `${mode} · ${dtype}` });
    }
  }
  return out;
}

export interface Score {
  correct: number;
  total: number;
  /** correct / total; null when every cell was skipped (or there was none). */
  accuracy: number | null;
  skipped: number;
}

export function score(cells: readonly VniahCell[]): Score {
  const run = cells.filter((c) => c.correct !== null);
  const correct = run.filter((c) => c.correct).length;
  return { correct, total: run.length, accuracy: run.length ? correct / run.length : null, skipped: cells.length - run.length };
}

export function select(results: VniahResults, m: Method, where: Partial<Pick<VniahCell, 'lengthMin' | 'depthPct' | 'kind'>> = {}): VniahCell[] {
  return results.cells.filter(
    (c) =>
      c.mode === m.mode &&
      c.dtype === m.dtype &&
      (where.kind === undefined || c.kind === where.kind) &&
      (where.lengthMin === undefined || c.lengthMin === where.lengthMin) &&
      (where.depthPct === undefined || c.depthPct === where.depthPct),
  );
}

const numbers = (xs: Array<number | null>) => xs.filter((x): x is number => x !== null);

export function meanOf(cells: readonly VniahCell[], key: 'recall' | 'recallUnion'): number | null {
  const xs = numbers(cells.map((c) => c[key]));
  return xs.length ? mean(xs) : null;
}

export function medianOf(cells: readonly VniahCell[], key: 'ttftMs' | 'totalMs' | 'retrievalMs' | 'loadMs' | 'prefillMs' | 'contextTokens' | 'rssBytes'): number | null {
  const xs = numbers(cells.map((c) => c[key]));
  return xs.length ? median(xs) : null;
}

/** Expected hit rate of `uniform` for a needle of D frames among L frames with r picks: min(1, rD/L). */
export function uniformChance(results: VniahResults, lengthMin: number): number {
  const frames = results.ingests.find((i) => i.lengthMin === lengthMin)?.frames ?? lengthMin * 60 * results.settings.fps;
  return Math.min(1, (results.settings.retrieve * results.settings.needleSeconds * results.settings.fps) / frames);
}
