/**
 * Frozen-image detection from the decoded frames, without a model: each frame shrunk to the frame
 * gate's 64x64 luminance image (kernels/frameDiff.ts, ~1 ms for a 512x512 frame) and compared with
 * the first frame of the current run. A frame whose mean absolute difference from it is at most
 * FROZEN_MAX_MEAN_DELTA continues the run; any other frame starts a new one. A camera that repeats
 * its last picture (a stuck encoder, a gateway re-sending the last frame) decodes to identical
 * frames: 0. A static scene is not frozen: sensor and codec noise move 64x64 block means by more
 * (one level of per-pixel noise gives ~0.15 on 8x8-pixel blocks), and keyframes re-encode it.
 */
import { lumaChange, lumaThumbnail } from '../../../kernels/index.js';
import { GATE_PIXEL_DELTA, GATE_THUMBNAIL_SIDE, type RgbImage } from '../frameGate.js';

/** Largest mean absolute difference (luma levels 0..255, over the 64x64 block means) that still counts as the same image. */
export const FROZEN_MAX_MEAN_DELTA = 0.1;

export class FrozenDetector {
  private reference: Float32Array | null = null;
  private referenceSide = 0;
  private candidate: Float32Array = new Float32Array(GATE_THUMBNAIL_SIDE * GATE_THUMBNAIL_SIDE);
  private readonly sums = new Uint32Array(GATE_THUMBNAIL_SIDE * GATE_THUMBNAIL_SIDE);
  /** Wall time (ms) of the run's first frame; null before any frame. */
  runStart: number | null = null;
  /** Wall time of the newest frame that differed from the one before it (null: none since this detector started). */
  lastChangeWall: number | null = null;
  /** Wall time of the newest frame that matched the run's first. */
  private lastSame: number | null = null;
  /** The last comparison's mean absolute difference (diagnostics, tests). */
  lastDelta: number | null = null;
  framesSeen = 0;

  constructor(readonly maxMeanDelta = FROZEN_MAX_MEAN_DELTA) {}

  /** Looks at one decoded frame received at `wallTime` (ms). */
  observe(frame: RgbImage, wallTime: number): void {
    this.framesSeen++;
    const side = Math.min(GATE_THUMBNAIL_SIDE, frame.width, frame.height);
    lumaThumbnail(frame.data, frame.width, frame.height, side, this.candidate, this.sums);
    const cells = side * side;
    if (this.reference !== null && this.referenceSide === side) {
      this.lastDelta = lumaChange(this.candidate.subarray(0, cells), this.reference.subarray(0, cells), GATE_PIXEL_DELTA).meanAbsDiff;
      if (this.lastDelta <= this.maxMeanDelta) {
        this.lastSame = wallTime;
        return;
      }
      this.lastChangeWall = wallTime;
    } else {
      this.lastDelta = null;
    }
    // A new run starts at this frame: it becomes the reference (buffers swapped, no allocation).
    const previous = this.reference ?? new Float32Array(this.candidate.length);
    this.reference = this.candidate;
    this.referenceSide = side;
    this.candidate = previous;
    this.runStart = wallTime;
    this.lastSame = wallTime;
  }

  /** How long (ms) the frames seen have shown the same image: from the run's first frame to its newest. */
  get frozenMs(): number {
    return this.runStart === null || this.lastSame === null ? 0 : this.lastSame - this.runStart;
  }
}
