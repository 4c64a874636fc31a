/**
 * A stream's health watches at run time (no model): the manager's timer calls tick() with what the
 * ingest knows now (a HealthProbe), and every decoded frame goes through observeFrame() while a
 * frozen watch exists. Each watch raises an alert when its condition has lasted past thresholdSec
 * (lag: when the lag is above it), and another when the condition clears, both with the same Alert
 * record as question watches (answer: a short sentence; `health` says which condition and whether it
 * cleared; checkMs 0). A raised condition survives a restart: it is read back from the watch's newest
 * alert, so the alert that it cleared still comes, with the whole duration.
 */
import crypto from 'node:crypto';
import type { RgbImage } from '../frameGate.js';
import { FrozenDetector } from './healthFrozen.js';
import { raisedText, resolvedText } from './healthText.js';
import type { Alert, HealthCondition, HealthWatch, WatchEvidence } from './types.js';

/** What the ingest knows about the stream's source at one moment (manager/healthProbe.ts makes it). */
export interface HealthProbe {
  /** Health is judged now: a live source the stream is meant to be ingesting (not stopped by a caller, not a finished file). */
  monitored: boolean;
  /** Wall time (ms) of the last frame the source delivered since the ingest started; null: none yet. */
  lastFrameWall: number | null;
  /** When the ingest (re)started, ms. */
  startedAt: number;
  /** The source delivers frames now (its state is live). */
  delivering: boolean;
  /** Why it is not delivering: the source's last error or its state, without server paths or credentials. */
  reason: string | null;
  /** How far ingest is behind the source, ms: the oldest waiting frame's age, or the frame the model holds. */
  lagMs: number;
  /** Stream time of the newest stored frame (null: none). */
  lastT: number | null;
  /** The newest frame in the stream's context, cited as the alert's evidence (null: none). */
  latest: WatchEvidence | null;
}

/** The engine's side that a monitor needs (WatchEngine has it). */
export interface HealthHost {
  readonly stream: string;
  healthWatches(): HealthWatch[];
  lastAlertOf(watchId: string): Alert | undefined;
  /** Persists and lists an alert; throws when it cannot be persisted. */
  recordAlert(alert: Alert): void;
}

interface Raised {
  since: number;
  answer: string;
}

interface WatchState {
  raised: Raised | null;
  /** Wall time of the watch's newest alert (its cooldown counts from the newest raise). */
  lastRaiseWall: number | null;
}

/** Lag clears below this share of its threshold: a lag hovering around the threshold does not flap. */
export const LAG_CLEAR_SHARE = 0.5;

export class HealthMonitor {
  private readonly states = new Map<string, WatchState>();
  private readonly frozen = new FrozenDetector();

  constructor(
    readonly host: HealthHost,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Whether the stream has a frozen watch (only then are frames looked at). */
  get wantsFrames(): boolean {
    return this.host.healthWatches().some((w) => w.condition === 'frozen');
  }

  /** The frozen detector's view (diagnostics, tests). */
  get frozenState(): { runStart: number | null; frozenMs: number; lastDelta: number | null; framesSeen: number } {
    return { runStart: this.frozen.runStart, frozenMs: this.frozen.frozenMs, lastDelta: this.frozen.lastDelta, framesSeen: this.frozen.framesSeen };
  }

  /** One decoded frame of the source (the ingest calls it for every frame it takes, gated or encoded). */
  observeFrame(frame: RgbImage, wallTime: number): void {
    this.frozen.observe(frame, wallTime);
  }

  /** Judges every health watch at `now` (ms); returns the alerts raised (already persisted and listed). */
  tick(probe: HealthProbe, now = Date.now()): Alert[] {
    const watches = this.host.healthWatches();
    const ids = new Set(watches.map((w) => w.id));
    for (const id of this.states.keys()) if (!ids.has(id)) this.states.delete(id);
    const alerts: Alert[] = [];
    for (const watch of watches) {
      const state = this.stateOf(watch);
      const alert = this.judge(watch, state, probe, now);
      if (alert) alerts.push(alert);
    }
    return alerts;
  }

  private stateOf(watch: HealthWatch): WatchState {
    let state = this.states.get(watch.id);
    if (!state) {
      // After a restart (or a reopen): a condition raised and not cleared is still raised.
      const last = this.host.lastAlertOf(watch.id);
      const raised = last?.health && !last.health.resolved ? { since: last.health.since, answer: last.answer } : null;
      state = { raised, lastRaiseWall: last?.wallTime ?? null };
      this.states.set(watch.id, state);
    }
    return state;
  }

  private judge(watch: HealthWatch, state: WatchState, probe: HealthProbe, now: number): Alert | null {
    // A stopped stream or a finished file: nothing to judge; a raised condition stays raised.
    if (!probe.monitored) return null;
    const thresholdMs = watch.thresholdSec * 1000;
    const condition = watch.condition;
    if (state.raised) {
      const cleared = this.cleared(condition, state.raised, probe, thresholdMs);
      if (!cleared) return null;
      const durationSec = (now - state.raised.since) / 1000;
      const alert = this.alert(watch, probe, now, resolvedText(condition, durationSec, probe.lagMs / 1000), { since: state.raised.since, durationSec, resolved: true }, state.raised.answer);
      if (alert) state.raised = null;
      return alert;
    }
    const onset = this.onset(condition, probe, now, thresholdMs);
    if (onset === null) return null;
    if (state.lastRaiseWall !== null && now - state.lastRaiseWall < watch.cooldownSec * 1000) return null;
    const durationSec = (now - onset) / 1000;
    const detail = condition === 'offline' ? probe.reason : condition === 'lag' ? probe.lagMs / 1000 : null;
    const alert = this.alert(watch, probe, now, raisedText(condition, durationSec, detail), { since: onset, durationSec, resolved: false }, null);
    if (alert) {
      state.raised = { since: onset, answer: alert.answer };
      state.lastRaiseWall = now;
    }
    return alert;
  }

  /** When the condition began, if it holds past its threshold now; else null. */
  private onset(condition: HealthCondition, probe: HealthProbe, now: number, thresholdMs: number): number | null {
    switch (condition) {
      case 'offline': {
        const since = probe.lastFrameWall ?? probe.startedAt;
        return now - since > thresholdMs ? since : null;
      }
      case 'frozen':
        return probe.delivering && this.frozen.runStart !== null && this.frozen.frozenMs > thresholdMs ? this.frozen.runStart : null;
      case 'lag':
        return probe.lagMs > thresholdMs ? now - probe.lagMs : null;
    }
  }

  private cleared(condition: HealthCondition, raised: Raised, probe: HealthProbe, thresholdMs: number): boolean {
    switch (condition) {
      case 'offline':
        return probe.lastFrameWall !== null && probe.lastFrameWall > raised.since;
      case 'frozen':
        // A frame that differs from the one before (not merely the first one seen after a restart).
        return this.frozen.lastChangeWall !== null && this.frozen.lastChangeWall > raised.since;
      case 'lag':
        return probe.lagMs <= thresholdMs * LAG_CLEAR_SHARE;
    }
  }

  /** Makes, persists and lists one alert; null (logged) when it cannot be persisted: the next tick tries again. */
  private alert(watch: HealthWatch, probe: HealthProbe, now: number, answer: string, health: { since: number; durationSec: number; resolved: boolean }, previousAnswer: string | null): Alert | null {
    const alert: Alert = {
      id: `a_${crypto.randomBytes(6).toString('hex')}`,
      watchId: watch.id,
      stream: this.host.stream,
      t: probe.lastT ?? 0,
      wallTime: now,
      answer,
      evidence: probe.latest ? [{ ...probe.latest }] : [],
      checkMs: 0,
      previousAnswer,
      health: { condition: watch.condition, resolved: health.resolved, since: health.since, durationSec: Math.round(health.durationSec * 10) / 10 },
    };
    try {
      this.host.recordAlert(alert);
      return alert;
    } catch (error) {
      this.log(`stream ${this.host.stream}: health watch ${watch.id}: alert not persisted (${(error as Error).message}); tried again at the next check`);
      return null;
    }
  }
}
