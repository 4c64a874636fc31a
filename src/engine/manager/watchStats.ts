/**
 * Per-watch stats as the manager shows them with each watch (GET /v1/streams/{id}/watches): a
 * question watch's counters from its engine (WatchEngine.stats(): frames scored, checks by reason,
 * alerts, suppressed, errors, prefilter time), and for a health watch what its monitor knows: whether
 * the stream is judged now, and whether the condition is raised, since when. The monitor's raised
 * state changes only with an alert it records, so it is read here from the watch's newest alert,
 * as the monitor itself restores it after a restart; no pass over the alert history.
 */
import type { WatchEngine } from '../watches/watchEngine.js';
import type { HealthWatch, WatchStats } from '../watches/types.js';
import type { StreamHealthWatchStats, StreamWatchStats } from './types.js';

export interface WatchStatsView {
  /** Whether a question watch checks (a persisted one whose queries failed at open does not). */
  active(watchId: string): boolean;
  question(watchId: string): StreamWatchStats;
  health(watch: HealthWatch): StreamHealthWatchStats;
}

/** One snapshot of a stream's watch stats; `judged`: its health watches are judged now (healthProbe's `monitored`). */
export function watchStatsView(engine: WatchEngine, judged: boolean): WatchStatsView {
  const counters = engine.stats();
  return {
    active: (watchId) => Object.hasOwn(counters, watchId),
    question: (watchId) => questionStats(counters[watchId]),
    health: (watch) => healthStats(engine, watch, judged),
  };
}

function questionStats(stats: WatchStats | undefined): StreamWatchStats {
  if (!stats) {
    return { framesScored: 0, deferred: 0, checks: 0, checksByReason: { first: 0, score: 0, interval: 0, 'left-window': 0 }, alerts: 0, suppressed: 0, errors: 0, lastError: null, prefilterMs: 0 };
  }
  return {
    framesScored: stats.framesScored,
    deferred: stats.deferred,
    checks: stats.checks,
    checksByReason: { ...stats.checksByReason },
    alerts: stats.alerts,
    suppressed: stats.suppressed,
    errors: stats.errors,
    lastError: stats.lastError,
    prefilterMs: Math.round(stats.prefilterMs * 1000) / 1000,
  };
}

function healthStats(engine: WatchEngine, watch: HealthWatch, judged: boolean): StreamHealthWatchStats {
  const last = engine.lastAlertOf(watch.id);
  const raised = last?.health && !last.health.resolved ? { since: last.health.since, answer: last.answer } : null;
  return { judged, raised: raised !== null, since: raised?.since ?? null, answer: raised?.answer ?? null, lastAlertAt: last?.wallTime ?? null };
}
