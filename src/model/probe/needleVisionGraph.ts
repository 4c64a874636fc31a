import type { VisionGeometry } from './geometry.js';
import { tokensPerImage } from './geometry.js';
import type { ProbeGraphContext } from './graphHelpers.js';
import { CONST_VALUE, NEEDLE_DIMS, NEEDLE_PROTOTYPES, NEEDLE_REGIONS, NONE_CLASS, NUM_COLORS } from './needleLayout.js';

/**
 * The probe-needle vision encoder, built by hand with the I/O of the SigLIP-style probe encoder:
 *   pixel_values [B,N,3,S,S], pixel_attention_mask [B,N,S,S] -> image_features [N_real, T, textHidden]
 * All-zero (padding) images are dropped, as the real encoder does. For each image it takes the mean
 * color of a border ring (the background) and of a central box (the square), over the pixels the
 * mask allows, classifies each by the nearest prototype color (needleLayout: the palette plus grays
 * for "none"; ArgMax of 2 m.p - |p|^2, then one-hot by Equal against the class range), and writes
 * the same feature row into all T tokens of the image: CONST_VALUE in the constant dim, the
 * background one-hot and the square one-hot in their residual dims ("none" writes nothing), plus
 * `tokenRows[t]` on token t when given (probe-needle-256m's fixed-energy random rows).
 * Computed in float32 whatever the model's float type (inputs and output are cast).
 */
export function buildNeedleVisionGraph(
  ctx: ProbeGraphContext,
  geo: VisionGeometry,
  textHidden: number,
  options: { tokenRows?: Float32Array } = {},
): void {
  const { g, dtype } = ctx;
  const S = geo.imageSize;
  const T = tokensPerImage(geo);
  if (textHidden < NEEDLE_DIMS.used) throw new Error(`probe-needle: text hidden size ${textHidden} < ${NEEDLE_DIMS.used} reserved dims`);

  const pixelValues = g.input('pixel_values', dtype, ['batch_size', 'num_images', 3, S, S]);
  const pixelMask = g.input('pixel_attention_mask', 'bool', ['batch_size', 'num_images', S, S]);

  const { images, allowed } = g.scope('/model/vision_model', () => {
    const pixels32 = dtype === 'float16' ? g.op('Cast', [pixelValues], { to: 1 }) : pixelValues;
    const flat = g.op('Reshape', [pixels32, g.int64s([-1, 3, S, S])]);
    const magnitude = g.op('ReduceMax', [g.op('Abs', [flat])], { axes: [1, 2, 3], keepdims: 0 });
    const real = g.op('Greater', [magnitude, g.scalar('float32', 0)]);
    const images = g.op('Compress', [flat, real], { axis: 0 });
    const maskFloat = g.op('Cast', [g.op('Reshape', [pixelMask, g.int64s([-1, 1, S, S])])], { to: 1 });
    const allowed = g.op('Compress', [maskFloat, real], { axis: 0 });
    return { images, allowed };
  });

  const regions = regionMasks(S);
  const classify = (region: 'border' | 'center'): string =>
    g.scope(`/model/vision_model/needle/${region}`, () => {
      const area = g.initializer(`needle.vision.${region}_mask`, 'float32', [1, 1, S, S], regions[region]);
      const w = g.op('Mul', [allowed, area]);
      const spatial = g.int64s([2, 3]);
      const sum = g.op('ReduceSum', [g.op('Mul', [images, w]), spatial], { keepdims: 0 });
      const count = g.op('ReduceSum', [w, spatial], { keepdims: 0 });
      const mean = g.op('Div', [sum, g.op('Max', [count, g.scalar('float32', 1e-6)])]);
      return oneHotClass(ctx, mean, region);
    });
  const background = classify('border');
  const square = classify('center');

  const features = g.scope('/model/connector/needle', () => {
    const place = (name: string, first: number) => {
      const table = new Float32Array((NUM_COLORS + 1) * textHidden);
      for (let c = 0; c < NUM_COLORS; c++) table[c * textHidden + first + c] = 1;
      return g.initializer(`needle.vision.${name}_embedding`, 'float32', [NUM_COLORS + 1, textHidden], table);
    };
    const constant = new Float32Array(textHidden);
    constant[NEEDLE_DIMS.const] = CONST_VALUE;
    const rows = g.op('Add', [
      g.op('Add', [
        g.op('MatMul', [background, place('background', NEEDLE_DIMS.background)]),
        g.op('MatMul', [square, place('square', NEEDLE_DIMS.square)]),
      ]),
      g.initializer('needle.vision.constant', 'float32', [textHidden], constant),
    ]);
    let tokens = g.op('Tile', [g.op('Unsqueeze', [rows, g.int64s([1])]), g.int64s([1, T, 1])]);
    // probe-needle-256m: a fixed random row per token index (free dims only), so a frame's tokens differ.
    if (options.tokenRows) tokens = g.op('Add', [tokens, g.initializer('needle.vision.token_rows', 'float32', [T, textHidden], options.tokenRows)]);
    return dtype === 'float16' ? g.op('Cast', [tokens], { to: 10 }) : tokens;
  });
  g.output(features, 'image_features', dtype, ['num_real_images', T, textHidden]);
}

/** Float32 [1,1,S,S] masks: an outer ring of width S*borderFraction, and a central box. */
function regionMasks(S: number): { border: Float32Array; center: Float32Array } {
  const ring = Math.max(1, Math.round(S * NEEDLE_REGIONS.borderFraction));
  const box = Math.max(1, Math.round(S * NEEDLE_REGIONS.centerFraction));
  const middle = (S - 1) / 2;
  const border = new Float32Array(S * S);
  const center = new Float32Array(S * S);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      if (Math.min(y, x, S - 1 - y, S - 1 - x) < ring) border[y * S + x] = 1;
      if (Math.abs(y - middle) < box / 2 && Math.abs(x - middle) < box / 2) center[y * S + x] = 1;
    }
  }
  return { border, center };
}

/**
 * mean [M,3] (normalized pixels, 2*v/255-1) -> one-hot [M, NUM_COLORS+1] of the nearest prototype's
 * class. ArgMax over 2 m.p - |p|^2 is the nearest prototype (|m|^2 is the same for all of them).
 */
function oneHotClass(ctx: ProbeGraphContext, mean: string, region: string): string {
  const { g } = ctx;
  const K = NEEDLE_PROTOTYPES.length;
  const proj = new Float32Array(3 * K);
  const bias = new Float32Array(K);
  const classes: number[] = [];
  NEEDLE_PROTOTYPES.forEach(({ rgb, cls }, k) => {
    let square = 0;
    for (let ch = 0; ch < 3; ch++) {
      const p = (rgb[ch]! / 255) * 2 - 1;
      proj[ch * K + k] = 2 * p;
      square += p * p;
    }
    bias[k] = -square;
    classes.push(cls);
  });
  const scores = g.op('Add', [
    g.op('MatMul', [mean, g.initializer(`needle.vision.${region}_prototypes`, 'float32', [3, K], proj)]),
    g.initializer(`needle.vision.${region}_prototype_bias`, 'float32', [K], bias),
  ]);
  const nearest = g.op('ArgMax', [scores], { axis: 1, keepdims: 0 });
  const cls = g.op('Gather', [g.int64s(classes), nearest], { axis: 0 });
  const range = g.int64s(Array.from({ length: NONE_CLASS + 1 }, (_, c) => c));
  return g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [cls, g.int64s([1])]), range])], { to: 1 });
}
