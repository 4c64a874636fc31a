/**
 * Types shared by every part of ingest/ and by its callers (the engine, the CLI, the API).
 * ingest/ is model-free: a Frame carries raw RGB pixels; turning them into the model's input tensor
 * is `ingest/modelAdapter.ts`, the one file here that knows about the model.
 */
import type { VigilErrorCode } from '../common/errors.js';

/** One sampled video frame. */
export interface Frame {
  /**
   * Stream time in seconds, from the frame's presentation timestamp (pts), never from frame counting.
   * Files: seconds from the container's start (0 = first moment of the file). Live sources: seconds
   * since the first frame of the session; across a reconnect the clock continues with the wall-clock
   * length of the outage, so `t` is strictly increasing for the life of a source.
   */
  t: number;
  /** When Vigil received the frame from ffmpeg (ms since the epoch). */
  wallTime: number;
  width: number;
  height: number;
  /** RGB24, row-major, width * height * 3 bytes. */
  data: Uint8Array;
  /** 0, 1, 2, ... per source: the index of this frame among the sampled frames. */
  seq: number;
  /** Which ffmpeg run (connection) produced it: 0 for the first, +1 after every restart. */
  run: number;
  /** Whether the decoded picture was a keyframe. */
  keyframe: boolean;
}

export type SourceKind = 'file' | 'upload' | 'rtsp' | 'http' | 'hls';

/** connecting -> live -> (backing-off -> connecting -> live)* -> ended | failed. */
export type SourceState = 'connecting' | 'live' | 'backing-off' | 'ended' | 'failed';

/** What happens when frames arrive faster than the consumer takes them and the queue is full. */
export type QueuePolicy = 'drop-oldest' | 'drop-newest' | 'block';

/**
 * - all: decode every frame, pick the first frame of each 1/F-second bin.
 * - keyframes: the decoder skips everything but keyframes (`-skip_frame nokey`); right when the
 *   keyframe interval is at most the sample period, and several times cheaper.
 * - refs: the decoder skips non-reference frames (`-skip_frame noref`, typically the B-frames:
 *   never needed to decode others); the sampled frame of a bin is then the first reference frame
 *   in it, a few frame intervals after the bin start at most.
 * - auto: keyframes when the measured keyframe interval allows it; else refs when the native
 *   frame rate is at least 4 F (so every bin holds reference frames); else all. Any mode that turns
 *   out to leave a bin empty switches to all (see VideoSource).
 */
export type DecodeMode = 'auto' | 'all' | 'keyframes' | 'refs';
export type RunDecodeMode = Exclude<DecodeMode, 'auto'>;

export type OutputSize =
  | { width: number; height: number } /* stretched to exactly this */
  | { longestEdge: number } /* aspect kept, longest edge to this, sides even */;

export interface BackoffOptions {
  /** First delay (ms). Default 1000. */
  initialMs: number;
  /** Cap (ms). Default 60000. */
  maxMs: number;
  /** Growth per failed attempt. Default 2. */
  factor: number;
  /** Random +-fraction added to each delay so that many cameras do not retry in lockstep. Default 0.1. */
  jitter: number;
  /** Give up (state `failed`) after this many failed attempts in a row. Default Infinity. */
  maxAttempts: number;
}

export interface QueueOptions {
  /** Frames held between ingest and the consumer. Default 16 (live) or 4 (files). */
  capacity: number;
  /** Default drop-oldest for live sources, block for finite ones (files, uploads, HTTP files). */
  policy: QueuePolicy;
}

/** An outage in a live stream's timeline. */
export interface Gap {
  /** Stream time of the last frame before the outage (0 when the source never delivered one). */
  startT: number;
  /** Stream time of the first frame after it; null while the outage lasts. */
  endT: number | null;
  startWall: number;
  endWall: number | null;
  /** What ended the previous run: e.g. "stall: no frame for 20 s", "connection refused". */
  reason: string;
  /** The error that started it; null for a deliberate restart (decode mode switch). */
  code: VigilErrorCode | null;
  /** ffmpeg starts that failed during this outage. */
  attempts: number;
}

export interface SourceErrorInfo {
  code: VigilErrorCode;
  message: string;
  at: number;
}

export interface SourceStats {
  source: string /* display form, credentials removed */;
  kind: SourceKind;
  live: boolean;
  state: SourceState;
  /** Why the source ended: eof, stopped, max-frames; or the failure. */
  endReason: string | null;
  fps: number /* requested sample rate */;
  decodeMode: RunDecodeMode | null /* the mode of the current or last run */;
  framesDecoded: number;
  framesSampled: number;
  /** Frames dropped by the queue policy (the consumer was too slow). */
  framesDropped: number;
  framesDelivered: number;
  /** Sampled frames per second over the last 10 s of wall time. */
  currentFps: number;
  lastFrameT: number | null;
  lastFrameWall: number | null;
  queued: number;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
  /** Age of the oldest frame waiting in the queue (ms); 0 when empty. */
  lagMs: number;
  /** Age of the most recently delivered frame when the consumer took it (ms). */
  deliveryLagMs: number;
  /** ffmpeg runs started after the first (reconnects, watchdog kills, mode switches). */
  restarts: number;
  /** Failed attempts since the last frame (drives the backoff). */
  consecutiveFailures: number;
  nextRetryAt: number | null;
  gaps: Gap[];
  lastError: SourceErrorInfo | null;
  /** Non-fatal problems: decode errors in a damaged file, a file that ended early. */
  warnings: string[];
  startedAt: number;
  ffmpeg: { path: string; version: string };
}

export interface VideoInfo {
  codec: string;
  codecLongName: string | null;
  profile: string | null;
  width: number;
  height: number;
  /** Native frame rate (frames/s), null when the container does not say. */
  fps: number | null;
  pixFmt: string | null;
  /** Display rotation in degrees (from metadata), 0 when none. */
  rotation: number;
  /** Sample aspect ratio as a number (1 = square pixels). */
  sar: number;
}

export interface KeyframeInfo {
  /** Keyframes seen in the scanned window. */
  count: number;
  /** Seconds of stream scanned. */
  scannedS: number;
  /** Largest and mean distance between consecutive keyframes (s); null with fewer than 2. */
  maxIntervalS: number | null;
  meanIntervalS: number | null;
}

export interface ProbeInfo {
  container: string;
  containerLongName: string | null;
  /** Seconds, null for live streams. */
  durationS: number | null;
  startTimeS: number;
  bitRate: number | null;
  video: VideoInfo;
  audio: { codec: string; sampleRate: number | null; channels: number | null } | null;
  keyframes: KeyframeInfo | null;
}
