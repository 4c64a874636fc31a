/**
 * A watch's prefilter calibration: when is a frame's score different enough to be worth a model
 * check? The model's answer over the window can only change when the window does, so the question
 * is whether the new frame looks different, to this question, from what the last check saw.
 *
 * Per layer, the frame's score (dot of the question query with the frame's mean pre-RoPE key) is
 * compared with the score of the newest frame at the last check; the difference is measured in units
 * of the stream's own frame-to-frame noise for this watch and layer: the median absolute difference
 * of consecutive scores over the last NOISE_FRAMES frames (robust: an event's jumps in and out do not
 * inflate it). A frame whose largest per-layer change exceeds `threshold` asks for a check. Both a
 * rising score (something relevant appeared) and a falling one (it left) count.
 */

/** Consecutive-score differences kept per layer for the noise estimate. */
export const NOISE_FRAMES = 16;
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
  /** Ring of |consecutive differences|, [NOISE_FRAMES, numLayers]. */
  private readonly diffs: Float64Array;
  private diffCount = 0;
  private readonly scratch = new Float64Array(NOISE_FRAMES);

  constructor(
    readonly numLayers: number,
    readonly threshold = DEFAULT_THRESHOLD,
  ) {
    this.previous = new Float64Array(numLayers);
    this.latest = new Float64Array(numLayers);
    this.checked = new Float64Array(numLayers);
    this.diffs = new Float64Array(NOISE_FRAMES * numLayers);
  }

  /** Scores one frame: scores[offset + layer], numLayers values. Updates the noise estimate. */
  observe(scores: Float64Array, offset = 0): FrameVerdict {
    const L = this.numLayers;
    let score = 0;
    if (this.hasPrevious) {
      const row = (this.diffCount % NOISE_FRAMES) * L;
      for (let l = 0; l < L; l++) this.diffs[row + l] = Math.abs(scores[offset + l]! - this.previous[l]!);
      this.diffCount++;
    }
    let change = this.hasChecked ? 0 : Number.POSITIVE_INFINITY;
    for (let l = 0; l < L; l++) {
      const s = scores[offset + l]!;
      score += s;
      this.previous[l] = s;
      this.latest[l] = s;
      if (this.hasChecked) {
        const c = this.checked[l]!;
        const noise = Math.max(this.noise(l), RELATIVE_FLOOR * Math.abs(c), ABSOLUTE_FLOOR);
        const z = Math.abs(s - c) / noise;
        if (z > change) change = z;
      }
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

  /** Median of the kept |differences| of one layer (0 before two frames). */
  private noise(layer: number): number {
    const n = Math.min(this.diffCount, NOISE_FRAMES);
    if (n === 0) return 0;
    const values = this.scratch.subarray(0, n);
    for (let i = 0; i < n; i++) values[i] = this.diffs[i * this.numLayers + layer]!;
    values.sort();
    return n % 2 === 1 ? values[(n - 1) >> 1]! : (values[n / 2 - 1]! + values[n / 2]!) / 2;
  }
}
