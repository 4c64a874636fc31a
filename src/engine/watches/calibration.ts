/**
 * A watch's prefilter calibration: when is a frame's score different enough to be worth a model
 * check? The model's answer over the window can only change when the window does, so the question
 * is whether the new frame looks different, to this question, from what the last check saw.
 *
 * Per layer, the frame's score (dot of the question query with the frame's mean pre-RoPE key) is
 * compared with the score of the newest frame at the last check; the difference is measured in units
 * of the stream's own frame-to-frame noise for this watch and layer: a running mean of the absolute
 * difference of consecutive scores (the first WARMUP_FRAMES plainly averaged, then an exponential
 * average, alpha 1/32, of differences clipped at CLIP times the estimate, so an event's jumps in and
 * out barely move it). A frame whose largest per-layer change exceeds `threshold` asks for a check.
 * Both a rising score (something relevant appeared) and a falling one (it left) count.
 *
 * Measured (bench/watches.ts, docs/watches.md): a median of the last 16 differences instead was too
 * noisy an estimate (with 30 layers, the max over layers crossed 8 on ~1% of steady frames).
 */

/** Consecutive-score differences plainly averaged before the exponential average takes over. */
export const WARMUP_FRAMES = 8;
const ALPHA = 1 / 32;
/** A difference counts at most CLIP times the current estimate. */
const CLIP = 3;
/** Default change, in noise units, that asks for a check (measured: docs/watches.md). */
export const DEFAULT_THRESHOLD = 8;
/** Noise floor relative to the score's magnitude, so a perfectly steady scene does not make every rounding error a change. */
const RELATIVE_FLOOR = 1e-3;
const ABSOLUTE_FLOOR = 1e-6;

export interface FrameVerdict {
  /** Sum over layers of the frame's scores. */
  score: number;
  /** Largest per-layer |score - score at last check| / noise; Infinity before the first check. */
  change: number;
  /** change > threshold. */
  check: boolean;
}

export class WatchCalibration {
  private readonly previous: Float64Array;
  private readonly latest: Float64Array;
  private readonly checked: Float64Array;
  private hasPrevious = false;
  private hasChecked = false;
  /** Per layer: the running mean absolute difference of consecutive scores. */
  private readonly noise: Float64Array;
  private diffCount = 0;

  constructor(
    readonly numLayers: number,
    readonly threshold = DEFAULT_THRESHOLD,
  ) {
    this.previous = new Float64Array(numLayers);
    this.latest = new Float64Array(numLayers);
    this.checked = new Float64Array(numLayers);
    this.noise = new Float64Array(numLayers);
  }

  /** Scores one frame: scores[offset + layer], numLayers values. Updates the noise estimate. */
  observe(scores: Float64Array, offset = 0): FrameVerdict {
    const L = this.numLayers;
    let score = 0;
    let change = this.hasChecked ? 0 : Number.POSITIVE_INFINITY;
    // Judged against the noise of the frames before it; then its own difference joins the estimate.
    for (let l = 0; l < L; l++) {
      const s = scores[offset + l]!;
      score += s;
      if (this.hasChecked) {
        const c = this.checked[l]!;
        const noise = Math.max(this.noise[l]!, RELATIVE_FLOOR * Math.abs(c), ABSOLUTE_FLOOR);
        const z = Math.abs(s - c) / noise;
        if (z > change) change = z;
      }
    }
    if (this.hasPrevious) {
      this.diffCount++;
      for (let l = 0; l < L; l++) {
        const d = Math.abs(scores[offset + l]! - this.previous[l]!);
        const n = this.noise[l]!;
        this.noise[l] = this.diffCount <= WARMUP_FRAMES ? n + (d - n) / this.diffCount : n + ALPHA * (Math.min(d, CLIP * n) - n);
      }
    }
    for (let l = 0; l < L; l++) {
      this.previous[l] = scores[offset + l]!;
      this.latest[l] = scores[offset + l]!;
    }
    this.hasPrevious = true;
    return { score, change, check: change > this.threshold };
  }

  /** A check is starting: what it sees is the newest observed frame; later changes are measured from it. */
  markChecked(): void {
    if (!this.hasPrevious) return;
    this.checked.set(this.latest);
    this.hasChecked = true;
  }
}
