/**
 * Where the needles of one V-NIAH clip go: one needle per depth, each with its own background and
 * square color, and one palette color never drawn, asked about as the 'unknown' control.
 */
import type { Needle } from '../../ingest/probeClip.js';
import { VigilError } from '../../common/errors.js';
import { NEEDLE_COLORS, type NeedleColor } from '../model/probe/needleLayout.js';

export interface PlannedNeedle extends Needle {
  depthPct: number;
  /** End of the scene (s, exclusive: the frame at `end` is haystack again). */
  end: number;
  background: NeedleColor;
  square: NeedleColor;
}

export interface ClipPlan {
  lengthMin: number;
  durationS: number;
  needles: PlannedNeedle[];
  /** A palette color that appears nowhere in the clip: its question must answer 'unknown'. */
  control: NeedleColor;
}

/** The control color: the last palette color, kept out of every clip. */
export const CONTROL_COLOR: NeedleColor = NEEDLE_COLORS[NEEDLE_COLORS.length - 1]!;
const DRAWN = NEEDLE_COLORS.filter((c) => c !== CONTROL_COLOR);
/** Squares are the backgrounds shifted by 3 in a cycle of 7 (3 is coprime with 7): distinct, never their own background. */
const SQUARE_SHIFT = 3;

/** The whole-second length of a clip of `lengthMin` minutes. */
export function clipSeconds(lengthMin: number): number {
  return Math.round(lengthMin * 60);
}

/**
 * Needle i (depth d) starts at leadIn + round(d/100 x (L - D - leadIn)) s and lasts D s, so depth 0
 * is the first thing after the lead-in and depth 100 ends the clip. The lead-in covers the sink
 * frames, which stay in every context: a needle there would be answered without any retrieval.
 * Starts are whole seconds: at 1 fps the needle is exactly D sampled frames.
 */
export function planClip(lengthMin: number, depthsPct: readonly number[], needleSeconds: number, leadInS = 0): ClipPlan {
  const durationS = clipSeconds(lengthMin);
  if (needleSeconds + leadInS > durationS) throw new VigilError('BAD_INPUT', `a ${needleSeconds}-s needle after a ${leadInS}-s lead-in does not fit in a ${lengthMin}-minute clip`);
  if (depthsPct.length > DRAWN.length) {
    throw new VigilError('BAD_INPUT', `at most ${DRAWN.length} depths: each needle needs its own background color and one palette color stays unused for the control question`);
  }
  if (needleSeconds > durationS) throw new VigilError('BAD_INPUT', `a ${needleSeconds}-s needle does not fit in a ${lengthMin}-minute clip`);
  const needles = [...depthsPct]
    .sort((a, b) => a - b)
    .map((depthPct, i): PlannedNeedle => {
      const start = leadInS + Math.round((depthPct / 100) * (durationS - needleSeconds - leadInS));
      return { depthPct, start, duration: needleSeconds, end: start + needleSeconds, background: DRAWN[i]!, square: DRAWN[(i + SQUARE_SHIFT) % DRAWN.length]! };
    });
  for (let i = 1; i < needles.length; i++) {
    const [a, b] = [needles[i - 1]!, needles[i]!];
    if (b.start < a.end) {
      throw new VigilError(
        'BAD_INPUT',
        `the ${lengthMin}-minute clip is too short for needles at depths ${a.depthPct}% and ${b.depthPct}% (${needleSeconds} s each): they would overlap at ${b.start} s`,
      );
    }
  }
  return { lengthMin, durationS, needles, control: CONTROL_COLOR };
}
