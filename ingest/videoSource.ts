/**
 * A video source as an async stream of sampled frames, with the live-stream reliability rules of
 * design.md §9: capped exponential backoff on every failure (the first start included), a stall
 * watchdog, socket timeouts, a gap in the timeline for every outage, a bounded queue with an
 * explicit policy, per-source stats, and a stop that never leaves an ffmpeg process behind.
 *
 * Life of a source: connecting -> live -> (backing-off -> connecting -> live)* -> ended | failed.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { VigilError, isVigilError } from '../common/errors.js';
import { Backoff, DEFAULT_BACKOFF } from './backoff.js';
import { DecodeRun, type RunResult } from './decodeRun.js';
import { type DecodePlan, decodeArgs } from './ffmpegArgs.js';
import { type FfmpegBinary, describeVersion } from './ffmpegBinary.js';
import { ffmpegFailure } from './ffmpegErrors.js';
import type { DecodedFrameInfo, StreamVideoInfo } from './ffmpegLog.js';
import type { RawFrame } from './frameAssembler.js';
import { MediaGateway } from './mediaGateway.js';
import { FrameQueue } from './frameQueue.js';
import { type ResolvedOptions, targetSize } from './options.js';
import { keyframesSuffice, probeSource } from './probe.js';
import type { SourceSpec } from './sourceSpec.js';
import { GapLog, RateMeter } from './stats.js';
import type { Frame, ProbeInfo, RunDecodeMode, SourceErrorInfo, SourceState, SourceStats } from './types.js';
import { StallWatchdog } from './watchdog.js';

type Outcome =
  | { kind: 'ended'; reason: string }
  | { kind: 'stopped' }
  | { kind: 'restart'; reason: string }
  | { kind: 'failure'; error: VigilError; fatal: boolean };

/** Per-run timestamp mapping (see Frame.t). */
interface RunClock {
  index: number;
  plan: DecodePlan;
  firstPts: number | null;
  /** pts of the last frame delivered from this run. */
  lastPts: number | null;
  prevPts: number | null;
  base: number;
  prevSampledT: number | null;
}

const MAX_WARNINGS = 20;

export interface VideoSourceEvents {
  state: [state: SourceState, stats: SourceStats];
  gap: [gap: SourceStats['gaps'][number]];
  warning: [message: string];
  /** A probe was run and its result adopted (not emitted for a known probe taken from the options). */
  probe: [probe: ProbeInfo];
}

export class VideoSource extends EventEmitter<VideoSourceEvents> {
  /** Probe result of the first successful connection (container, codec, size, fps, keyframes). */
  probe: ProbeInfo | null = null;
  /** Resolves when the source has ended or failed (never rejects). */
  readonly finished: Promise<void>;

  private state: SourceState = 'connecting';
  private endReason: string | null = null;
  private live: boolean | null;
  private readonly queue: FrameQueue<Frame>;
  private queuePolicyFixed: boolean;
  private readonly backoff: Backoff;
  private readonly watchdog: StallWatchdog;
  private readonly gaps = new GapLog();
  private readonly rate = new RateMeter();
  private readonly abort = new AbortController();
  /** The only way ffmpeg reaches the source (policy-checked relays, sniffed containers). */
  private readonly gateway: MediaGateway;
  private run: DecodeRun | null = null;
  private clock: RunClock | null = null;
  private runCount = 0;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private forceAllFrames = false;
  private maxFramesReached = false;
  private sleepTimer: { timer: NodeJS.Timeout; resolve: () => void } | null = null;
  /** The probe came from the options (knownProbe) and no frame has confirmed it yet. */
  private probeOnTrial = false;

  private framesDecoded = 0;
  private framesSampled = 0;
  private framesDelivered = 0;
  private lastT: number | null = null;
  private lastWall: number | null = null;
  private lastError: SourceErrorInfo | null = null;
  private readonly warnings: string[] = [];
  private corruptLines = 0;
  private nextRetryAt: number | null = null;
  private readonly startedAt = Date.now();

  constructor(
    readonly spec: SourceSpec,
    readonly binary: FfmpegBinary,
    readonly options: ResolvedOptions,
    private readonly deleteOnStop?: string,
  ) {
    super();
    this.live = options.live ?? spec.live;
    const liveGuess = this.live ?? true;
    this.queuePolicyFixed = options.queue.policy !== undefined;
    this.queue = new FrameQueue<Frame>(options.queue.capacity ?? (liveGuess ? 16 : 4), options.queue.policy ?? (liveGuess ? 'drop-oldest' : 'block'));
    this.backoff = new Backoff({ ...DEFAULT_BACKOFF, ...options.backoff });
    this.watchdog = new StallWatchdog(options.stallTimeoutS * 1000, (silentMs) => this.onStall(silentMs));
    this.gateway = new MediaGateway(spec, { policy: options.policy, socketTimeoutS: options.socketTimeoutS });
    // A saved probe only stands in for a live network stream's (RTSP, or a URL whose probe found no
    // end); a file or a finite URL is probed.
    const known = options.knownProbe;
    const network = spec.kind !== 'file' && spec.kind !== 'upload';
    if (known && network && (this.live === true || (this.live === null && known.durationS === null))) {
      this.probe = known;
      this.probeOnTrial = true;
    }
    this.finished = this.loop()
      .catch((error: unknown) => {
        // Only a throwing event listener can get here; the source must still end cleanly.
        const vigil = isVigilError(error) ? error : new VigilError('SOURCE_FAILED', `Ingest loop failed on "${this.spec.display}": ${(error as Error).message}`, { cause: error });
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
        void this.run?.kill('stop');
        if (this.state !== 'failed') this.failWith(vigil);
      })
      .finally(async () => {
        // A spooled upload is not needed once no ffmpeg will read it again; nor are the relays.
        if (this.deleteOnStop) fs.rmSync(this.deleteOnStop, { force: true });
        await this.gateway.dispose();
      });
  }

  /** Whether failures lead to reconnects: network sources by default, never local files. */
  private get reconnects(): boolean {
    if (this.spec.kind === 'file' || this.spec.kind === 'upload') return false;
    return this.options.reconnect ?? true;
  }

  private get maxAttempts(): number {
    if (this.options.backoff.maxAttempts !== undefined) return this.options.backoff.maxAttempts;
    // A URL not (yet) known to be live (an HTTP file, or one that never answered) gets 3 tries.
    return this.live === true ? Infinity : 3;
  }

  // ------------------------------------------------------------------------------------------
  // Consumer side

  /** The next sampled frame; null once the source has ended; throws the VigilError if it failed. */
  async next(): Promise<Frame | null> {
    const frame = await this.queue.shift();
    if (frame) this.framesDelivered++;
    return frame;
  }

  /**
   * Iterates the frames. Leaving the loop early (break, return, throw) stops the source, so
   * `for await (const f of source)` can never leave ffmpeg running.
   */
  async *frames(): AsyncGenerator<Frame, void, undefined> {
    try {
      for (;;) {
        const frame = await this.next();
        if (!frame) return;
        yield frame;
      }
    } finally {
      await this.dispose();
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<Frame, void, undefined> {
    return this.frames();
  }

  get currentState(): SourceState {
    return this.state;
  }

  /** PID of the running ffmpeg decode, if any (tests, diagnostics). */
  get ffmpegPid(): number | null {
    return this.run?.pid ?? null;
  }

  stats(): SourceStats {
    const now = Date.now();
    return {
      source: this.spec.display,
      kind: this.spec.kind,
      live: this.live ?? false,
      state: this.state,
      endReason: this.endReason,
      fps: this.options.fps,
      decodeMode: this.clock?.plan.mode ?? null,
      framesDecoded: this.framesDecoded,
      framesSampled: this.framesSampled,
      framesDropped: this.queue.dropped,
      framesDelivered: this.framesDelivered,
      currentFps: Number(this.rate.rate(now).toFixed(3)),
      lastFrameT: this.lastT,
      lastFrameWall: this.lastWall,
      queued: this.queue.length,
      queueCapacity: this.queue.capacity,
      queuePolicy: this.queue.policy,
      lagMs: this.queue.lagMs(now),
      deliveryLagMs: this.queue.deliveryLagMs,
      restarts: Math.max(0, this.runCount - 1),
      consecutiveFailures: this.backoff.attempts,
      nextRetryAt: this.nextRetryAt,
      gaps: this.gaps.all(),
      lastError: this.lastError ? { ...this.lastError } : null,
      warnings: [...this.warnings],
      startedAt: this.startedAt,
      ffmpeg: { path: this.binary.ffmpegPath, version: describeVersion(this.binary.version) },
    };
  }

  /** Waits until the source reaches one of `states` (or has ended/failed); returns the state reached. */
  waitFor(states: SourceState[], timeoutMs = Infinity): Promise<SourceState> {
    return new Promise((resolve, reject) => {
      const done = (s: SourceState) => states.includes(s) || s === 'ended' || s === 'failed';
      if (done(this.state)) return resolve(this.state);
      let timer: NodeJS.Timeout | null = null;
      const listener = (s: SourceState) => {
        if (!done(s)) return;
        if (timer) clearTimeout(timer);
        this.off('state', listener);
        resolve(s);
      };
      this.on('state', listener);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.off('state', listener);
          reject(new VigilError('SOURCE_TIMEOUT', `"${this.spec.display}" did not reach ${states.join('/')} within ${Math.round(timeoutMs / 1000)} s (state ${this.state}).`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Stops the source and releases everything it holds: kills ffmpeg/ffprobe and waits until they
   * have exited, closes the relays, drops queued frames, ends the frame stream (state ended, reason
   * stopped, unless it had already ended or failed). Idempotent: every call gets the same promise.
   */
  dispose(): Promise<void> {
    if (this.stopPromise) return this.stopPromise;
    this.stopping = true;
    this.stopPromise = (async () => {
      this.abort.abort();
      this.watchdog.disarm();
      if (this.sleepTimer) {
        clearTimeout(this.sleepTimer.timer);
        this.sleepTimer.resolve();
      }
      await this.run?.kill('stop');
      await this.finished;
      await this.gateway.dispose();
      this.queue.clear();
      if (this.state !== 'ended' && this.state !== 'failed') this.finish('stopped');
      this.queue.close();
      if (this.deleteOnStop) fs.rmSync(this.deleteOnStop, { force: true });
    })();
    return this.stopPromise;
  }

  get disposed(): boolean {
    return this.stopPromise !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  // ------------------------------------------------------------------------------------------
  // Producer side

  private setState(state: SourceState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state, this.stats());
  }

  private finish(reason: string): void {
    this.endReason = reason;
    this.nextRetryAt = null;
    this.queue.close();
    this.setState('ended');
  }

  private failWith(error: VigilError): void {
    this.endReason = error.message;
    this.nextRetryAt = null;
    this.queue.fail(error);
    this.setState('failed');
  }

  private warn(message: string): void {
    if (this.warnings.length < MAX_WARNINGS) this.warnings.push(message);
    this.emit('warning', message);
  }

  private recordError(error: VigilError): void {
    this.lastError = { code: error.code, message: error.message, at: Date.now() };
  }

  private async loop(): Promise<void> {
    // Let the caller attach listeners before the first state change is reported.
    await Promise.resolve();
    while (!this.stopping) {
      this.setState('connecting');
      let outcome: Outcome;
      try {
        outcome = await this.attempt();
      } catch (error) {
        const vigil = isVigilError(error) ? error : new VigilError('SOURCE_FAILED', `Unexpected ingest error on "${this.spec.display}": ${(error as Error).message}`, { cause: error });
        outcome = { kind: 'failure', error: vigil, fatal: isFatal(vigil) };
      }
      this.run = null;
      this.watchdog.disarm();
      if (this.stopping || outcome.kind === 'stopped') break;
      if (outcome.kind === 'ended') {
        this.finish(outcome.reason);
        break;
      }
      if (outcome.kind === 'restart') {
        // A live restart loses the frames of the reconnect time: that is an outage too (once there were frames).
        if (this.live && this.lastT !== null) this.emit('gap', { ...this.gaps.begin(this.lastT ?? 0, outcome.reason, null) });
        continue;
      }

      const { error } = outcome;
      this.recordError(error);
      if (outcome.fatal || !this.reconnects) {
        this.failWith(error);
        break;
      }
      const gap = this.gaps.begin(this.lastT ?? 0, error.message, error.code);
      if (gap.attempts === 1) this.emit('gap', { ...gap });
      const delay = this.backoff.fail();
      if (this.backoff.attempts >= this.maxAttempts) {
        this.failWith(new VigilError(error.code, `${error.message} (gave up after ${this.backoff.attempts} attempts)`));
        break;
      }
      this.nextRetryAt = Date.now() + delay;
      this.setState('backing-off');
      await this.sleep(delay);
      this.nextRetryAt = null;
    }
    if (this.stopping && this.state !== 'ended' && this.state !== 'failed') this.finish('stopped');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      // dispose() may have run from a 'state' listener just before: do not wait out the delay.
      if (this.stopping) return resolve();
      const timer = setTimeout(() => {
        this.sleepTimer = null;
        resolve();
      }, ms);
      this.sleepTimer = { timer, resolve };
    });
  }

  private probeTimeoutMs(scanS: number): number {
    if (this.options.probeTimeoutS !== null) return this.options.probeTimeoutS * 1000;
    const network = this.spec.kind !== 'file' && this.spec.kind !== 'upload';
    return network ? (this.options.socketTimeoutS + scanS + 10) * 1000 : Math.max(30_000, scanS * 1000);
  }

  private keyframeScanS(): number {
    if (this.options.decode === 'all') return 0;
    if (this.options.keyframeScanS !== null) return this.options.keyframeScanS;
    const period = 1 / this.options.fps;
    const network = this.spec.kind !== 'file' && this.spec.kind !== 'upload';
    // Enough to time 3 keyframes if they are one sample period apart (a stream's first packet may
    // have no timestamp, so 3.5 periods).
    return network ? Math.min(10, Math.max(2, 3.5 * period)) : Math.min(120, Math.max(10, 5 * period));
  }

  private async attempt(): Promise<Outcome> {
    const endpoint = await this.gateway.open(this.abort.signal);
    if (!this.probe) {
      const scanS = this.keyframeScanS();
      let probe: ProbeInfo;
      try {
        probe = await probeSource(this.spec, this.binary, {
          net: { rtspTransport: this.options.rtspTransport, socketTimeoutS: this.options.socketTimeoutS },
          endpoint,
          keyframeScanS: scanS,
          timeoutMs: this.probeTimeoutMs(scanS),
          signal: this.abort.signal,
        });
      } catch (error) {
        // What Vigil saw upstream (a refused redirect, an HTTP status) beats ffmpeg's reading of the relay.
        throw this.gateway.takeError() ?? error;
      }
      if (endpoint.durationS !== null) probe.durationS = endpoint.durationS;
      if (endpoint.container !== null) probe.container = endpoint.container;
      this.probe = probe;
      if (this.live === null) this.live = endpoint.live ?? probe.durationS === null;
      if (!this.queuePolicyFixed && !this.live) {
        this.queue.setPolicy('block');
        this.queuePolicyFixed = true;
      }
      this.emit('probe', probe);
    } else if (this.live === null) {
      // A known probe is a live stream's (see the constructor); the endpoint may know better.
      this.live = endpoint.live ?? true;
    }
    if (this.stopping) return { kind: 'stopped' };
    const plan = this.makePlan(this.probe);
    const args = decodeArgs(this.spec.kind, endpoint, this.binary.caps, { rtspTransport: this.options.rtspTransport, socketTimeoutS: this.options.socketTimeoutS }, plan);
    this.runCount++;
    this.clock = { index: this.runCount - 1, plan, firstPts: null, lastPts: null, prevPts: null, base: plan.startAtS, prevSampledT: null };
    const run = new DecodeRun(this.binary, endpoint.input, this.spec.display, args, {
      onFrame: (raw) => this.onFrame(run, raw),
      onDecoded: (info) => this.onDecoded(info),
      onCorruption: (line) => this.onCorruption(line),
      ...(this.probeOnTrial ? { onInputVideo: (video: StreamVideoInfo) => this.checkKnownProbe(run, video) } : {}),
    });
    this.run = run;
    const sampledBefore = this.framesSampled;
    // In keyframe mode a quiet stretch of one keyframe interval is normal: never stall below 2.5 of them.
    const keyInterval = plan.mode === 'keyframes' ? (this.probe.keyframes?.maxIntervalS ?? 0) : 0;
    this.watchdog.arm(Math.max(this.options.stallTimeoutS, 2.5 * keyInterval) * 1000);
    const result = await run.done;
    this.watchdog.disarm();
    const outcome = this.judge(result, plan);
    // A known probe whose first run failed or stalled before a frame may be what is wrong: probe again.
    if (this.probeOnTrial && this.framesSampled === sampledBefore && (outcome.kind === 'failure' || outcome.kind === 'restart')) {
      this.dropKnownProbe(outcome.kind === 'failure' ? outcome.error.message : outcome.reason);
    }
    return outcome;
  }

  /** ffmpeg opened the stream under a known probe: a different codec or picture size means it no longer fits. */
  private checkKnownProbe(run: DecodeRun, video: StreamVideoInfo): void {
    const known = this.probe;
    if (!this.probeOnTrial || !known || run !== this.run) return;
    if (video.codec === known.video.codec && video.width === known.video.width && video.height === known.video.height) return;
    this.dropKnownProbe(`the stream is ${video.codec} ${video.width}x${video.height}, the saved probe says ${known.video.codec} ${known.video.width}x${known.video.height}`);
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
    void run.kill('probe-mismatch');
  }

  private dropKnownProbe(why: string): void {
    this.probeOnTrial = false;
    this.probe = null;
    this.warn(`the saved probe of "${this.spec.display}" did not fit (${why}); probing again.`);
  }

  private makePlan(probe: ProbeInfo): DecodePlan {
    const fps = this.options.fps;
    let mode: RunDecodeMode = 'all';
    if (!this.forceAllFrames) {
      if (this.options.decode !== 'auto') mode = this.options.decode;
      else if (keyframesSuffice(probe.keyframes, fps)) mode = 'keyframes';
      else if (probe.video.fps !== null && probe.video.fps >= 4 * fps) mode = 'refs';
    }
    // A finite source resumes at the next sample bin after the last delivered frame.
    let startAtS = this.options.startAtS;
    if (!this.live && this.lastT !== null) startAtS = (Math.floor(this.lastT * fps + 1e-9) + 1) / fps;
    return {
      fps,
      mode,
      size: targetSize(this.options.size, probe.video),
      sar: probe.video.sar,
      startAtS: this.live ? 0 : startAtS,
      threads: this.options.threads,
      scaleFlags: this.options.scaleFlags,
      // Enough to see a keyframe with the stream parameters, at least 1 s.
      analyzeUs: Math.round(Math.min(5, Math.max(1, 1.5 * (probe.keyframes?.maxIntervalS ?? 0))) * 1e6),
    };
  }

  private judge(result: RunResult, plan: DecodePlan): Outcome {
    const display = this.spec.display;
    if (result.lostFrames > 0) this.warn(`${result.lostFrames} frame(s) skipped: their ffmpeg log line was garbled.`);
    if (result.killedFor === 'stop') return { kind: 'stopped' };
    if (result.killedFor === 'max-frames') return { kind: 'ended', reason: 'max-frames' };
    if (result.killedFor?.startsWith('stall')) {
      return { kind: 'failure', error: new VigilError('SOURCE_STALLED', `"${display}": ${result.killedFor}; ffmpeg was killed and will be restarted.`), fatal: false };
    }
    if (result.killedFor === 'mode-switch') return { kind: 'restart', reason: 'keyframes too sparse for the sample rate' };
    if (result.killedFor === 'probe-mismatch') return { kind: 'restart', reason: 'the saved probe did not fit the stream' };
    if (result.killedFor?.startsWith('desync')) {
      return { kind: 'failure', error: new VigilError('SOURCE_FAILED', `"${display}": ffmpeg sent frames without their timestamps (log lines missing).`), fatal: false };
    }
    if (result.spawnError) {
      return { kind: 'failure', error: new VigilError('FFMPEG_MISSING', `Cannot start ffmpeg "${this.binary.ffmpegPath}": ${result.spawnError.message}`), fatal: true };
    }
    const clean = result.code === 0 && result.signal === null;
    // What Vigil saw upstream while serving this run (a refused redirect, an HTTP status, auth).
    const seen = this.gateway.takeError();
    if (seen && (!clean || this.live)) return { kind: 'failure', error: seen, fatal: isFatal(seen) };
    if (!clean) {
      const context = { kind: this.spec.kind, elapsedMs: result.elapsedMs, socketTimeoutS: this.options.socketTimeoutS };
      return { kind: 'failure', error: ffmpegFailure(display, 'decoding', result.stderrTail, { code: result.code, signal: result.signal }, context), fatal: false };
    }
    if (this.live) {
      return { kind: 'failure', error: new VigilError('SOURCE_FAILED', `"${display}": the stream ended (the server closed it or the camera stopped sending).`), fatal: false };
    }
    // A finite source that ended cleanly: complete, truncated, or unreadable.
    if (this.framesSampled === 0) {
      return { kind: 'failure', error: new VigilError('CORRUPT_VIDEO', `"${display}": ffmpeg read the ${this.probe?.video.codec ?? ''} stream but could not decode a single frame (damaged file?).`), fatal: false };
    }
    const duration = this.probe?.durationS ?? null;
    const lastT = this.lastT ?? 0;
    const slack = Math.max(2, 2 / plan.fps);
    if (duration !== null && lastT < duration - slack) {
      if (seen) return { kind: 'failure', error: seen, fatal: isFatal(seen) };
      const message = `"${display}" ended at ${lastT.toFixed(1)} s of ${duration.toFixed(1)} s`;
      if (this.spec.kind === 'file' || this.spec.kind === 'upload') {
        this.warn(`${message}: the file is truncated or damaged.`);
        return { kind: 'ended', reason: 'eof (truncated)' };
      }
      return { kind: 'failure', error: new VigilError('SOURCE_UNREACHABLE', `${message}: the connection ended early.`), fatal: false };
    }
    return { kind: 'ended', reason: 'eof' };
  }

  private onDecoded(_info: DecodedFrameInfo): void {
    this.framesDecoded++;
    this.watchdog.feed();
  }

  private onCorruption(line: string): void {
    this.corruptLines++;
    if (this.corruptLines === 1) this.warn(`decode errors in "${this.spec.display}" (damaged data): ${line.replace(/^(\[[^\]]*\]\s*)+/, '')}`);
    if (this.corruptLines === 100) this.warn(`"${this.spec.display}": 100+ decode errors so far.`);
  }

  private onStall(silentMs: number): void {
    const run = this.run;
    if (!run || this.stopping) return;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
    void run.kill(`stall: no frame for ${(silentMs / 1000).toFixed(1)} s`);
  }

  private onFrame(run: DecodeRun, raw: RawFrame): void {
    const clock = this.clock;
    if (run !== this.run || !clock || this.stopping || this.maxFramesReached) return;
    this.watchdog.feed();
    const now = Date.now();
    const fps = clock.plan.fps;
    // A frame without a timestamp (rare: raw streams) is placed one sample period after the previous one.
    const pts = raw.info.ptsTime ?? (clock.prevPts === null ? 0 : clock.prevPts + 1 / fps);
    clock.prevPts = pts;
    let t: number;
    if (this.live) {
      const elapsed = this.lastWall === null ? 0 : Math.max(1e-3, (now - this.lastWall) / 1000);
      if (clock.firstPts === null) {
        // A new connection: its clock starts where the wall clock says the outage ended.
        clock.firstPts = pts;
        clock.base = this.lastT === null ? 0 : this.lastT + elapsed;
      } else if (clock.lastPts !== null && pts <= clock.lastPts) {
        // Out of order. A small step back (B-frames around an RTSP start, jitter) is dropped; a big
        // one (camera or server restart) re-bases the run on the wall clock.
        if (clock.lastPts - pts < Math.max(2, 2 / fps)) return;
        clock.base = (this.lastT ?? 0) + elapsed;
        clock.firstPts = pts;
      }
      t = clock.base + (pts - clock.firstPts);
      if (this.lastT !== null && t <= this.lastT) return;
      clock.lastPts = pts;
    } else {
      t = clock.plan.startAtS + pts;
      // After a resume, never repeat a bin that was already delivered.
      if (this.lastT !== null && Math.floor(t * fps + 1e-9) <= Math.floor(this.lastT * fps + 1e-9)) return;
    }
    t = Math.round(t * 1e6) / 1e6;

    // Keyframe and refs modes assumed a decoded frame in every bin; if one was empty, decode everything.
    let switchMode = false;
    if (clock.plan.mode !== 'all' && clock.prevSampledT !== null && t - clock.prevSampledT > 1.5 / fps && this.options.decode === 'auto') {
      this.forceAllFrames = true;
      switchMode = true;
      const what = clock.plan.mode === 'keyframes' ? 'keyframes' : 'reference frames';
      this.warn(`${what} of "${this.spec.display}" are more than ${(1.5 / fps).toFixed(2)} s apart at t=${t.toFixed(2)}: switching to full decoding.`);
      if (!this.live) {
        // The file run restarts at the first bin not delivered yet, which includes this frame's bin.
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
        void run.kill('mode-switch');
        return;
      }
    }
    clock.prevSampledT = t;

    const frame: Frame = {
      t,
      wallTime: now,
      width: raw.info.width,
      height: raw.info.height,
      data: raw.data,
      seq: this.framesSampled,
      run: clock.index,
      keyframe: raw.info.keyframe,
    };
    this.framesSampled++;
    this.probeOnTrial = false;
    this.rate.mark(now);
    this.lastT = t;
    this.lastWall = now;
    const closed = this.gaps.end(t, now);
    if (closed) this.emit('gap', { ...closed });
    if (this.backoff.attempts > 0) this.backoff.reset();
    this.setState('live');

    const pushed = this.queue.push(frame);
    if (pushed === 'full') {
      run.pause();
      this.watchdog.pause();
      this.queue.onSpace(() => {
        this.watchdog.resume();
        run.resume();
      });
    }
    if (this.framesSampled >= this.options.maxFrames) {
      this.maxFramesReached = true;
      // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
      void run.kill('max-frames');
    } else if (switchMode) {
      // eslint-disable-next-line @typescript-eslint/no-floating-promises -- DecodeRun.kill() cannot reject
      void run.kill('mode-switch');
    }
  }
}

/** Failures that no retry can fix: no ffmpeg, a refused scheme, or the URL policy said no. */
function isFatal(error: VigilError): boolean {
  return error.code === 'FFMPEG_MISSING' || error.code === 'SOURCE_SCHEME' || error.code === 'SOURCE_FORBIDDEN';
}
