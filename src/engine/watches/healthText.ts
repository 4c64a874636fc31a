/** The short sentences a health alert carries as its `answer`, e.g. "offline for 42 s (connection refused)". */
import type { HealthCondition } from './types.js';

/** A duration for people: "42 s", "3 m 10 s", "2 h 5 m", "1 d 3 h" (two units at most, rounded down). */
export function describeDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const first = units.findIndex(([, size]) => s >= size);
  const [bigName, bigSize] = units[first]!;
  const [smallName, smallSize] = units[first + 1]!;
  const big = Math.floor(s / bigSize);
  const small = Math.floor((s - big * bigSize) / smallSize);
  return small > 0 ? `${big} ${bigName} ${small} ${smallName}` : `${big} ${bigName}`;
}

/** The raised alert's sentence. `detail`: offline, why (the source's error or state); lag, the lag in seconds. */
export function raisedText(condition: HealthCondition, durationSec: number, detail: string | number | null): string {
  switch (condition) {
    case 'offline':
      return `offline for ${describeDuration(durationSec)}${detail ? ` (${String(detail)})` : ''}`;
    case 'frozen':
      return `frozen image for ${describeDuration(durationSec)} (identical frames while live)`;
    case 'lag':
      return `falling behind: ingest ${describeLag(Number(detail ?? 0))} behind the live source`;
  }
}

/** The sentence of the alert that says the condition cleared. */
export function resolvedText(condition: HealthCondition, durationSec: number, lagSec: number): string {
  switch (condition) {
    case 'offline':
      return `back online after ${describeDuration(durationSec)}`;
    case 'frozen':
      return `image changing again after ${describeDuration(durationSec)}`;
    case 'lag':
      return `caught up after ${describeDuration(durationSec)} (lag ${describeLag(lagSec)})`;
  }
}

function describeLag(seconds: number): string {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : describeDuration(seconds);
}

/** What a watch stands for, in a line (a question watch: its question; a health watch: its condition and threshold). */
export function watchLabel(watch: { kind?: string; question?: string; condition?: HealthCondition; thresholdSec?: number }): string {
  if (watch.kind !== 'health') return watch.question ?? '';
  const threshold = describeDuration(watch.thresholdSec ?? 0);
  return watch.condition === 'lag' ? `health: ingest lag above ${threshold}` : `health: ${watch.condition} for more than ${threshold}`;
}
