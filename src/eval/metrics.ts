/** What one V-NIAH answer is scored on: correctness, recall of the needle's chunks, the machine. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { ChunkTimes } from '../../retrieval/baselines.js';

/**
 * Chunks showing the needle: frame time in [start, end). Half-open on purpose: the frame sampled at
 * `end` is haystack again (the generator draws the needle for t < end), and counting it would cap
 * every perfect retrieval's recall below 1.
 */
export function needleChunkIds(times: readonly ChunkTimes[], needle: { start: number; end: number }): number[] {
  return times.filter((c) => c.tEnd >= needle.start && c.tStart < needle.end).map((c) => c.chunkId);
}

/**
 * Share of the needle's chunks present in a context (NaN when the needle has no chunk). The context
 * is what the decoder saw: sink frames are in it whatever was retrieved, so a needle on the first
 * frame counts as present in every mode.
 */
export function contextRecall(needle: readonly number[], context: ReadonlySet<number>): number {
  if (needle.length === 0) return NaN;
  return needle.filter((id) => context.has(id)).length / needle.length;
}

/** The greedy answer, trimmed (probe-needle answers ' <color>' with a leading space). */
export function gradeAnswer(text: string, expected: string): { answer: string; correct: boolean } {
  const answer = text.trim();
  return { answer, correct: answer === expected };
}

export interface MachineInfo {
  platform: string;
  release: string;
  arch: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  /** 1-minute load average when the run started: other work on the machine skews the timings. */
  loadAverage1m: number;
  gitCommit: string | null;
  gitDirty: boolean | null;
}

export function machineInfo(): MachineInfo {
  let gitCommit: string | null = null;
  let gitDirty: boolean | null = null;
  try {
    // Which code produced the figures; absent outside a git checkout.
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    gitDirty = execFileSync('git', ['status', '--porcelain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
  } catch {
    // not a checkout, or no git: leave null
  }
  const cpus = os.cpus();
  return {
    platform: os.platform(),
    release: os.release(),
    arch: os.arch(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.versions.node,
    loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
    gitCommit,
    gitDirty,
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}
