/** How far a quantized graph's output is from the float one's (same length, same order). */
export interface OutputDifference {
  maxAbs: number;
  /** |a - b| / |a| (L2). */
  relativeL2: number;
  /** cos(a, b) over the whole tensor. */
  cosine: number;
}

export function outputDifference(reference: Float32Array, other: Float32Array): OutputDifference {
  if (reference.length !== other.length) throw new RangeError(`outputDifference: ${reference.length} vs ${other.length} values`);
  let maxAbs = 0;
  let diff2 = 0;
  let ref2 = 0;
  let other2 = 0;
  let dot = 0;
  for (let i = 0; i < reference.length; i++) {
    const a = reference[i]!;
    const b = other[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(a - b));
    diff2 += (a - b) * (a - b);
    ref2 += a * a;
    other2 += b * b;
    dot += a * b;
  }
  return { maxAbs, relativeL2: Math.sqrt(diff2 / ref2), cosine: dot / Math.sqrt(ref2 * other2) };
}

/** Index of the largest value in row `row` of a [rows, width] array. */
export function argmaxRow(values: Float32Array, width: number, row: number): number {
  let best = 0;
  for (let i = 1; i < width; i++) if (values[row * width + i]! > values[row * width + best]!) best = i;
  return best;
}
