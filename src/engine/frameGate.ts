// Frame gating at ingest (docs/ingest.md, "Frame gating"): a sampled frame that barely differs from
// the last ENCODED frame is not encoded; the previous chunk's time span is extended over it instead
// (StreamMemory.extendLast). Comparing with the last encoded frame, not the last one seen, means a
// slow drift (light, a creeping shadow) still adds up to a change and gets encoded.
import { fnv1a32, lumaChange, lumaThumbnail } from '../../kernels/index.js';
import { VigilError } from '../../common/errors.js';
import { LIMITS, parseSetting, Settings } from '../../common/settings.js';

/** On: encode a frame when `threshold` of it changed, or `maxHoldSec` after the last encoded one. */
export interface GateSettings {
  threshold: number;
  maxHoldSec: number;
}

/** A stream's gate: 'off' encodes every sampled frame. */
export type GateSetting = 'off' | GateSettings;

/** What a caller may ask for: 'off', or either field (the other takes its default). */
export type GateRequest = 'off' | { threshold?: number; maxHoldSec?: number };

export const DEFAULT_GATE: GateSettings = { threshold: LIMITS.gateThreshold.default, maxHoldSec: LIMITS.gateMaxHoldSec.default };

/** Side of the luminance thumbnail: 64 x 64 blocks resolve an object of ~1.5% of the frame's width. */
export const GATE_THUMBNAIL_SIDE = 64;
/**
 * A block counts as changed when its mean luma moved by more than this (0..255). Block means of a
 * static scene move by 0-2 levels (codec and sensor noise averaged over the block); measured in
 * bench/frame-gate.ts.
 */
export const GATE_PIXEL_DELTA = 12;

/** A decoded frame: interleaved 8-bit RGB (ingest's Frame has this shape). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Why a frame is encoded (off, first: nothing to compare with, changed, max-hold: too long since
 * the last encoded frame) or not (unchanged); `changed` is the fraction of changed blocks when it
 * was measured.
 */
export interface GateVerdict {
  encode: boolean;
  reason: 'off' | 'first' | 'changed' | 'max-hold' | 'unchanged';
  changed: number | null;
}

/** A gate request (API, config file, CLI) checked against the settings' ranges, defaults filled in. */
export function gateSettings(request: GateRequest | undefined, fallback: GateSetting = DEFAULT_GATE): GateSetting {
  if (request === undefined) return fallback;
  if (request === 'off') return 'off';
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new VigilError('BAD_INPUT', `gate: expected 'off' or { threshold, maxHoldSec }, got ${JSON.stringify(request)}`);
  }
  const unknown = Object.keys(request).filter((k) => k !== 'threshold' && k !== 'maxHoldSec');
  if (unknown.length > 0) throw new VigilError('BAD_INPUT', `gate: unknown field ${unknown.map((k) => `'${k}'`).join(', ')} (threshold, maxHoldSec)`);
  const base = fallback === 'off' ? DEFAULT_GATE : fallback;
  return {
    threshold: parseSetting('gate.threshold', Settings.gateThreshold, request.threshold ?? base.threshold),
    maxHoldSec: parseSetting('gate.maxHoldSec', Settings.gateMaxHoldSec, request.maxHoldSec ?? base.maxHoldSec),
  };
}

/**
 * A stream's max-hold phase, in [0, maxHoldSec): where in the max-hold period its forced encodes
 * fall (FrameGate). Derived from the stream id alone (FNV-1a, then murmur3's finalizer so that ids
 * differing in one character land far apart), so a restart keeps it and cameras created together
 * spread their refreshes over the period instead of encoding on the same second.
 */
export function gatePhaseSec(streamId: string, maxHoldSec: number): number {
  let h = fnv1a32(streamId);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  return (h / 2 ** 32) * maxHoldSec;
}

/** A gate setting as text: "off" or "0.005 (encode at least every 60 s)". */
export function describeGate(gate: GateSetting): string {
  return gate === 'off' ? 'off' : `${gate.threshold} (encode at least every ${gate.maxHoldSec} s)`;
}

/**
 * One stream's gate. check() looks at a frame (a thumbnail into a candidate buffer, a comparison
 * with the reference); accept() makes the candidate the reference once the frame was encoded.
 * Nothing is kept across restarts: the first frame after one is always encoded.
 *
 * Max hold: an unchanged frame is encoded anyway maxHoldSec after the last encoded one, except the
 * first hold after a 'first' frame (a start, an outage, a size change), which is maxHoldSec - phase
 * (phase = gatePhaseSec(streamId), in [0, maxHoldSec)): streams started together (a service restart,
 * cameras created at once) would otherwise encode their refreshes on the same second for as long as
 * their scenes stay static; the phase spreads them over the period. No hold is longer than
 * maxHoldSec. Only that one hold is shortened, so summaries can tell a refresh from a change
 * (segmentEvents.ts): a refresh comes maxHoldSec after the previous encode, or maxHoldSec - phase after
 * a first one they know of (the stream's first chunk, the first after a recorded outage; the phase
 * from the stream id, as here). No id: phase 0.
 */
export class FrameGate {
  private reference: Float32Array | null = null;
  private referenceT = 0;
  /** Stream seconds after referenceT from which an unchanged frame is encoded anyway (max hold). */
  private holdSec = 0;
  private candidate: Float32Array = new Float32Array(GATE_THUMBNAIL_SIDE * GATE_THUMBNAIL_SIDE);
  private candidateT: number | null = null;
  private candidateSide = 0;
  private referenceSide = 0;
  private readonly sums = new Uint32Array(GATE_THUMBNAIL_SIDE * GATE_THUMBNAIL_SIDE);
  /** How much sooner than maxHoldSec the first max-hold after a 'first' frame comes (s, < maxHoldSec). */
  readonly phaseSec: number;

  constructor(
    readonly settings: GateSetting = DEFAULT_GATE,
    streamId?: string,
  ) {
    this.phaseSec = settings !== 'off' && streamId !== undefined ? gatePhaseSec(streamId, settings.maxHoldSec) : 0;
  }

  get enabled(): boolean {
    return this.settings !== 'off';
  }

  /** Whether the frame at stream time t should be encoded. Changes nothing the stream remembers. */
  check(frame: RgbImage, t: number): GateVerdict {
    const settings = this.settings;
    if (settings === 'off') return { encode: true, reason: 'off', changed: null };
    // Frames smaller than the thumbnail (tests, tiny sources) are compared at their own size.
    const side = Math.min(GATE_THUMBNAIL_SIDE, frame.width, frame.height);
    lumaThumbnail(frame.data, frame.width, frame.height, side, this.candidate, this.sums);
    this.candidateT = t;
    this.candidateSide = side;
    if (this.reference === null || this.referenceSide !== side) return { encode: true, reason: 'first', changed: null };
    const cells = side * side;
    const { changedFraction } = lumaChange(this.candidate.subarray(0, cells), this.reference.subarray(0, cells), GATE_PIXEL_DELTA);
    if (changedFraction >= settings.threshold) return { encode: true, reason: 'changed', changed: changedFraction };
    if (t - this.referenceT >= this.holdSec) return { encode: true, reason: 'max-hold', changed: changedFraction };
    return { encode: false, reason: 'unchanged', changed: changedFraction };
  }

  /** Drops the reference, so the next frame is encoded: after an outage no span may reach across it. */
  forget(): void {
    this.reference = null;
  }

  /**
   * The frame at stream time t was encoded: when it is the one check() last looked at, its thumbnail
   * becomes the reference; otherwise (encoded without a check) the reference is unknown, so the
   * next frame is encoded.
   */
  accept(t: number): void {
    if (this.settings === 'off') return;
    if (this.candidateT !== t) {
      this.forget();
      return;
    }
    // After the frame check() called 'first', the stream's phase shortens the hold.
    const first = this.reference === null || this.referenceSide !== this.candidateSide;
    const previous = this.reference ?? new Float32Array(this.candidate.length);
    this.reference = this.candidate;
    this.referenceSide = this.candidateSide;
    this.referenceT = t;
    this.candidate = previous;
    this.candidateT = null;
    this.holdSec = this.settings.maxHoldSec - (first ? this.phaseSec : 0);
  }
}
