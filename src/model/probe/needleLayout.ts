/**
 * The probe-needle model's conventions, shared by its vision graph, its decoder weights, the tests
 * and anything that draws needle frames: the palette, the classes the vision encoder tells apart,
 * and which residual dimension means what (docs/needle-model.md explains the construction).
 */
import { PROBE_COLORS } from './probeVocabulary.js';

export type NeedleColor = (typeof PROBE_COLORS)[number];

/** The palette, in class order (class c is PROBE_COLORS[c]); class NONE_CLASS is "no palette color". */
export const NEEDLE_COLORS: readonly NeedleColor[] = PROBE_COLORS;
export const NUM_COLORS = NEEDLE_COLORS.length;
export const NONE_CLASS = NUM_COLORS;

type Rgb = readonly [number, number, number];

/**
 * The RGB each palette color is drawn with: the CSS / ffmpeg named colors, so probe clips made with
 * lavfi `color=c=<name>` or `drawbox=color=<name>` match.
 */
export const NEEDLE_RGB: Readonly<Record<NeedleColor, Rgb>> = {
  red: [255, 0, 0],
  green: [0, 128, 0],
  blue: [0, 0, 255],
  yellow: [255, 255, 0],
  cyan: [0, 255, 255],
  magenta: [255, 0, 255],
  white: [255, 255, 255],
  orange: [255, 165, 0],
};

/**
 * Nearest-prototype classes of the vision encoder. A palette color may have extra prototypes
 * (pure green 00ff00, as many tools draw "green", besides CSS green 008000); the "none" class has
 * grays from black to light gray, so a noisy gray haystack frame (and black) is no color.
 */
export const NEEDLE_PROTOTYPES: ReadonlyArray<{ rgb: Rgb; cls: number }> = [
  ...NEEDLE_COLORS.map((color, cls) => ({ rgb: NEEDLE_RGB[color], cls })),
  { rgb: [0, 255, 0], cls: NEEDLE_COLORS.indexOf('green') },
  { rgb: [0, 0, 0], cls: NONE_CLASS },
  { rgb: [64, 64, 64], cls: NONE_CLASS },
  { rgb: [128, 128, 128], cls: NONE_CLASS },
  { rgb: [192, 192, 192], cls: NONE_CLASS },
];

/**
 * Where the vision encoder looks, as fractions of the (square, preprocessed) frame side: the
 * background is the mean over a border ring, the square's color the mean over a central box. At 64 px
 * that is an 8-px ring and the central 6x6 pixels; a square of side >= 1/4 of a 16:9 frame's height
 * (stretched to 64x64 it is >= 9 px wide) covers the central box.
 */
export const NEEDLE_REGIONS = { borderFraction: 1 / 8, centerFraction: 6 / 64 } as const;

/**
 * Residual stream layout (hidden size >= NEEDLE_DIMS.used). Every token has CONST = CONST_VALUE, so
 * RMSNorm divides every token by nearly the same rms (sqrt(64 + k) / 8 for k unit features: 1.00 to
 * 1.03), and the unit features come out of each norm at ~1.
 */
export const CONST_VALUE = 8;
export const NEEDLE_DIMS = {
  /** Constant CONST_VALUE on every token. */
  const: 0,
  /** Image tokens: one-hot background class (8 dims; "none" writes nothing). */
  background: 1,
  /** Image tokens: one-hot center-square class (8 dims). */
  square: 9,
  /** Color-word tokens (' red', 'red', ...): one-hot of the color they name (8 dims). */
  asked: 17,
  /** Flag: the token is a color word (layer 1's key). */
  colorWord: 25,
  /** Flag: the attention sink (`<|im_start|>`, the first token of every context). */
  sink: 26,
  /** Flag: the token is an answer word (color names and ' unknown'); the lm_head maps it to EOS. */
  answered: 27,
  /** Slot A, written by layer 1: the asked color copied from the question's color word (8 dims). */
  slotAsked: 28,
  /** Slot B, written by layer 2: the retrieved square color (8 dims) then "unknown" (1 dim). */
  slotAnswer: 36,
  /** First unused dim. */
  used: 45,
} as const;

/** Slot B index of the "unknown" answer. */
export const UNKNOWN_SLOT = NUM_COLORS;
