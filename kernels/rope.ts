// Rotary position embedding, Llama/HF "rotate_half" (non-interleaved) layout:
// dim i pairs with dim i + half over the first rotaryDim dims of each head;
// dims >= rotaryDim pass through. Data layout is [heads, tokens, headDim]
// (one layer's KV for batch 1, ONNX [1, KV, T, D]).

/**
 * Inverse frequencies, length rotaryDim / 2. Also written as the inv_freq
 * initializer of our generated decoders, so kernel and graph share bits.
 */
export function ropeInvFreq(rotaryDim: number, theta: number): Float32Array {
  if (!Number.isInteger(rotaryDim) || rotaryDim <= 0 || rotaryDim % 2 !== 0) {
    throw new RangeError(`ropeInvFreq: rotaryDim must be a positive even integer, got ${rotaryDim}`);
  }
  if (!(theta > 0)) throw new RangeError(`ropeInvFreq: theta must be > 0, got ${theta}`);
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.pow(theta, (2 * i) / rotaryDim));
  return inv;
}

function checkShapes(
  fn: string,
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  half: number,
  out: Float32Array,
): void {
  const n = heads * tokens * headDim;
  if (src.length < n) throw new RangeError(`${fn}: src length ${src.length} < ${heads}*${tokens}*${headDim}`);
  if (out.length < n) throw new RangeError(`${fn}: out length ${out.length} < ${n}`);
  if (2 * half > headDim) throw new RangeError(`${fn}: rotaryDim ${2 * half} > headDim ${headDim}`);
}

/**
 * Applies the rotation given by (cos, sin) to token t of every head. Reads
 * both halves before writing, so out === src is safe. Tail dims are copied
 * only when out is a different buffer.
 */
function rotateToken(
  src: Float32Array,
  out: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  t: number,
  half: number,
  cos: Float64Array,
  sin: Float64Array,
): void {
  const rot = 2 * half;
  const headStride = tokens * headDim;
  for (let h = 0; h < heads; h++) {
    const base = h * headStride + t * headDim;
    for (let i = 0; i < half; i++) {
      const x1 = src[base + i];
      const x2 = src[base + i + half];
      const c = cos[i];
      const s = sin[i];
      out[base + i] = x1 * c - x2 * s;
      out[base + i + half] = x2 * c + x1 * s;
    }
    if (out !== src) for (let d = rot; d < headDim; d++) out[base + d] = src[base + d];
  }
}

/** Copies token t of every head unchanged (used when all angles are zero, keeping bits exact). */
function copyToken(src: Float32Array, out: Float32Array, heads: number, tokens: number, headDim: number, t: number): void {
  if (out === src) return;
  const headStride = tokens * headDim;
  for (let h = 0; h < heads; h++) {
    const base = h * headStride + t * headDim;
    for (let d = 0; d < headDim; d++) out[base + d] = src[base + d];
  }
}

/**
 * Rotates (direction 1) or unrotates (direction -1) every head's tokens.
 * Angles are float32 (fround(fround(pos) * invFreq[i])) like the decoder;
 * cos/sin are computed once per (token, i) and shared across heads.
 * `out` may be `src` (in place).
 */
export function rotateHeads(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
  direction: 1 | -1,
  out?: Float32Array,
): Float32Array {
  const half = invFreq.length;
  const dst = out ?? new Float32Array(heads * tokens * headDim);
  checkShapes('rotateHeads', src, heads, tokens, headDim, half, dst);
  if (positions.length < tokens) throw new RangeError(`rotateHeads: ${positions.length} positions for ${tokens} tokens`);
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let t = 0; t < tokens; t++) {
    const pos = Math.fround(positions[t]);
    let allZero = true;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      if (angle !== 0) allZero = false;
      cos[i] = Math.cos(angle);
      sin[i] = direction * Math.sin(angle);
    }
    if (allZero) copyToken(src, dst, heads, tokens, headDim, t);
    else rotateToken(src, dst, heads, tokens, headDim, t, half, cos, sin);
  }
  return dst;
}

/**
 * Moves keys rotated at fromPositions to toPositions. Fused into one pass:
 * unrotating by angle a then rotating by b is a rotation by (b - a), where a
 * and b are the same float32 angles rotateHeads would use. The difference is
 * taken in float64, so the result is rounded to float32 once instead of twice.
 * `out` may be `src` (in place). Tokens whose angles don't change are copied bit-exactly.
 */
export function rerotateHeads(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  fromPositions: ArrayLike<number>,
  toPositions: ArrayLike<number>,
  invFreq: Float32Array,
  out?: Float32Array,
): Float32Array {
  const half = invFreq.length;
  const dst = out ?? new Float32Array(heads * tokens * headDim);
  checkShapes('rerotateHeads', src, heads, tokens, headDim, half, dst);
  if (fromPositions.length < tokens || toPositions.length < tokens) {
    throw new RangeError(`rerotateHeads: need ${tokens} from/to positions`);
  }
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let t = 0; t < tokens; t++) {
    const from = Math.fround(fromPositions[t]);
    const to = Math.fround(toPositions[t]);
    let allZero = true;
    for (let i = 0; i < half; i++) {
      const delta = Math.fround(to * invFreq[i]) - Math.fround(from * invFreq[i]);
      if (delta !== 0) allZero = false;
      cos[i] = Math.cos(delta);
      sin[i] = Math.sin(delta);
    }
    if (allZero) copyToken(src, dst, heads, tokens, headDim, t);
    else rotateToken(src, dst, heads, tokens, headDim, t, half, cos, sin);
  }
  return dst;
}
