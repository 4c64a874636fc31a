/**
 * A stream's watches at run time: the prefilter after every encoded frame (synchronous,
 * microseconds: kernels/watchScores.ts), model checks queued behind the frame (never awaited by
 * ingest), triggers, cooldown, alerts (persisted by WatchStore). Nothing here throws into ingest: a
 * failing watch counts an error in its stats and the stream goes on.
 */
import crypto from 'node:crypto';
import type { FrameChunk } from '../../../memory/frameChunk.js';
import { packQueries, watchScores } from '../../../kernels/watchScores.js';
import { WatchCalibration, DEFAULT_THRESHOLD } from './calibration.js';
import { conditionHolds, isAlertEdge } from './trigger.js';
import type { WatchStore } from './watchStore.js';
import { AlertHistory, type AlertHistoryStats } from './alertHistory.js';
import { type Alert, type AnyWatch, type CheckReason, type HealthWatch, isHealthWatch, MAX_WATCHES, type Watch, type WatchCheck, type WatchEvidence, type WatchStats } from './types.js';
import { VigilError } from '../../../common/errors.js';

/** Flagged frames an alert cites at most (the strongest changes). */
const MAX_EVIDENCE = 8;
/**
 * Checks waiting in the session's queue at most, all watches together: the next frame waits for the
 * checks queued before it, so this bounds how long a frame can be held up (4 checks). A watch that
 * finds the queue full asks again at the next frame (its reason kept; counted in `deferred`).
 */
export const DEFAULT_MAX_QUEUED_CHECKS = 4;

export interface WatchHost {
  /** The stream's name in alerts. */
  readonly stream: string;
  readonly numLayers: number;
  /** Values per layer of a representative (numKvHeads * headDim). */
  readonly dim: number;
  /**
   * Asks the question over the current window, queued behind the frame being added; `started` is
   * called when the check begins (what it sees is fixed from then on).
   */
  check(question: string, started: () => void): Promise<{ answer: string; checkMs: number }>;
  /** Chunk ids now in the decoder's context (sinks and window). */
  contextChunkIds(): ReadonlySet<number>;
}

export interface WatchEngineOptions {
  /** Prefilter threshold in noise units (calibration.ts); default DEFAULT_THRESHOLD. */
  threshold?: number;
  /** Checks waiting at most, all watches together; default DEFAULT_MAX_QUEUED_CHECKS. */
  maxQueuedChecks?: number;
  /** Persist watches and alerts; none: in memory only. */
  store?: WatchStore;
  /** Alerts kept at most (memory and alerts.ndjson); default MAX_ALERTS_PER_STREAM. */
  maxAlerts?: number;
}

interface LatestFrame {
  chunkId: number;
  t: number;
  tEnd: number;
  wallTime: number;
}

interface WatchState {
  watch: Watch;
  queries: Float32Array[];
  calibration: WatchCalibration;
  queued: boolean;
  /** A check this watch asked for while the queue was full: asked again at the next frame. */
  deferred: CheckReason | null;
  removed: boolean;
  /** Frames that asked for a check since the last check began. */
  flagged: WatchEvidence[];
  /** Frames that asked for a check, still in context: when one leaves, the answer may change back. */
  inContext: Map<number, WatchEvidence>;
  latest: LatestFrame | null;
  latestEvidence: WatchEvidence | null;
  lastCheckT: number | null;
  previousAnswer: string | null;
  previousCondition: boolean;
  lastAlertT: number | null;
  stats: WatchStats;
}

function emptyStats(): WatchStats {
  return { framesScored: 0, deferred: 0, checks: 0, checksByReason: { first: 0, score: 0, interval: 0, 'left-window': 0 }, alerts: 0, suppressed: 0, errors: 0, lastError: null, prefilterMs: 0 };
}

export class WatchEngine {
  private readonly states = new Map<string, WatchState>();
  /** Watches known (persisted) but without queries yet, or whose queries failed. */
  private readonly inactive = new Map<string, Watch>();
  /** Health watches (no model, no queries): the manager's HealthMonitor evaluates them and calls recordAlert. */
  private readonly health = new Map<string, HealthWatch>();
  private readonly history: AlertHistory;
  private packed: Float32Array[] = [];
  private order: WatchState[] = [];
  private scores = new Float64Array(0);
  private readonly pending = new Set<Promise<void>>();
  private readonly listeners = new Set<(check: WatchCheck) => void>();
  private framesSeen = 0;
  /** Checks asked for and not yet started. */
  private queuedChecks = 0;
  private prefilterTotalMs = 0;

  constructor(
    private readonly host: WatchHost,
    private readonly options: WatchEngineOptions = {},
  ) {
    const store = options.store;
    this.history = new AlertHistory(store, options.maxAlerts);
    if (store) {
      // A damaged file must not keep the stream from opening: warned about, set aside, the stream goes on.
      try {
        for (const w of store.readWatches()) {
          if (isHealthWatch(w)) this.health.set(w.id, w);
          else this.inactive.set(w.id, w);
        }
      } catch (error) {
        let aside = '';
        try {
          aside = `; moved to ${store.setAsideWatches()}`;
        } catch {
          // Left in place: the warning names it.
        }
        process.emitWarning(`${store.folder}: watches not loaded (${(error as Error).message})${aside}`);
      }
      try {
        this.history.load();
      } catch (error) {
        process.emitWarning(`${store.folder}: alerts not loaded (${(error as Error).message})`);
      }
    }
  }

  /** The stream's name in alerts. */
  get stream(): string {
    return this.host.stream;
  }

  /** Persisted watches waiting for their queries (StreamSession computes them at open). */
  restoring(): Watch[] {
    return [...this.inactive.values()];
  }

  /** Every watch, both kinds, active or not, in creation order. */
  list(): AnyWatch[] {
    return [...this.inactive.values(), ...this.order.map((s) => s.watch), ...this.health.values()].sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
  }

  /** Watches of both kinds (what MAX_WATCHES bounds). */
  get size(): number {
    return this.states.size + this.inactive.size + this.health.size;
  }

  /** The health watches, in creation order. */
  healthWatches(): HealthWatch[] {
    return [...this.health.values()];
  }

  /** Adds a health watch and persists the list; BAD_INPUT past MAX_WATCHES (both kinds count). */
  addHealth(watch: HealthWatch): void {
    if (this.size >= MAX_WATCHES) throw new VigilError('BAD_INPUT', `a stream has at most ${MAX_WATCHES} watches`);
    this.health.set(watch.id, watch);
    try {
      this.persistList();
    } catch (error) {
      this.health.delete(watch.id);
      throw error;
    }
  }

  /**
   * Keeps an alert made outside the model checks (a health watch's): persisted, then listed. Throws
   * when it cannot be persisted (then it is not listed either).
   */
  recordAlert(alert: Alert): void {
    this.history.append(alert);
  }

  /** The newest alert of a watch still held (health watches restore their state from it). */
  lastAlertOf(watchId: string): Alert | undefined {
    return this.history.lastOf(watchId);
  }

  /** The bounded alert history's counters (held, file lines, dropped, compactions). */
  alertHistoryStats(): AlertHistoryStats {
    return this.history.stats();
  }

  /** Activates a watch with its per-layer queries; `persist` writes the list (a new watch). */
  activate(watch: Watch, queries: Float32Array[], persist: boolean): void {
    // A new watch's queries took a model pass: a health watch may have taken the last place meanwhile.
    if (persist && this.size >= MAX_WATCHES) throw new VigilError('BAD_INPUT', `a stream has at most ${MAX_WATCHES} watches`);
    const state: WatchState = {
      watch,
      queries,
      calibration: new WatchCalibration(this.host.numLayers, this.options.threshold ?? DEFAULT_THRESHOLD),
      queued: false,
      deferred: null,
      removed: false,
      flagged: [],
      inContext: new Map(),
      latest: null,
      latestEvidence: null,
      lastCheckT: null,
      previousAnswer: null,
      previousCondition: false,
      // The cooldown holds across restarts: the watch's last persisted alert.
      lastAlertT: this.history.lastOf(watch.id)?.t ?? null,
      stats: emptyStats(),
    };
    this.inactive.delete(watch.id);
    this.states.set(watch.id, state);
    this.repack();
    if (persist) this.persistList();
  }

  /** Removes a watch (its alerts stay); false when unknown. */
  remove(id: string): boolean {
    const state = this.states.get(id);
    const known = state !== undefined || this.inactive.has(id) || this.health.has(id);
    if (!known) return false;
    if (state) state.removed = true;
    this.states.delete(id);
    this.inactive.delete(id);
    this.health.delete(id);
    this.repack();
    this.persistList();
    return true;
  }

  /** Alerts in time order; `since`: wall time (ms since the epoch) they must be at or after. */
  alerts(filter: { since?: number; watchId?: string } = {}): Alert[] {
    return this.history.filter(filter);
  }

  /** Every model check's outcome as it happens; returns the unsubscribe. */
  onCheck(listener: (check: WatchCheck) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stats(): Record<string, WatchStats> {
    const frames = Math.max(1, this.framesSeen);
    return Object.fromEntries(this.order.map((s) => [s.watch.id, { ...s.stats, checksByReason: { ...s.stats.checksByReason }, prefilterMs: this.prefilterTotalMs / frames }]));
  }

  /** Mean prefilter time per frame, all watches together, ms. */
  get prefilterMsPerFrame(): number {
    return this.prefilterTotalMs / Math.max(1, this.framesSeen);
  }

  /** Resolves once every check queued so far has finished (its alert persisted). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /**
   * The prefilter for one newly encoded frame: scores, calibration, and the checks it asks for
   * (queued, not awaited). Never throws.
   */
  onFrame(chunk: FrameChunk): void {
    if (this.order.length === 0) return;
    const started = performance.now();
    try {
      const L = this.host.numLayers;
      watchScores(this.packed, this.order.length, chunk.representatives, this.scores);
      const context = this.host.contextChunkIds();
      this.order.forEach((state, i) => {
        try {
          this.observe(state, chunk, i * L, context);
        } catch (error) {
          this.fail(state, error);
        }
      });
    } catch (error) {
      for (const state of this.order) this.fail(state, error);
    } finally {
      this.framesSeen++;
      this.prefilterTotalMs += performance.now() - started;
    }
  }

  private observe(state: WatchState, chunk: FrameChunk, offset: number, context: ReadonlySet<number>): void {
    const verdict = state.calibration.observe(this.scores, offset);
    state.stats.framesScored++;
    const evidence: WatchEvidence = { chunkId: chunk.chunkId, t: chunk.tStart, tEnd: chunk.tEnd, score: verdict.score, change: Number.isFinite(verdict.change) ? verdict.change : 0 };
    state.latest = { chunkId: chunk.chunkId, t: chunk.tStart, tEnd: chunk.tEnd, wallTime: chunk.wallTime };
    state.latestEvidence = evidence;
    let reason: CheckReason | null = null;
    for (const [id] of state.inContext) {
      if (!context.has(id)) {
        state.inContext.delete(id);
        reason ??= 'left-window';
      }
    }
    if (verdict.change === Number.POSITIVE_INFINITY) reason = 'first';
    else if (verdict.check) {
      reason = 'score';
      state.flagged.push(evidence);
      state.inContext.set(chunk.chunkId, evidence);
    } else if (reason === null && state.lastCheckT !== null && chunk.tStart - state.lastCheckT >= state.watch.maxIntervalSec) reason = 'interval';
    reason ??= state.deferred;
    if (reason !== null) this.requestCheck(state, reason);
  }

  private requestCheck(state: WatchState, reason: CheckReason): void {
    // One check waiting per watch: a waiting check sees the newest window when it runs anyway.
    if (state.queued) return;
    if (this.queuedChecks >= (this.options.maxQueuedChecks ?? DEFAULT_MAX_QUEUED_CHECKS)) {
      if (state.deferred === null) state.stats.deferred++;
      state.deferred ??= reason;
      return;
    }
    state.deferred = null;
    state.queued = true;
    this.queuedChecks++;
    let evidence: WatchEvidence[] = [];
    let frame: LatestFrame | null = null;
    const started = () => {
      state.queued = false;
      this.queuedChecks--;
      state.calibration.markChecked();
      frame = state.latest;
      state.lastCheckT = frame?.t ?? null;
      evidence = state.flagged.length > 0 ? [...state.flagged].sort((a, b) => b.change - a.change).slice(0, MAX_EVIDENCE).sort((a, b) => a.t - b.t) : state.latestEvidence ? [state.latestEvidence] : [];
      state.flagged = [];
    };
    const run = (async () => {
      try {
        const { answer, checkMs } = await this.host.check(state.watch.question, started);
        if (state.removed || frame === null) return;
        this.settle(state, reason, answer, checkMs, frame, evidence);
      } catch (error) {
        if (state.queued) {
          // Refused before it started (the session closed): it no longer waits.
          state.queued = false;
          this.queuedChecks--;
        }
        this.fail(state, error);
      }
    })();
    this.pending.add(run);
    // `run` never rejects (its errors go to the watch's stats); the handler only keeps lint's promise rule.
    run.then(
      () => this.pending.delete(run),
      () => this.pending.delete(run),
    );
  }

  private settle(state: WatchState, reason: CheckReason, answer: string, checkMs: number, frame: LatestFrame, evidence: WatchEvidence[]): void {
    const { watch } = state;
    state.stats.checks++;
    state.stats.checksByReason[reason]++;
    const condition = conditionHolds(watch, answer, state.previousAnswer);
    const edge = isAlertEdge(watch, condition, state.previousCondition);
    const suppressed = edge && state.lastAlertT !== null && frame.t - state.lastAlertT < watch.cooldownSec;
    let alert: Alert | null = null;
    if (edge && !suppressed) {
      alert = {
        id: `a_${crypto.randomBytes(6).toString('hex')}`,
        watchId: watch.id,
        stream: this.host.stream,
        t: frame.t,
        wallTime: frame.wallTime,
        answer,
        evidence,
        checkMs,
        previousAnswer: state.previousAnswer,
      };
      this.history.append(alert);
      state.lastAlertT = frame.t;
      state.stats.alerts++;
    }
    if (suppressed) state.stats.suppressed++;
    state.previousAnswer = answer;
    state.previousCondition = condition;
    const check: WatchCheck = { watchId: watch.id, t: frame.t, wallTime: frame.wallTime, reason, answer, condition, alert, suppressed, checkMs, evidence };
    for (const listener of this.listeners) {
      try {
        listener(check);
      } catch (error) {
        this.fail(state, error);
      }
    }
  }

  private fail(state: WatchState, error: unknown): void {
    state.stats.errors++;
    state.stats.lastError = error instanceof Error ? error.message : String(error);
  }

  private repack(): void {
    this.order = [...this.states.values()];
    this.packed = packQueries(
      this.order.map((s) => s.queries),
      this.host.numLayers,
      this.host.dim,
    );
    this.scores = new Float64Array(this.order.length * this.host.numLayers);
  }

  private persistList(): void {
    this.options.store?.writeWatches(this.list());
  }
}
