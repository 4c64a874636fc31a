import type { KvStorageDtype } from '../../../memory/frameChunk.js';
import type { TierSettings } from '../../../common/settings.js';
import type { GateRequest, GateSetting } from '../frameGate.js';
import type { AnswerMode } from '../streamSession.js';
import type { MemoryCoverage, MemoryHorizon } from '../memoryHorizon.js';
import type { ArchiveReport, ReencodeProgress } from '../archiveRecall.js';

/** What a caller (API, config file, code) asks for when adding a stream. Unset fields take the manager's defaults. */
export interface CreateStreamRequest {
  /** Stream id (1-64 of [A-Za-z0-9_-]); generated when absent. Reusing the id of a detached memory continues it. */
  id?: string;
  /** Display name; default the id. */
  name?: string;
  /** A URL (rtsp, rtsps, http, https) or a server-side file path; exactly one of source and upload. */
  source?: string;
  /** A video already written under `manager.incomingDir` (e.g. by an upload handler); moved into the stream folder. */
  upload?: { file: string; name: string };
  /** Sampled frames per second. Default 1. */
  fps?: number;
  /** Recent frames kept in context while encoding. Default 16. */
  window?: number;
  /** First frames kept in context forever. Default 1. */
  sinks?: number;
  /** KV payload dtype on disk. Default float32. */
  storage?: KvStorageDtype;
  /** Frame gating: 'off', or { threshold, maxHoldSec } (either may be left out). Default: the server's default gate. */
  gate?: GateRequest;
  /** Older limits: segment bytes and/or stream-time age (s); oldest segments go first. Default: none (the budget applies). */
  retention?: { maxBytes?: number; maxAgeSec?: number };
  /** Disk budget: bytes or a size string ("20GB" = 20e9, "1.5GiB" = 1.5 * 2^30). Default 20 GB. */
  budget?: number | string;
  /**
   * Memory tiers under the budget: keepFullSec (newest stream seconds kept at the stream's dtype,
   * default 1800), kvShare (share of the budget KV may take before the oldest chunks go to the
   * archive, 0..1, default 0.4), archive (default true). Fields left out take the server's defaults.
   */
  tiers?: TierSettings;
}

/**
 * starting: the memory is being opened; connecting / live / backing-off: a live source's state;
 * processing: a finite source (file, upload) is being read; paused: the disk is full, ingest waits
 * for space (frames of a live source are dropped meanwhile; answerable; `error` is DISK_FULL);
 * ended: a finite source was read to its end (still answerable); stopped: stopped by a caller
 * (answerable); failed: the source failed (see `error`; answerable); unavailable: the memory could
 * not be opened (see `error`).
 */
export type StreamState = 'starting' | 'connecting' | 'live' | 'backing-off' | 'processing' | 'paused' | 'ended' | 'stopped' | 'failed' | 'unavailable';

export const STREAM_STATES: readonly StreamState[] = ['starting', 'connecting', 'live', 'backing-off', 'processing', 'paused', 'ended', 'stopped', 'failed', 'unavailable'];

/** An outage persisted in the stream's timeline (stream time, s): the camera was down, the service stopped, the disk was full. */
export interface TimelineGap {
  from: number;
  to: number;
  reason: string;
}

export interface StreamStatus {
  id: string;
  name: string;
  /** The source with credentials removed (uploads: `upload:<file name>`). */
  source: string;
  origin: 'api' | 'config';
  kind: 'file' | 'upload' | 'rtsp' | 'http' | 'hls';
  /** Whether the source is live (null until it has been probed). */
  live: boolean | null;
  state: StreamState;
  createdAt: string;
  /**
   * `budget`: the stream's own disk budget in bytes (null: a stream recorded before budgets, which
   * keeps none); `tiers`: the memory tiers in force under a budget, defaults filled in.
   */
  settings: {
    fps: number;
    window: number;
    sinks: number;
    storage: KvStorageDtype;
    gate: GateSetting;
    retention: { maxBytes?: number; maxAgeSec?: number };
    budget: number | null;
    tiers: Required<TierSettings>;
  };
  /**
   * Bytes on disk against the budget in force (the stream's own, or its share of `--disk-budget`
   * when smaller): `usedBytes` measured (chunk store folder and index folder), null budget when none.
   */
  disk: { budgetBytes: number | null; usedBytes: number; percent: number | null } | null;
  /** Frames encoded since the ingest (re)started. */
  frames: number;
  /**
   * What the stream remembers: chunks and bytes on disk, the stream-time span, frames in the context
   * window, and the outages persisted in its timeline (count and newest; they survive restarts);
   * `horizon`: how far back it reaches, per fidelity tier, its outages and what retention forgot.
   */
  memory: { chunks: number; bytes: number; firstT: number | null; lastT: number | null; contextFrames: number; gaps: number; lastGap: TimelineGap | null; horizon: MemoryHorizon } | null;
  /** The live ingest, null when none ran since the process started. */
  ingest: {
    /** Frames encoded per second (10-s window). */
    fps: number;
    /** Frames sampled from the source per second (10-s window). */
    sourceFps: number;
    /** How far ingest is behind the source: age of the oldest delivered frame not stored yet, queued or in the model (ms). */
    lagMs: number;
    /** Frames dropped because the model was behind (live sources). */
    drops: number;
    /** Outages recorded in the timeline, and reconnects (ffmpeg restarts). */
    gaps: number;
    restarts: number;
    queued: number;
    lastGap: { startT: number; endT: number | null; reason: string } | null;
    /** Outages this ingest could not write to the timeline (the write failed; ingest went on). */
    gapWriteErrors: number;
    /** Times this ingest paused because the disk was full, and live frames dropped while paused. */
    pauses: number;
    pausedDrops: number;
    /** Frames the gate turned away (not encoded; the previous chunk's span covers them). */
    gated: number;
  } | null;
  /** How far the stream has got: `t` the newest stored stream time (0 before the first frame); `durationS` and `fraction` for finite sources (null for live ones, or before the probe). */
  progress: { t: number; durationS: number | null; fraction: number | null };
  questions: { queued: number; answered: number };
  /** Chunk id of the newest thumbnail, null when there is none. */
  latestThumbnail: number | null;
  /** Why the stream failed, is unavailable, or (live sources) is reconnecting; null otherwise. */
  error: { code: string; message: string } | null;
  /** Cluster mode only (`vigil serve --cluster`): the node that owns the stream and its lease's epoch. */
  owner?: string;
  epoch?: number;
}

export interface StreamQuestion {
  question: string;
  /** rekv (default), window, full, uniform, or oracle (with from/to as the ground-truth interval). */
  mode?: AnswerMode;
  /** Chunks retrieved per layer (rekv) or frames (uniform). Default 64. */
  retrieve?: number;
  /** Only memory between these stream times (s) is searched. */
  from?: number;
  to?: number;
  /** Most answer tokens. Default 64. */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** rekv: archived frames (no KV) re-encoded at most for this answer. Default 8; 0 leaves the archive out. */
  maxReencode?: number;
}

export interface EvidenceItem {
  chunkId: number;
  tStart: number;
  tEnd: number;
  /** Layers that retrieved the chunk and their mean score. */
  layers: number;
  score: number;
  /** Whether a thumbnail of the chunk is stored. */
  thumbnail: boolean;
}

/** An outage in the question's time range: no frames exist for it (`from`..`to`, stream time). */
export interface GapEvidence {
  gap: TimelineGap;
}

export type EvidenceEntry = EvidenceItem | GapEvidence;

export function isGapEvidence(entry: EvidenceEntry): entry is GapEvidence {
  return 'gap' in entry;
}

export interface AnswerTiming {
  /** Waiting for the model (other streams' frames and questions). */
  queueMs: number;
  retrievalMs: number;
  loadMs: number;
  prefillMs: number;
  /** Time to first token from when the question started running: retrieval + load + prefill. */
  ttftMs: number;
  decodeMs: number;
  totalMs: number;
  decodeTokensPerSecond: number;
}

export interface StreamAnswer {
  streamId: string;
  question: string;
  text: string;
  mode: AnswerMode;
  stopReason: 'eos' | 'max_new_tokens';
  /** Retrieved chunks and the outages in the searched range, in time order. */
  evidence: EvidenceEntry[];
  /** Damaged chunks the answer had to leave out (stream time, null where it is no longer known; why). */
  skipped: Array<{ t: number | null; reason: string }>;
  tokens: number;
  contextTokens: number;
  timing: AnswerTiming;
  /** The memory the question was answered over (src/engine/memoryHorizon.ts). */
  horizon: MemoryHorizon;
  /** With a time range (from/to): the parts of it memory does not hold, and a note saying so; null without one. */
  coverage: MemoryCoverage | null;
  /** Memory holds nothing of the asked range: `text` is a statement saying so, and no model ran. */
  outOfMemory: boolean;
  /** Archived chunks retrieval chose, how many were re-encoded into the context, how many left out, and the time it took. */
  archive: ArchiveReport;
}

export interface AskHooks {
  /** Each decoded piece of the answer, as soon as it is whole characters. */
  onText?: (piece: string) => void;
  /** Called once the question leaves the queue and starts on the model. */
  onStart?: () => void;
  /** Progress of re-encoding archived frames (before the first token; each costs a frame's encode). */
  onProgress?: (progress: ReencodeProgress) => void;
  /** Cancels a queued question, or stops a running one at its next token (CANCELLED). */
  signal?: AbortSignal;
}

/** Emitted for every question, for metrics: how it ended and, when the model answered it, its timing (null for a statement about a time memory does not hold). */
export interface QuestionEvent {
  streamId: string;
  outcome: 'answered' | 'rejected' | 'cancelled' | 'failed';
  mode: AnswerMode;
  timing: AnswerTiming | null;
}

export interface ManagerLimits {
  /** Streams ingesting at once (ended, failed and stopped streams do not count); past it a create or start is refused (OVERLOADED). Default 32. */
  maxStreams: number;
  /** Questions queued or running per stream before 429. Default 4. */
  questionsPerStream: number;
  /** Questions queued or running in all before 429. Default 16. */
  questionsTotal: number;
}

/** A watch as the manager shows it: the engine's record plus its stream and whether it is running. */
export interface StreamWatch {
  id: string;
  stream: string;
  question: string;
  trigger: 'answer-changes' | 'answer-matches' | 'yes';
  /** answer-matches only. */
  pattern?: string;
  cooldownSec: number;
  maxIntervalSec: number;
  /** Webhook ids its alerts are delivered to (absent: none). */
  notify?: string[];
  /** Wall time of creation, ms since the epoch. */
  createdAt: number;
  /** False for a persisted watch whose question could not be turned into queries at open (it never checks; see the log). */
  active: boolean;
  /** Its counters since the stream's memory opened (manager/watchStats.ts). */
  stats: StreamWatchStats;
}

/** A question watch's counters since the stream's memory opened (a restart starts them at 0): the engine's WatchStats. */
export interface StreamWatchStats {
  framesScored: number;
  /** Checks that waited for the next frame because the stream's check queue was full. */
  deferred: number;
  checks: number;
  checksByReason: { first: number; score: number; interval: number; 'left-window': number };
  alerts: number;
  /** Rising edges the cooldown held back. */
  suppressed: number;
  errors: number;
  lastError: string | null;
  /** Mean prefilter time per encoded frame, all the stream's question watches together, ms. */
  prefilterMs: number;
}

/** What the health monitor knows of a health watch now. */
export interface StreamHealthWatchStats {
  /** The stream is judged now: a live source it is meant to be ingesting (not stopped by a caller, not a file). */
  judged: boolean;
  /** The condition was raised and has not cleared (read from the watch's newest alert, so it holds across a restart). */
  raised: boolean;
  /** While raised: when the condition began, wall ms since the epoch; else null. */
  since: number | null;
  /** While raised: the raising alert's answer; else null. */
  answer: string | null;
  /** Wall time of the watch's newest alert (raised or cleared), ms; null: none held. */
  lastAlertAt: number | null;
}

/** A health watch as the manager shows it (watches/healthMonitor.ts): no model, the ingest's own state. */
export interface StreamHealthWatch {
  id: string;
  stream: string;
  kind: 'health';
  condition: 'offline' | 'frozen' | 'lag';
  thresholdSec: number;
  cooldownSec: number;
  notify?: string[];
  createdAt: number;
  /** Always true: a health watch needs nothing to start. */
  active: boolean;
  stats: StreamHealthWatchStats;
}

/** Either kind of watch, as listed. */
export type AnyStreamWatch = StreamWatch | StreamHealthWatch;

/** Which alerts `StreamManager.alerts` returns. */
export interface AlertQuery {
  /** One stream's alerts (STREAM_NOT_FOUND when unknown); default every stream's. */
  stream?: string;
  /** Wall time, ms since the epoch: alerts at or after it. */
  since?: number;
  /** Most alerts returned. */
  limit: number;
}
