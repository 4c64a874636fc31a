import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { type OpenSourceOptions, redactUrl } from '../../ingest/index.js';
import type { FsyncPolicy, RetentionPolicy } from '../../memory/store/types.js';
import { isVigilError, VigilError } from '../../common/errors.js';
import { LIMITS } from '../../common/settings.js';
import { type LoadModelOptions, VisionLanguageModel } from '../model/visionLanguageModel.js';
import { checkStreamId, listStreamIds, streamDir, streamIndexDir, streamStoreDir } from './dataLayout.js';
import { expandEnv } from './manager/envTemplate.js';
import { ManagedStream } from './manager/managedStream.js';
import { ModelScheduler } from './manager/modelScheduler.js';
import { OverloadedError, QuestionGate } from './manager/questionGate.js';
import { type PathRoots, publicError, publicMessage } from './manager/publicMessage.js';
import { type CheckedSource, SourcePolicy, type SourcePolicyOptions } from './manager/sourcePolicy.js';
import { type DiskFullOptions, StreamIngest } from './manager/streamIngest.js';
import { freeBytes } from './manager/diskSpace.js';
import { budgetRetention, checkFirstHour, checkTiers, firstHourBytes, streamBudgetPlan } from './manager/streamBudget.js';
import { describeBytes } from '../../common/byteSize.js';
import { readRecord, removeRecord, type StreamRecord, type StreamSettings } from './manager/streamRecord.js';
import { safeName, type StreamDefaults, streamSettings, timeRange } from './manager/requestChecks.js';
import type { AlertQuery, AskHooks, CreateStreamRequest, EvidenceEntry, EvidenceItem, GapEvidence, ManagerLimits, QuestionEvent, StreamAnswer, StreamHealthWatch, StreamQuestion, StreamStatus, StreamWatch } from './manager/types.js';
import { contributed } from './evidenceFilter.js';
import { gateSettings } from './frameGate.js';
import { summarizeRange } from './summaries/summarizeRange.js';
import type { StreamSummary, SummaryHooks, SummaryRequest } from './summaries/types.js';
import { ANSWER_MODES, StreamSession } from './streamSession.js';
import { parseAnyWatchSpec } from './watches/healthSpec.js';
import { watchLabel } from './watches/healthText.js';
import { HealthTimer } from './manager/healthTimer.js';
import { healthProbe } from './manager/healthProbe.js';
import { type WatchStatsView, watchStatsView } from './manager/watchStats.js';
import { checkWebhookAddress, type MqttConfig, Notifier, type NotifierOptions, type NotifierStatus, type WebhookConfig } from './notify/notifier.js';
import { checkWebhook } from './notify/webhook.js';
import { checkMqttBrokers } from './notify/mqttConfig.js';
import { type Alert, type AnyWatch, type HealthWatch, isHealthWatch, type Watch } from './watches/types.js';
import { type StreamTimeline, streamTimeline, type TimelineRange } from './timeline.js';

export { expandEnv } from './manager/envTemplate.js';
export { OverloadedError } from './manager/questionGate.js';
export { AddressSet, checkRange, PRIVATE_RANGES } from '../../ingest/net/addressSet.js';
export type { SchedulerStats } from './manager/modelScheduler.js';
export type { SourcePolicyOptions } from './manager/sourcePolicy.js';
export type * from './manager/types.js';
export { isGapEvidence, STREAM_STATES } from './manager/types.js';
export type { MqttConfig, MqttStatus, NotifierStatus, WebhookConfig, WebhookStatus } from './notify/notifier.js';
export type { DiskFullOptions } from './manager/streamIngest.js';
export { DEFAULT_MAX_EVENTS, DEFAULT_SUMMARY_QUESTION, isSummaryGap, MAX_SUMMARY_EVENTS, type StreamSummary, type SummaryEntry, type SummaryEvent, type SummaryHooks, type SummaryPlan, type SummaryRequest } from './summaries/types.js';
export { ANSWER_MODES, type AnswerMode } from './streamSession.js';
export { MAX_TIMELINE_ALERTS, MAX_TIMELINE_GAPS, MAX_TIMELINE_SPANS, type StreamTimeline, type TimelineRange } from './timeline.js';
export {
  type Alert,
  DEFAULT_HEALTH_COOLDOWN_SEC,
  HEALTH_CONDITIONS,
  type HealthCondition,
  MAX_ALERTS_PER_STREAM,
  MAX_HEALTH_THRESHOLD_SEC,
  MIN_HEALTH_THRESHOLD_SEC,
  DEFAULT_COOLDOWN_SEC,
  DEFAULT_MAX_INTERVAL_SEC,
  MAX_PATTERN_CHARS,
  MAX_WATCH_NOTIFY,
  MAX_WATCH_SECONDS,
  MAX_WATCHES,
  type Watch,
  type WatchEvidence,
  type WatchSpec,
  WATCH_TRIGGERS,
  type WatchTrigger,
} from './watches/types.js';

export interface StreamManagerOptions {
  /** Data folder: `<data>/streams/<id>/` per stream, `<data>/incoming/` for uploads in transit. */
  dataDir: string;
  /** A loaded model (the caller disposes it) or a model folder (loaded here, disposed by dispose()). */
  model: VisionLanguageModel | string;
  /** How a model folder is loaded (weight format, query taps). */
  modelOptions?: LoadModelOptions;
  /** What API callers may ingest (schemes, private networks, a files folder). */
  policy?: SourcePolicyOptions;
  limits?: Partial<ManagerLimits>;
  /** Settings for streams that do not set them. */
  defaults?: StreamDefaults;
  /** Extra ingest options for every source (ffmpeg build, timeouts, backoff, queue). */
  sourceOptions?: OpenSourceOptions;
  /** Chunk store options for every stream. */
  store?: { fsync?: FsyncPolicy; cacheBytes?: number; segmentBytes?: number };
  /**
   * Disk budget of the whole data folder, bytes (`vigil serve --disk-budget`): shared equally among
   * the streams recorded in it; each stream keeps the smaller of its own budget and its share.
   * Adding a stream shrinks every share (the oldest history of each stream goes first); removing one
   * grows them. Default: none.
   */
  diskBudget?: number;
  /** Restart the ingest of streams that were running when the process stopped. Default true. */
  resume?: boolean;
  /**
   * Open the streams recorded in the data folder at start. Default true; a cluster node passes
   * false: it opens only the streams whose leases it takes (src/cluster/clusterNode.ts).
   */
  openRecorded?: boolean;
  /**
   * Called before every frame is stored, with the stream's id; throws to refuse the write. A
   * cluster node's lease fence: a node that lost a stream's lease stores nothing more of it.
   */
  commitFence?: (streamId: string) => void;
  /**
   * Awaited before every frame is encoded, with the stream's id and the ingest's abort signal: may
   * wait (frames wait in the source's bounded queue) or throw to end the ingest. A cluster node
   * holds frames here while NATS is out of reach and it takes its lapsed lease back.
   */
  commitGate?: (streamId: string, signal: AbortSignal) => Promise<void>;
  /** One line per lifecycle event (never contains credentials). */
  log?: (line: string) => void;
  /**
   * Webhooks that watches' alerts may be delivered to (a watch's `notify` names them by id). When
   * any is configured the manager runs one Notifier on `<data>/notify` (docs/notifications.md).
   * Each URL is checked at open against the URL policy (`policy`, as API callers' sources): a
   * refused address is a BAD_CONFIG error and the manager does not open.
   */
  webhooks?: readonly WebhookConfig[];
  /**
   * MQTT brokers that watches' alerts may be published to (`notify` names them by id, unique among
   * webhooks and brokers); each also gets the server's and every stream's availability
   * (docs/notifications.md, "MQTT"). Checked at open like webhooks: a refused address is BAD_CONFIG.
   */
  mqtt?: readonly MqttConfig[];
  /** How often health watches (offline, frozen, lag) are judged, ms; default 1000. Tests shorten it. */
  healthTickMs?: number;
  /** The Notifier's tuning (retries, timeouts, outbox bounds); tests shorten the retry delays. */
  notifier?: Omit<NotifierOptions, 'dir' | 'webhooks' | 'mqtt' | 'streams' | 'policy' | 'log' | 'logConnection'>;
  /** How ingest waits for space after a full disk (poll interval, retry backoff, free bytes wanted). */
  diskFull?: DiskFullOptions;
  /**
   * Tests only: faults injected into ingest. `beforeAddFrame` runs before each frame is stored and
   * may throw, e.g. the DISK_FULL that a full disk makes the store throw, where a test cannot
   * mount a small real filesystem.
   */
  testFaults?: { beforeAddFrame?: (streamId: string) => void; freeBytes?: () => number | null };
}

/** Most outage entries in one answer's evidence (those nearest the retrieved chunks are kept). */
export const MAX_GAP_EVIDENCE = 32;

interface ManagerEvents {
  question: [QuestionEvent];
}

const DEFAULT_LIMITS: ManagerLimits = { maxStreams: 32, questionsPerStream: 4, questionsTotal: 16 };
/** Retry-After (s) of a refused stream start: ingest slots free up when a stream ends, fails or is stopped. */
const STREAM_SLOT_RETRY_S = 30;

/**
 * Many streams in one process over one model. Every model call of every stream (frame encodes,
 * questions, opening a memory) goes through one fair scheduler: questions first, then frames
 * round-robin between streams. Each stream has its own StreamSession (its own chunk store and index
 * in `<data>/streams/<id>/`), so a question can only ever see its own stream's chunks. Streams are
 * recorded in `stream.json` and come back with their memories after a restart: live sources
 * reconnect, finite ones resume where they stopped or stay answerable once complete.
 */
export class StreamManager extends EventEmitter<ManagerEvents> {
  readonly scheduler: ModelScheduler;
  readonly limits: ManagerLimits;
  private readonly streams = new Map<string, ManagedStream>();
  private readonly gate: QuestionGate;
  /** Subscribers to every stream's alerts (onAlert). */
  private readonly alertListeners = new Set<(alert: Alert) => void>();
  /** Health watches: judged on a timer from each stream's ingest state, no model (manager/healthTimer.ts). */
  private readonly health: HealthTimer;
  private readonly policy: SourcePolicy;
  private readonly log: (line: string) => void;
  private closing: Promise<void> | null = null;
  /** Webhook and MQTT delivery of alerts (null when neither is configured). */
  private notifier: Notifier | null = null;
  /** Ids a watch's notify may name: webhooks and MQTT brokers. */
  private readonly webhookIds: ReadonlySet<string>;
  private unsubscribeNotifier: (() => void) | null = null;
  /** Outbox writes started by alerts and not settled yet (awaited by dispose). */
  private readonly enqueues = new Set<Promise<void>>();
  /** Ingest slots taken by creates still opening their memory (not yet ingesting). */
  private reservedSlots = 0;
  /** Stream folders found at open: the data-folder budget's shares count them all from the first restored stream on. */
  private recordedStreams = 0;

  private constructor(
    readonly dataDir: string,
    readonly model: VisionLanguageModel,
    private readonly ownsModel: boolean,
    private readonly options: StreamManagerOptions,
  ) {
    super();
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.scheduler = new ModelScheduler();
    this.gate = new QuestionGate(this.limits.questionsPerStream, this.limits.questionsTotal);
    this.policy = new SourcePolicy(options.policy);
    this.log = options.log ?? (() => {});
    this.webhookIds = new Set([...(options.webhooks ?? []), ...(options.mqtt ?? [])].map((w) => w.id));
    this.health = new HealthTimer({
      ...(options.healthTickMs !== undefined ? { tickMs: options.healthTickMs } : {}),
      streams: () => this.streams.values(),
      dispatch: (alert) => this.dispatchAlert(alert),
      log: this.log,
      roots: () => this.pathRoots,
    });
  }

  /** Loads the model (when given a folder), then every recorded stream with its memory. */
  static async open(options: StreamManagerOptions): Promise<StreamManager> {
    const dataDir = path.resolve(options.dataDir);
    fs.mkdirSync(path.join(dataDir, 'streams'), { recursive: true });
    // Uploads that were in transit when the process stopped belong to no stream.
    fs.rmSync(path.join(dataDir, 'incoming'), { recursive: true, force: true });
    fs.mkdirSync(path.join(dataDir, 'incoming'), { recursive: true });
    // Webhooks first: a refused address fails the start before the model loads.
    await checkWebhooks(options.webhooks ?? [], new SourcePolicy(options.policy), options.log ?? (() => {}));
    await checkMqttBrokers(options.mqtt ?? [], new SourcePolicy(options.policy).outbound, options.log ?? (() => {}));
    const owns = typeof options.model === 'string';
    const model = typeof options.model === 'string' ? await VisionLanguageModel.load(options.model, options.modelOptions) : options.model;
    const manager = new StreamManager(dataDir, model, owns, options);
    try {
      await manager.openNotifier();
      if (options.openRecorded !== false) await manager.restore();
      manager.health.start();
    } catch (error) {
      await manager.dispose();
      throw error;
    }
    return manager;
  }

  /** Where an upload handler writes incoming files before `create({ upload })` takes them over. */
  get incomingDir(): string {
    return path.join(this.dataDir, 'incoming');
  }

  get disposed(): boolean {
    return this.closing !== null;
  }

  /**
   * Adds a stream and starts its ingest. Returns once its memory is open; the source connects in the
   * background (failures show in its status). `origin: 'config'` marks an operator-declared stream:
   * its source may use `${VAR}` placeholders and is not subject to the URL policy.
   */
  async create(request: CreateStreamRequest, origin: 'api' | 'config' = 'api'): Promise<StreamStatus> {
    const slot = { held: false };
    try {
      return await this.createStream(request, origin, slot);
    } catch (error) {
      // Errors name the stream and the problem, never a server path (upload spool, data folder, files folder).
      throw publicError(error, this.pathRoots);
    } finally {
      if (slot.held) this.reservedSlots--;
    }
  }

  private async createStream(request: CreateStreamRequest, origin: 'api' | 'config', slot: { held: boolean }): Promise<StreamStatus> {
    this.assertOpen();
    const id = request.id !== undefined ? checkStreamId(request.id) : this.newId();
    if (this.streams.has(id) || readRecord(streamDir(this.dataDir, id))) throw new VigilError('STREAM_EXISTS', `a stream with id '${id}' already exists`);
    this.assertIngestSlot();
    this.reservedSlots++;
    slot.held = true;
    const settings = streamSettings(request, this.options.defaults);
    // Before an upload is taken over or anything is written: a refusal leaves nothing behind.
    await this.checkNewStreamBudget(id, settings);
    const dir = streamDir(this.dataDir, id);
    let checked: CheckedSource;
    let record: StreamRecord;
    if (request.upload) {
      if (request.source !== undefined) throw new VigilError('BAD_INPUT', 'give either a source or an upload, not both');
      const file = this.takeUpload(request.upload, dir);
      try {
        this.policy.checkUpload(file, `upload:${safeName(request.upload.name)}`);
      } catch (error) {
        fs.rmSync(file, { force: true });
        throw error;
      }
      checked = this.policy.checkTrusted(file);
      record = this.newRecord(id, request, origin, 'upload', file, `upload:${safeName(request.upload.name)}`, settings, { name: safeName(request.upload.name), file });
    } else {
      if (!request.source) throw new VigilError('BAD_INPUT', 'a stream needs a source (a URL or a file path) or an upload');
      checked = origin === 'config' ? this.policy.checkTrusted(expandEnv(request.source, process.env, `stream '${id}'`)) : await this.policy.check(request.source);
      // A config camera's record keeps its ${VAR} template, and shows it (redacted), never the expanded secret.
      const display = origin === 'config' ? redactUrl(request.source) : checked.display;
      record = this.newRecord(id, request, origin, checked.spec.kind, origin === 'config' ? request.source : checked.spec.input, display, settings, null);
    }
    // The URL check may have awaited a DNS lookup: another request may have taken the id meanwhile.
    if (this.streams.has(id)) throw new VigilError('STREAM_EXISTS', `a stream with id '${id}' already exists`);
    const stream = new ManagedStream(dir, record);
    this.streams.set(id, stream);
    try {
      // A full disk here refuses the stream (DISK_FULL, 507): nothing half-created stays behind.
      stream.persist();
      await this.openSession(stream);
    } catch (error) {
      this.streams.delete(id);
      removeRecord(dir);
      if (record.upload) fs.rmSync(record.upload.file, { force: true });
      throw error;
    }
    this.log(`stream ${id}: created from ${record.display}`);
    this.reshareDiskBudget();
    this.startIngest(stream);
    return this.status(id);
  }

  /**
   * A stream declared in the config file: created when missing; when its declaration changed, its
   * record is updated and the stream reopened (its memory is kept).
   */
  async declare(request: CreateStreamRequest & { id: string }): Promise<StreamStatus> {
    this.assertOpen();
    const existing = this.streams.get(request.id);
    if (!existing) return this.create(request, 'config');
    const settings = streamSettings(request, this.options.defaults);
    const changed =
      existing.record.source !== request.source ||
      existing.record.name !== (request.name ?? request.id) ||
      JSON.stringify(existing.record.settings) !== JSON.stringify(settings);
    if (!changed) return this.status(request.id);
    const checked = this.policy.checkTrusted(expandEnv(request.source ?? '', process.env, `stream '${request.id}'`));
    await this.detach(existing);
    existing.record = {
      ...existing.record,
      origin: 'config',
      source: request.source!,
      display: redactUrl(request.source!),
      kind: checked.spec.kind,
      name: request.name ?? request.id,
      settings,
      completed: false,
      desired: 'running',
      lastError: null,
    };
    existing.persist();
    const fresh = new ManagedStream(existing.dir, existing.record);
    this.streams.set(request.id, fresh);
    await this.openSession(fresh);
    this.startIngest(fresh);
    return this.status(request.id);
  }

  list(): StreamStatus[] {
    return [...this.streams.keys()].sort().map((id) => this.status(id));
  }

  status(id: string): StreamStatus {
    return this.get(id).status(this.gate.pending(id), this.pathRoots);
  }

  /** Streams whose ingest is running (or about to): what `limits.maxStreams` bounds. Ended, failed and stopped streams do not count. */
  get ingestingStreams(): number {
    let n = this.reservedSlots;
    for (const s of this.streams.values()) if (s.ingesting) n++;
    return n;
  }

  /** Server folders that error messages must not show (publicMessage). */
  get pathRoots(): PathRoots {
    return { dataDir: this.dataDir, filesDir: this.options.policy?.filesDir ?? null };
  }

  /** Stops the ingest; the memory stays answerable, and the stream stays stopped after a restart. */
  async stop(id: string): Promise<StreamStatus> {
    const stream = this.get(id);
    // Recorded first: a stop that stream.json cannot keep (DISK_FULL) is refused, not half done.
    stream.update({ desired: 'stopped' });
    await stream.ingest?.stop();
    this.log(`stream ${id}: stopped`);
    return this.status(id);
  }

  /** Restarts a stopped or failed stream's ingest (a finite source resumes after its last stored frame). */
  async start(id: string): Promise<StreamStatus> {
    const stream = this.get(id);
    if (!stream.session) throw new VigilError('STREAM_UNAVAILABLE', `stream '${id}' is not available: ${stream.unavailable ? publicMessage(stream.unavailable.message, this.pathRoots) : 'its memory is not open'}`);
    const resumes = !stream.ingesting && !stream.record.completed;
    if (resumes) this.assertIngestSlot();
    stream.update({ desired: 'running', lastError: null });
    if (resumes) this.startIngest(stream);
    return this.status(id);
  }

  /**
   * Removes a stream from the service. Without `purge` its memory stays on disk (a stream created
   * later with the same id continues it); with `purge` its folder (KV, index, thumbnails, upload) is deleted.
   */
  async remove(id: string, options: { purge?: boolean } = {}): Promise<void> {
    const stream = this.get(id);
    this.streams.delete(id);
    await this.detach(stream);
    if (options.purge) fs.rmSync(stream.dir, { recursive: true, force: true });
    else removeRecord(stream.dir);
    this.reshareDiskBudget();
    this.log(`stream ${id}: removed${options.purge ? ' and purged' : ''}`);
  }

  /**
   * Hands a stream to another node (cluster mode): stops its ingest, closes its memory and forgets
   * it here; its folder and record stay on disk. Nothing when this node does not have it.
   */
  async release(id: string): Promise<void> {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    await this.detach(stream);
    this.reshareDiskBudget();
    this.log(`stream ${id}: released (handed to another node)`);
  }

  /** Cluster mode: the node and lease epoch a stream's status names (null: none). */
  setOwnership(id: string, ownership: { owner: string; epoch: number } | null): void {
    const stream = this.streams.get(id);
    if (stream) stream.ownership = ownership;
  }

  /** Whether this manager has the stream open (cluster mode: owns it). */
  has(id: string): boolean {
    return this.streams.has(id);
  }

  /**
   * Answers a question from one stream's memory. Refused at once with OVERLOADED (an OverloadedError
   * carrying `retryAfterS`) when that stream's or the server's question queue is full.
   */
  async ask(id: string, question: StreamQuestion, hooks: AskHooks = {}): Promise<StreamAnswer> {
    const stream = this.get(id);
    const session = stream.session;
    if (!session) throw new VigilError('STREAM_UNAVAILABLE', `stream '${id}' is not available: ${stream.unavailable ? publicMessage(stream.unavailable.message, this.pathRoots) : 'its memory is still opening'}`);
    const mode = question.mode ?? 'rekv';
    if (!ANSWER_MODES.includes(mode)) throw new VigilError('BAD_INPUT', `unknown mode '${String(mode)}' (${ANSWER_MODES.join(', ')})`);
    const range = timeRange(question);
    if (mode === 'oracle' && !range) throw new VigilError('BAD_INPUT', 'mode oracle needs from and to: the ground-truth interval');
    // The answer's text is trimmed; streamed pieces are too, so that they add up to exactly that text.
    const pieces = trimmedPieces((piece) => hooks.onText?.(piece));
    let release: () => void;
    try {
      release = this.gate.admit(id);
    } catch (error) {
      this.emit('question', { streamId: id, outcome: 'rejected', mode, timing: null });
      throw error;
    }
    const queuedAt = performance.now();
    let startedAt = queuedAt;
    const { signal } = hooks;
    try {
      const answer = await this.scheduler.run(
        id,
        'question',
        () => {
          startedAt = performance.now();
          hooks.onStart?.();
          return session.ask({
            question: question.question,
            mode,
            retrieve: question.retrieve ?? LIMITS.r.default,
            maxNewTokens: question.maxTokens ?? LIMITS.maxTokens.default,
            ...(question.temperature !== undefined ? { temperature: question.temperature } : {}),
            ...(question.topP !== undefined ? { topP: question.topP } : {}),
            ...(question.seed !== undefined ? { seed: question.seed } : {}),
            ...(range && mode !== 'oracle' ? { timeRange: range } : {}),
            ...(range && mode === 'oracle' ? { oracleTimes: [range] } : {}),
            ...(question.maxReencode !== undefined ? { maxReencode: question.maxReencode } : {}),
            ...(hooks.onProgress ? { onProgress: hooks.onProgress } : {}),
            // Throwing from the token callback is how a running answer stops when its caller has gone.
            onText: (piece) => {
              if (signal?.aborted) throw new VigilError('CANCELLED', 'the question was cancelled');
              pieces(piece);
            },
          });
        },
        signal,
      );
      stream.answered++;
      // Only chunks that contributed: retrieval's zero-score fillers stay in the context, not in the evidence.
      const chunks: EvidenceItem[] = answer.evidence.filter((e) => contributed(answer.mode, e)).map((e) => ({
        chunkId: e.chunkId,
        tStart: e.tStart,
        tEnd: e.tEnd,
        layers: e.layers,
        score: e.meanScore,
        thumbnail: stream.thumbnails.find(e.chunkId) !== null,
      }));
      const result: StreamAnswer = {
        streamId: id,
        question: question.question,
        text: answer.text.trim(),
        mode: answer.mode,
        stopReason: answer.stopReason,
        evidence: mergeByTime(chunks, this.gapEvidence(stream, range, chunks)),
        skipped: skippedChunks(answer),
        tokens: answer.tokenIds.length,
        contextTokens: answer.contextTokens,
        horizon: answer.horizon,
        coverage: answer.coverage,
        outOfMemory: answer.coverage?.outOfMemory ?? false,
        archive: { ...answer.archive, reencodeMs: round(answer.archive.reencodeMs) },
        timing: {
          queueMs: round(startedAt - queuedAt),
          retrievalMs: round(answer.retrievalMs),
          loadMs: round(answer.loadMs),
          prefillMs: round(answer.prefillMs),
          ttftMs: round(answer.ttftMs),
          decodeMs: round(answer.decodeMs),
          totalMs: round(answer.totalMs),
          decodeTokensPerSecond: round(answer.decodeTokensPerSecond),
        },
      };
      // A statement about a time memory does not hold ran no model: it stays out of the latency histograms.
      this.emit('question', { streamId: id, outcome: 'answered', mode, timing: result.outOfMemory ? null : result.timing });
      return result;
    } catch (error) {
      const cancelled = isVigilError(error) && error.code === 'CANCELLED';
      this.emit('question', { streamId: id, outcome: cancelled ? 'cancelled' : 'failed', mode, timing: null });
      throw publicError(error, this.pathRoots);
    } finally {
      release();
    }
  }

  /**
   * A summary of [request.from, request.to] (src/engine/summaries): the range cut into events at
   * scene changes and outages, each described by the model through ask() with the question
   * restricted to the event's span, one event after another (each waits its turn in the question
   * queue and the model scheduler, so frames keep going in between).
   */
  async summarize(id: string, request: SummaryRequest, hooks: SummaryHooks = {}): Promise<StreamSummary> {
    const session = this.openSessionOf(this.get(id));
    try {
      const source = { streamId: id, store: session.store, horizon: () => session.horizon(), gate: session.gate.settings };
      return await summarizeRange(source, request, (question, askHooks) => this.ask(id, question, askHooks), hooks);
    } catch (error) {
      throw publicError(error, this.pathRoots);
    }
  }

  /**
   * The persisted outages that overlap the question's time range (else the stored span), as
   * evidence: "no frames from..to, because...". At most MAX_GAP_EVIDENCE, those nearest the
   * retrieved chunks. An answer never fails for them: a manifest that cannot be read leaves them out.
   */
  private gapEvidence(stream: ManagedStream, range: { start: number; end: number } | null, chunks: EvidenceItem[]): GapEvidence[] {
    const store = stream.session?.store;
    if (!store) return [];
    let gaps: Array<{ tStart: number; tEnd: number; reason: string }>;
    let span: { start: number; end: number } | null = range;
    try {
      if (!span) {
        const stats = store.stats();
        span = stats.tStart === null || stats.tEnd === null ? null : { start: stats.tStart, end: stats.tEnd };
      }
      gaps = store.gaps(span ? { from: span.start, to: span.end } : {});
    } catch (error) {
      this.log(`stream ${stream.id}: outages left out of an answer: ${(error as Error).message}`);
      return [];
    }
    let chosen = gaps;
    if (gaps.length > MAX_GAP_EVIDENCE) {
      // Nearest to what the answer looked at; without retrieved chunks, the newest.
      const distance = (g: { tStart: number; tEnd: number }) => (chunks.length === 0 ? -g.tEnd : nearestChunk(chunks, g.tStart, g.tEnd));
      chosen = gaps
        .map((g) => ({ g, d: distance(g) }))
        .sort((a, b) => a.d - b.d || a.g.tStart - b.g.tStart)
        .slice(0, MAX_GAP_EVIDENCE)
        .map(({ g }) => g);
    }
    return chosen.map((g) => ({ gap: { from: g.tStart, to: g.tEnd, reason: g.reason } }));
  }

  /** The stored JPEG of a chunk (or of the newest chunk), or null when there is none. */
  thumbnail(id: string, chunkId: number | 'latest'): string | null {
    const stream = this.get(id);
    const wanted = chunkId === 'latest' ? stream.thumbnails.newestChunkId : chunkId;
    return wanted === null ? null : stream.thumbnails.find(wanted);
  }

  /**
   * The stream's timeline over [range.from, range.to] (stream s; default its whole memory): scenes
   * (chunk spans) with thumbnails, outages, alerts and memory tiers, bounded (src/engine/timeline.ts).
   */
  timeline(id: string, range: TimelineRange = {}): StreamTimeline {
    const stream = this.get(id);
    const session = this.openSessionOf(stream);
    try {
      const stats = session.store.stats();
      const questions = new Map(session.listWatches().map((w) => [w.id, watchLabel(w)] as const));
      return streamTimeline({ stream: id, store: session.store, stats, horizon: session.memory.horizon(stats), alerts: session.alerts(), questions, hasThumbnail: (chunkId) => stream.thumbnails.find(chunkId) !== null }, range);
    } catch (error) {
      throw publicError(error, this.pathRoots);
    }
  }

  // ---- watches (standing questions, src/engine/watches) ---------------------------------------

  /**
   * Adds a watch to a stream (validated: BAD_INPUT for an empty or long question, an unknown
   * trigger, a malformed pattern, more than MAX_WATCHES). Its question's pass 1 is a model call, so
   * it waits its turn in the scheduler like a question. Persisted with the stream. A health watch
   * (`kind: 'health'`: offline, frozen, lag) needs no model: added at once, judged by the health timer.
   */
  async addWatch(id: string, spec: unknown): Promise<StreamWatch | StreamHealthWatch> {
    const stream = this.get(id);
    const session = this.openSessionOf(stream);
    // Refused before it queues for the model: a bad spec does not wait for a frame's encode.
    const parsed = parseAnyWatchSpec(spec);
    this.checkNotify(parsed.notify);
    if (isHealthWatch(parsed)) {
      try {
        session.watches.addHealth(parsed);
      } catch (error) {
        throw publicError(error, this.pathRoots);
      }
      return watchView(id, parsed, this.watchStatsOf(stream, session));
    }
    try {
      const watch = await this.scheduler.run(id, 'question', () => session.addWatch(spec));
      return watchView(id, watch, this.watchStatsOf(stream, session));
    } catch (error) {
      throw publicError(error, this.pathRoots);
    }
  }

  /** Removes a watch (its alerts are kept); false when the stream has none with that id. */
  removeWatch(id: string, watchId: string): boolean {
    const session = this.openSessionOf(this.get(id));
    try {
      return session.removeWatch(watchId);
    } catch (error) {
      throw publicError(error, this.pathRoots);
    }
  }

  /** A stream's watches in creation order, each with its stats. */
  listWatches(id: string): Array<StreamWatch | StreamHealthWatch> {
    const stream = this.get(id);
    const session = this.openSessionOf(stream);
    const stats = this.watchStatsOf(stream, session);
    return session.listWatches().map((w) => watchView(id, w, stats));
  }

  /** The stream's watch stats now: the engine's counters, and whether its health watches are judged (manager/watchStats.ts). */
  private watchStatsOf(stream: ManagedStream, session: StreamSession): WatchStatsView {
    return watchStatsView(session.watches, healthProbe(stream, Date.now(), this.pathRoots).monitored);
  }

  /** One watch, or null when the stream has none with that id. */
  getWatch(id: string, watchId: string): StreamWatch | StreamHealthWatch | null {
    return this.listWatches(id).find((w) => w.id === watchId) ?? null;
  }

  /**
   * Alerts in time order (wall time, then stream time). With `since`: the oldest `limit` at or
   * after it (page forward with the last one's wallTime; alerts are identified by id); without: the
   * newest `limit`. `truncated` says more matched. Streams whose memory is not open are left out.
   */
  alerts(query: AlertQuery): { alerts: Alert[]; truncated: boolean } {
    const sessions = query.stream !== undefined ? [this.openSessionOf(this.get(query.stream))] : [...this.streams.values()].flatMap((s) => (s.session ? [s.session] : []));
    const all = sessions
      .flatMap((session) => session.alerts(query.since !== undefined ? { since: query.since } : {}))
      .sort((a, b) => a.wallTime - b.wallTime || a.t - b.t || a.id.localeCompare(b.id));
    const limit = Math.max(0, Math.floor(query.limit));
    const alerts = query.since !== undefined ? all.slice(0, limit) : all.slice(Math.max(0, all.length - limit));
    return { alerts, truncated: all.length > alerts.length };
  }

  /**
   * Every new alert of every stream (streams created later included), as it is persisted. Returns
   * the unsubscribe. A listener that throws is logged and does not affect the others or the watch.
   */
  onAlert(listener: (alert: Alert) => void): () => void {
    this.alertListeners.add(listener);
    return () => {
      this.alertListeners.delete(listener);
    };
  }

  /** Current onAlert subscribers (open alert event streams, among others). */
  get alertSubscribers(): number {
    return this.alertListeners.size;
  }

  /** The webhook Notifier's status (queue depth, per webhook delivered / failed / refused, last success and failure); null when no webhook is configured. */
  notifications(): NotifierStatus | null {
    return this.notifier?.status() ?? null;
  }

  /** A watch's notify must name configured webhooks or MQTT brokers: BAD_INPUT naming the first unknown one. */
  private checkNotify(notify: readonly string[] | undefined): void {
    const unknown = (notify ?? []).find((id) => !this.webhookIds.has(id));
    if (unknown === undefined) return;
    const configured = [...this.webhookIds];
    const what = (this.options.mqtt ?? []).length > 0 ? 'webhook or MQTT broker' : 'webhook';
    throw new VigilError('BAD_INPUT', `notify: no ${what} has the id "${unknown}" (${configured.length > 0 ? `configured: ${configured.join(', ')}` : 'no webhook or MQTT broker is configured on this server'})`);
  }

  /**
   * Opens the Notifier on `<data>/notify` when webhooks or MQTT brokers are configured, and
   * subscribes it to every stream's alerts; the MQTT targets read the streams' states for their
   * availability topics.
   */
  private async openNotifier(): Promise<void> {
    const webhooks = this.options.webhooks ?? [];
    const mqtt = this.options.mqtt ?? [];
    if (webhooks.length === 0 && mqtt.length === 0) return;
    this.notifier = await Notifier.open({
      ...this.options.notifier,
      dir: path.join(this.dataDir, 'notify'),
      webhooks,
      mqtt,
      streams: () => this.list(),
      logConnection: this.log,
      policy: this.policy.outbound,
      log: (e) => {
        if (e.outcome === 'delivered') return;
        const detail = [e.status !== undefined ? `status ${e.status}` : '', e.reason ?? '', e.delayMs !== undefined ? `next try in ${Math.round(e.delayMs)} ms` : ''].filter(Boolean).join(', ');
        this.log(`${e.transport} ${e.target}: alert ${e.alertId} attempt ${e.attempt} ${e.outcome}${detail ? ` (${detail})` : ''}`);
      },
    });
    this.unsubscribeNotifier = this.onAlert((alert) => this.notifyAlert(alert));
  }

  /**
   * Hands an alert to the Notifier for the webhooks and MQTT brokers its watch names. Never awaited here (the caller
   * is the watch engine, behind ingest): the outbox write runs in the background, and a failure is
   * logged. A watch with no notify sends nothing.
   */
  private notifyAlert(alert: Alert): void {
    const notifier = this.notifier;
    if (!notifier) return;
    const watch = this.streams.get(alert.stream)?.session?.listWatches().find((w) => w.id === alert.watchId);
    const wanted = watch?.notify ?? [];
    const targets = wanted.filter((id) => this.webhookIds.has(id));
    // A persisted watch may name a webhook or broker removed from the configuration since.
    const missing = wanted.filter((id) => !this.webhookIds.has(id));
    if (missing.length > 0) this.log(`stream ${alert.stream}: watch ${alert.watchId}: notify target(s) ${missing.join(', ')} not configured; alert ${alert.id} not sent to them`);
    if (targets.length === 0) return;
    const pending: Promise<void> = notifier.enqueue(alert, { targets }).then(
      () => {
        this.enqueues.delete(pending);
      },
      (error: unknown) => {
        this.enqueues.delete(pending);
        this.log(`stream ${alert.stream}: alert ${alert.id} not queued for notification: ${error instanceof Error ? error.message : String(error)}`);
      },
    );
    this.enqueues.add(pending);
  }

  private dispatchAlert(alert: Alert): void {
    for (const listener of [...this.alertListeners]) {
      try {
        listener(alert);
      } catch (error) {
        this.log(`stream ${alert.stream}: an alert listener failed: ${(error as Error).message}`);
      }
    }
  }

  /** The stream's open memory, or STREAM_UNAVAILABLE (as for questions). */
  private openSessionOf(stream: ManagedStream): StreamSession {
    if (stream.session) return stream.session;
    throw new VigilError('STREAM_UNAVAILABLE', `stream '${stream.id}' is not available: ${stream.unavailable ? publicMessage(stream.unavailable.message, this.pathRoots) : 'its memory is still opening'}`);
  }

  /**
   * Stops every ingest and disposes every memory (then the model if it loaded it); running streams
   * resume at the next open. Idempotent: every call returns the same promise.
   */
  dispose(): Promise<void> {
    this.closing ??= (async () => {
      this.health.dispose();
      const streams = [...this.streams.values()];
      this.streams.clear();
      try {
        await Promise.all(streams.map((s) => this.detach(s)));
      } finally {
        // After the streams: alerts their last checks raised are in the outbox before it closes.
        this.unsubscribeNotifier?.();
        await Promise.allSettled([...this.enqueues]);
        await this.notifier?.close().catch((error: unknown) => this.log(`notifier: close failed: ${(error as Error).message}`));
      }
      if (this.ownsModel) await this.model.dispose();
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  // ------------------------------------------------------------------------------------------

  private get(id: string): ManagedStream {
    const stream = this.streams.get(id);
    if (!stream) throw new VigilError('STREAM_NOT_FOUND', `no stream with id '${id}'`);
    return stream;
  }

  private assertOpen(): void {
    if (this.closing) throw new VigilError('STREAM_UNAVAILABLE', 'the server is shutting down');
  }

  /** 429 (with Retry-After) when `limits.maxStreams` streams are already ingesting. */
  private assertIngestSlot(): void {
    const max = this.limits.maxStreams;
    if (this.ingestingStreams >= max) {
      throw new OverloadedError(`this server ingests at most ${max} streams at once; stop or delete one, or wait for one to end`, STREAM_SLOT_RETRY_S);
    }
  }

  private async restore(): Promise<void> {
    const ids = listStreamIds(this.dataDir);
    // A memory removed without purge keeps its folder but no record: it is no longer a stream.
    this.recordedStreams = ids.filter((id) => {
      try {
        return readRecord(streamDir(this.dataDir, id)) !== null;
      } catch {
        return false;
      }
    }).length;
    try {
      await this.restoreStreams(ids);
    } finally {
      this.recordedStreams = 0;
    }
  }

  private async restoreStreams(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const dir = streamDir(this.dataDir, id);
      let record: StreamRecord | null;
      try {
        record = readRecord(dir);
      } catch (error) {
        this.log(`stream ${id}: skipped, ${(error as Error).message}`);
        continue;
      }
      if (!record) continue;
      const stream = new ManagedStream(dir, record);
      this.streams.set(id, stream);
      try {
        await this.openSession(stream);
      } catch (error) {
        stream.unavailable = { code: isVigilError(error) ? error.code : 'STORE_IO', message: (error as Error).message };
        this.log(`stream ${id}: memory unavailable: ${(error as Error).message}`);
        continue;
      }
      if (this.options.resume !== false && record.desired === 'running' && !record.completed) this.startIngest(stream);
      this.log(`stream ${id}: restored (${stream.session?.stats().storedChunks ?? 0} chunks)`);
    }
  }

  /**
   * The budget a stream keeps (bytes): its own, or its share of the data folder's budget among
   * `streams` streams when that is smaller; undefined for a stream recorded before budgets existed
   * when there is no data-folder budget.
   */
  private budgetFor(settings: StreamSettings, streams: number): number | undefined {
    const share = this.options.diskBudget !== undefined ? Math.floor(this.options.diskBudget / Math.max(1, streams)) : undefined;
    if (settings.budget === undefined) return share;
    return share === undefined ? settings.budget : Math.min(settings.budget, share);
  }

  /**
   * Before a stream is created: its budget (or share) must hold a segment and its window at this
   * model, every other stream's shrunken share must still hold theirs, and the filesystem must hold
   * its first hour. Each miss is BAD_INPUT naming the limit.
   */
  private async checkNewStreamBudget(id: string, settings: StreamSettings): Promise<void> {
    const count = this.streams.size + 1;
    const budget = this.budgetFor(settings, count);
    if (budget === undefined) {
      if (settings.tiers) throw new VigilError('BAD_INPUT', `stream '${id}': tiers need a disk budget (set budget)`);
      return;
    }
    const shared = budget !== settings.budget;
    const what = shared ? `stream '${id}': its share of the disk budget (${count} streams),` : 'budget';
    const plan = streamBudgetPlan(this.model, budget, settings.storage, settings.windowFrames, what);
    checkTiers(plan, settings.windowFrames, settings.tiers, what);
    if (this.options.diskBudget !== undefined) {
      for (const other of this.streams.values()) {
        const s = other.record.settings;
        const share = this.budgetFor(s, count)!;
        const what = `adding stream '${id}' would leave stream '${other.id}' a share of the disk budget of`;
        checkTiers(streamBudgetPlan(this.model, share, s.storage, s.windowFrames, what), s.windowFrames, s.tiers, what);
        // Its segments were sized for the share it opened with; a budget must hold one of them.
        const segment = other.session?.store.segmentBytes;
        if (segment !== undefined && share < segment) {
          throw new VigilError('BAD_INPUT', `${what} ${describeBytes(share)}, below its segment size of ${describeBytes(segment)} (set when it opened with a larger share; segments are resized when the server restarts)`);
        }
      }
    }
    const free = this.options.testFaults?.freeBytes ? this.options.testFaults.freeBytes() : await freeBytes([this.dataDir]);
    checkFirstHour(free, firstHourBytes(plan, this.model, settings.fps), settings.fps);
  }

  /** The data-folder budget is shared again (a stream came or went): every open store gets its new budget now. */
  private reshareDiskBudget(): void {
    if (this.options.diskBudget === undefined) return;
    for (const stream of this.streams.values()) {
      const store = stream.session?.store;
      const budget = this.budgetFor(stream.record.settings, this.streams.size);
      if (!store || budget === undefined || store.retention?.budgetBytes === budget) continue;
      try {
        store.setRetention({ ...store.retention, budgetBytes: budget });
      } catch (error) {
        this.log(`stream ${stream.id}: its share of the disk budget could not be applied: ${(error as Error).message}`);
      }
    }
  }

  private async openSession(stream: ManagedStream): Promise<void> {
    const { settings } = stream.record;
    const store = this.options.store ?? {};
    let retention: RetentionPolicy = {
      ...(settings.retention.maxBytes !== undefined ? { maxBytes: settings.retention.maxBytes } : {}),
      ...(settings.retention.maxStreamAgeSec !== undefined ? { maxStreamAgeSec: settings.retention.maxStreamAgeSec } : {}),
    };
    // Retention deletes whole segments: with a byte budget, segments must be well under it.
    let segmentBytes = store.segmentBytes ?? (retention.maxBytes ? Math.max(64 * 1024, Math.min(256 * 1024 ** 2, Math.floor(retention.maxBytes / 8))) : undefined);
    // Restored streams all count (this one is already in the map): shares are final once restore ends.
    const budget = this.budgetFor(settings, Math.max(this.streams.size, this.recordedStreams));
    if (budget !== undefined) {
      const plan = streamBudgetPlan(this.model, budget, settings.storage, settings.windowFrames, `stream '${stream.id}': budget`);
      retention = budgetRetention(plan, stream.dir, retention, settings.tiers);
      segmentBytes = store.segmentBytes ?? Math.min(plan.segmentBytes, segmentBytes ?? Infinity);
    }
    // Opening encodes the stream's text prefix: a model call, so it waits its turn like any other.
    stream.session = await this.scheduler.run(stream.id, 'question', () =>
      StreamSession.open(this.model, {
        dir: stream.dir,
        // Watch checks are model work too: they take their turn with every stream's frames and questions.
        runModelTask: (task) => this.scheduler.run(stream.id, 'question', task),
        sinkFrames: settings.sinkFrames,
        windowFrames: settings.windowFrames,
        storageDtype: settings.storage,
        gate: settings.gate ?? gateSettings(this.options.defaults?.gate),
        ...(Object.keys(retention).length > 0 ? { retention } : {}),
        ...(store.fsync !== undefined ? { fsync: store.fsync } : {}),
        ...(store.cacheBytes !== undefined ? { cacheBytes: store.cacheBytes } : {}),
        ...(segmentBytes !== undefined ? { segmentBytes } : {}),
      }),
    );
    // Retention's removals (one event from the stream's memory): thumbnails and the gap summary follow.
    stream.session.memory.onRemoved((ids) => this.afterRetention(stream, ids));
    // Alerts of this memory's watches (reopened from its folder) go to the manager's subscribers.
    stream.session.watches.onCheck((check) => {
      if (check.alert) this.dispatchAlert(check.alert);
    });
    stream.thumbnails.resumeAt(stream.session.store.stats().lastChunkId);
    this.reloadGaps(stream);
  }

  /** Old chunks left the store (retention): their thumbnails go, and gaps that ended before them. */
  private afterRetention(stream: ManagedStream, chunkIds: readonly number[]): void {
    stream.removeThumbnails(chunkIds).catch((error: unknown) => this.log(`stream ${stream.id}: removing thumbnails failed: ${(error as Error).message}`));
    this.reloadGaps(stream);
  }

  /** The gap summary of a stream's status, from the manifest (after opening, and after retention removed old ones). */
  private reloadGaps(stream: ManagedStream): void {
    try {
      stream.loadGaps();
    } catch (error) {
      this.log(`stream ${stream.id}: its outages could not be read: ${(error as Error).message}`);
    }
  }

  private startIngest(stream: ManagedStream): void {
    if (!stream.session || stream.ingesting || this.closing) return;
    const { record } = stream;
    const input = record.origin === 'config' ? expandEnv(record.source, process.env, `stream '${record.id}'`) : record.source;
    // A live source probed before (by this node, or by a cluster node that owned the stream) starts without probing.
    const knownProbe = stream.sourceProbe.load(input);
    const ingest = new StreamIngest({
      streamId: record.id,
      session: stream.session,
      scheduler: this.scheduler,
      thumbnails: stream.thumbnails,
      input,
      source: { ...this.options.sourceOptions, fps: record.settings.fps, policy: this.policy.outboundFor(record.origin), ...(knownProbe ? { knownProbe } : {}) },
      onProbe: (probe) => stream.sourceProbe.save(input, probe, (line) => this.log(`stream ${record.id}: ${line}`)),
      onWarning: (message) => this.log(`stream ${record.id}: ${message}`),
      spaceDirs: [stream.dir, streamStoreDir(stream.dir), streamIndexDir(stream.dir), stream.thumbnails.dir],
      onGap: (gap) => stream.noteGap(gap),
      onFrame: (frame) => this.health.observeFrame(stream, frame),
      onResumed: () => {
        this.log(`stream ${record.id}: disk space is back, ingest resumed`);
        if (stream.recordUnsaved) stream.persistSoon();
      },
      ...(this.options.diskFull ? { diskFull: this.options.diskFull } : {}),
      ...(this.options.testFaults?.beforeAddFrame || this.options.commitFence ? { beforeAddFrame: () => this.beforeAddFrame(record.id) } : {}),
      ...(this.options.commitGate ? { beforeStore: (signal: AbortSignal) => this.options.commitGate!(record.id, signal) } : {}),
    });
    stream.ingest = ingest;
    stream.ingesting = true;
    ingest.done
      .then((outcome) => {
        stream.ingesting = false;
        if (ingest.source?.probe?.durationS != null) stream.durationS = ingest.source.probe.durationS;
        if (this.streams.get(record.id) !== stream || this.closing) return;
        const live = ingest.sourceStats()?.live ?? false;
        if (outcome.result === 'ended' && !live) {
          stream.record.completed = true;
          // The memory holds what questions need; the uploaded file is only kept to resume an interrupted ingest.
          if (stream.record.upload) fs.rmSync(stream.record.upload.file, { force: true });
        }
        if (outcome.result === 'failed') stream.record.lastError = outcome.error;
        if (!stream.persistSoon()) this.log(`stream ${record.id}: its record could not be saved (disk full); retried at the next save`);
        this.log(`stream ${record.id}: ingest ${outcome.result}${outcome.error ? ` (${outcome.error.code}: ${outcome.error.message})` : ''}, ${ingest.framesEncoded} frames`);
      })
      .catch((error: unknown) => this.ingestEndFailed(stream, error));
  }

  private beforeAddFrame(streamId: string): void {
    this.options.commitFence?.(streamId);
    this.options.testFaults?.beforeAddFrame?.(streamId);
  }

  /**
   * Recording the end of an ingest failed (the record write or the upload removal: ENOSPC, EACCES).
   * It must not become an unhandled rejection (that would exit the process with every camera): the
   * stream shows the error in its status and the log says why.
   */
  private ingestEndFailed(stream: ManagedStream, error: unknown): void {
    stream.ingesting = false;
    const message = error instanceof Error ? error.message : String(error);
    stream.record.lastError = { code: isVigilError(error) ? error.code : 'STORE_IO', message: `recording the end of the ingest failed: ${message}` };
    this.log(`stream ${stream.id}: recording the end of the ingest failed: ${error instanceof Error ? (error.stack ?? message) : message}`);
  }

  /** Stops the ingest and disposes the memory; the record stays as it is. */
  private async detach(stream: ManagedStream): Promise<void> {
    await stream.ingest?.stop();
    // A change a full disk kept from stream.json gets one more try before the stream goes.
    if (stream.recordUnsaved && !stream.persistSoon()) this.log(`stream ${stream.id}: its record could not be saved (disk full); the previous stream.json is kept`);
    await stream.session?.dispose();
    stream.session = null;
  }

  private newRecord(
    id: string,
    request: CreateStreamRequest,
    origin: 'api' | 'config',
    kind: StreamRecord['kind'],
    source: string,
    display: string,
    settings: StreamSettings,
    upload: StreamRecord['upload'],
  ): StreamRecord {
    return {
      version: 1,
      id,
      name: request.name ?? id,
      origin,
      source,
      display,
      kind,
      upload,
      settings,
      createdAt: new Date().toISOString(),
      desired: 'running',
      completed: false,
      lastError: null,
    };
  }

  /** Moves an uploaded file from the incoming folder into the stream's folder. */
  private takeUpload(upload: { file: string; name: string }, dir: string): string {
    const from = path.resolve(upload.file);
    const rel = path.relative(this.incomingDir, from);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new VigilError('BAD_INPUT', 'an upload must be a file in the incoming folder');
    const target = path.join(dir, 'video', `upload${path.extname(safeName(upload.name)) || '.bin'}`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.renameSync(from, target);
    return target;
  }

  private newId(): string {
    for (;;) {
      const id = `s${randomBytes(4).toString('hex')}`;
      if (!this.streams.has(id) && !fs.existsSync(streamDir(this.dataDir, id))) return id;
    }
  }
}

/**
 * Passes text pieces on without the answer's leading and trailing whitespace: leading whitespace is
 * dropped, whitespace after the text is held back until more text follows (and dropped at the end).
 * The pieces passed on then add up to exactly the trimmed answer.
 */
function trimmedPieces(emit: (piece: string) => void): (piece: string) => void {
  let started = false;
  let held = '';
  return (piece) => {
    let text = started ? held + piece : piece.trimStart();
    if (text === '') return;
    started = true;
    const body = text.trimEnd();
    held = text.slice(body.length);
    text = body;
    if (text !== '') emit(text);
  };
}

/**
 * Distance (s) from [from, to] to the nearest of `chunks` (in time order, not overlapping one
 * another): a binary search, since mode full can bring a whole history of evidence.
 */
function nearestChunk(chunks: readonly EvidenceItem[], from: number, to: number): number {
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (chunks[mid]!.tStart <= to) lo = mid + 1;
    else hi = mid;
  }
  // chunks[lo - 1] is the last that starts by `to`, chunks[lo] the first after it.
  const before = lo > 0 ? Math.max(0, from - chunks[lo - 1]!.tEnd) : Infinity;
  const after = lo < chunks.length ? chunks[lo]!.tStart - to : Infinity;
  return Math.min(before, after);
}

/** Chunk evidence and outage entries in one list, in stream time (a chunk before an outage that starts at its time). */
function mergeByTime(chunks: EvidenceItem[], gaps: GapEvidence[]): EvidenceEntry[] {
  const at = (e: EvidenceEntry) => ('gap' in e ? e.gap.from : e.tStart);
  const entries: EvidenceEntry[] = [...chunks, ...gaps];
  return entries.sort((a, b) => at(a) - at(b) || Number('gap' in a) - Number('gap' in b));
}

/** The damaged chunks an answer left out: stream time (null where the manifest lost it) and reason, without internal chunk ids. */
function skippedChunks(answer: { skipped?: ReadonlyArray<{ t: number | null; reason: string }> }): Array<{ t: number | null; reason: string }> {
  return (answer.skipped ?? []).map((s) => ({ t: s.t, reason: s.reason }));
}

function watchView(stream: string, watch: AnyWatch, stats: WatchStatsView): StreamWatch | StreamHealthWatch {
  return isHealthWatch(watch) ? healthWatchView(stream, watch, stats) : questionWatchView(stream, watch, stats);
}

function healthWatchView(stream: string, watch: HealthWatch, stats: WatchStatsView): StreamHealthWatch {
  return {
    id: watch.id,
    stream,
    kind: 'health',
    condition: watch.condition,
    thresholdSec: watch.thresholdSec,
    cooldownSec: watch.cooldownSec,
    ...(watch.notify !== undefined && watch.notify.length > 0 ? { notify: [...watch.notify] } : {}),
    createdAt: watch.createdAt,
    active: true,
    stats: stats.health(watch),
  };
}

function questionWatchView(stream: string, watch: Watch, stats: WatchStatsView): StreamWatch {
  return {
    id: watch.id,
    stream,
    question: watch.question,
    trigger: watch.trigger,
    ...(watch.pattern !== undefined ? { pattern: watch.pattern } : {}),
    cooldownSec: watch.cooldownSec,
    maxIntervalSec: watch.maxIntervalSec,
    ...(watch.notify !== undefined && watch.notify.length > 0 ? { notify: [...watch.notify] } : {}),
    createdAt: watch.createdAt,
    active: stats.active(watch.id),
    stats: stats.question(watch.id),
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * Checks each webhook's configuration and where its URL leads, with the URL policy API callers'
 * sources obey: BAD_CONFIG naming the webhook (by id, scheme, host and port: never the URL's path,
 * query or the secret) when refused. A host that does not resolve now is only logged: delivery
 * resolves (and checks) again at every connection.
 */
async function checkWebhooks(webhooks: readonly WebhookConfig[], policy: SourcePolicy, log: (line: string) => void): Promise<void> {
  for (const webhook of webhooks) {
    const checked = checkWebhook(webhook, 10_000);
    try {
      await checkWebhookAddress(checked.url, policy.outbound);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (isVigilError(error) && error.code === 'SOURCE_UNREACHABLE') {
        log(`webhook ${checked.id} (${checked.display}): ${message}; delivery will try again`);
        continue;
      }
      throw new VigilError('BAD_CONFIG', `webhook "${checked.id}" (${checked.display}) is refused by the URL policy: ${message}`, { cause: error });
    }
  }
}
