// Rotary position embedding, Llama/HF "rotate_half" (non-interleaved) layout:
// dim i pairs with dim i + half over the first rotaryDim dims of each head;
// dims >= rotaryDim pass through. Data layout is [heads, tokens, headDim]
// (one layer's KV for batch 1, ONNX [1, KV, T, D]).
import { nativeKernels } from './native.js';

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
 * Applies the rotation given by (cos, sin) at cos[offset + i], sign * sin[offset + i] to token t of
 * every head. Reads both halves before writing, so out === src is safe. Tail dims are copied only
 * when out is a different buffer.
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
  offset: number,
  sign: number,
): void {
  const rot = 2 * half;
  const headStride = tokens * headDim;
  for (let h = 0; h < heads; h++) {
    const base = h * headStride + t * headDim;
    for (let i = 0; i < half; i++) {
      const x1 = src[base + i]!;
      const x2 = src[base + i + half]!;
      const c = cos[offset + i]!;
      const s = sign * sin[offset + i]!;
      out[base + i] = x1 * c - x2 * s;
      out[base + i + half] = x2 * c + x1 * s;
    }
    if (out !== src) for (let d = rot; d < headDim; d++) out[base + d] = src[base + d]!;
  }
}

/**
 * cos/sin of every integer position below TABLE_LIMIT, per inverse-frequency array, computed once:
 * the engine rotates the same compact positions (0..N) for every frame and question, and the trig
 * dominated the kernel (7% of memcpy speed before). The values are the ones computed on the fly
 * (cos/sin of the same float32 angle), so results are bit-identical either way.
 */
const TABLE_LIMIT = 1 << 16;
interface TrigTable {
  rows: number;
  cos: Float64Array;
  sin: Float64Array;
}
const tables = new WeakMap<Float32Array, TrigTable>();

function trigTable(invFreq: Float32Array, needRows: number): TrigTable {
  const half = invFreq.length;
  let table = tables.get(invFreq);
  if (table && table.rows >= needRows) return table;
  let rows = Math.max(1024, table?.rows ?? 0);
  while (rows < needRows) rows *= 2;
  rows = Math.min(rows, TABLE_LIMIT);
  const cos = new Float64Array(rows * half);
  const sin = new Float64Array(rows * half);
  const from = table?.rows ?? 0;
  if (table) {
    cos.set(table.cos);
    sin.set(table.sin);
  }
  for (let p = from; p < rows; p++) {
    const pos = Math.fround(p);
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]!);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  table = { rows, cos, sin };
  tables.set(invFreq, table);
  return table;
}

function maxTablePosition(positions: ArrayLike<number>, tokens: number): number {
  let max = -1;
  for (let t = 0; t < tokens; t++) {
    const p = positions[t]!;
    if (Number.isInteger(p) && p >= 0 && p < TABLE_LIMIT && p > max) max = p;
  }
  return max;
}

/** Offsets of each token's cos/sin row in the table (-1: position 0, copied), or undefined when a position is not in it. */
function tableRows(positions: ArrayLike<number>, tokens: number, half: number, tableRows: number): Int32Array | undefined {
  const rows = new Int32Array(tokens);
  for (let t = 0; t < tokens; t++) {
    const p = positions[t]!;
    if (!Number.isInteger(p) || p < 0 || p >= tableRows) return undefined;
    rows[t] = p === 0 ? -1 : p * half;
  }
  return rows;
}

/**
 * The common case of both rotations: every position in the trig table. Head by head, token by
 * token, so reads and writes run through memory in order (25% faster than token by token across
 * the heads). Same arithmetic as rotateToken, so the results are bit-identical. `dst` may be `src`
 * (in place) when the layouts coincide.
 */
function rotateTableRows(
  src: Float32Array,
  srcTokens: number,
  dst: Float32Array,
  dstTotal: number,
  dstOffset: number,
  heads: number,
  tokens: number,
  headDim: number,
  half: number,
  cos: Float64Array,
  sin: Float64Array,
  rows: Int32Array,
  sign: number,
): void {
  const native = nativeKernels();
  if (native) {
    native.rotateRows(src, srcTokens, dst, dstTotal, dstOffset, heads, tokens, headDim, half, cos, sin, rows, sign);
    return;
  }
  const rot = 2 * half;
  const inPlace = src === dst && srcTokens === dstTotal && dstOffset === 0;
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < tokens; t++) {
      const from = (h * srcTokens + t) * headDim;
      const to = (h * dstTotal + dstOffset + t) * headDim;
      const row = rows[t]!;
      if (row < 0) {
        // Every angle is 0: copy, keeping -0, Inf and NaN bit-exact.
        if (!inPlace) for (let d = 0; d < headDim; d++) dst[to + d] = src[from + d]!;
        continue;
      }
      for (let i = 0; i < half; i++) {
        const x1 = src[from + i]!;
        const x2 = src[from + i + half]!;
        const c = cos[row + i]!;
        const s = sign * sin[row + i]!;
        dst[to + i] = x1 * c - x2 * s;
        dst[to + i + half] = x2 * c + x1 * s;
      }
      if (!inPlace) for (let d = rot; d < headDim; d++) dst[to + d] = src[from + d]!;
    }
  }
}

/** Copies token t of every head unchanged (used when all angles are zero, keeping bits exact). */
function copyToken(src: Float32Array, out: Float32Array, heads: number, tokens: number, headDim: number, t: number): void {
  if (out === src) return;
  const headStride = tokens * headDim;
  for (let h = 0; h < heads; h++) {
    const base = h * headStride + t * headDim;
    for (let d = 0; d < headDim; d++) out[base + d] = src[base + d]!;
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
  const maxPosition = maxTablePosition(positions, tokens);
  const table = maxPosition >= 0 ? trigTable(invFreq, maxPosition + 1) : undefined;
  const rows = table ? tableRows(positions, tokens, half, table.rows) : undefined;
  if (table && rows) {
    rotateTableRows(src, tokens, dst, tokens, 0, heads, tokens, headDim, half, table.cos, table.sin, rows, direction);
    return dst;
  }
  for (let t = 0; t < tokens; t++) {
    const p = positions[t]!;
    if (p === 0) {
      // Every angle is 0: copy, keeping -0, Inf and NaN bit-exact.
      copyToken(src, dst, heads, tokens, headDim, t);
      continue;
    }
    if (table && Number.isInteger(p) && p > 0 && p < table.rows) {
      rotateToken(src, dst, heads, tokens, headDim, t, half, table.cos, table.sin, p * half, direction);
      continue;
    }
    const pos = Math.fround(p);
    let allZero = true;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]!);
      if (angle !== 0) allZero = false;
      cos[i] = Math.cos(angle);
      sin[i] = Math.sin(angle);
    }
    if (allZero) copyToken(src, dst, heads, tokens, headDim, t);
    else rotateToken(src, dst, heads, tokens, headDim, t, half, cos, sin, 0, direction);
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
    const from = Math.fround(fromPositions[t]!);
    const to = Math.fround(toPositions[t]!);
    let allZero = true;
    for (let i = 0; i < half; i++) {
      const delta = Math.fround(to * invFreq[i]!) - Math.fround(from * invFreq[i]!);
      if (delta !== 0) allZero = false;
      cos[i] = Math.cos(delta);
      sin[i] = Math.sin(delta);
    }
    if (allZero) copyToken(src, dst, heads, tokens, headDim, t);
    else rotateToken(src, dst, heads, tokens, headDim, t, half, cos, sin, 0, 1);
  }
  return dst;
}

/**
 * Rotates a [heads, tokens, headDim] block of pre-RoPE keys to the consecutive positions
 * firstPosition, firstPosition + 1, ... and writes it into tokens [offset, offset + tokens) of a
 * [heads, total, headDim] array: context assembly's rotate-and-place in one pass, with no
 * intermediate block and no positions array. Bit-identical to rotateHeads then writeTokens.
 */
export function rotateBlockInto(
  src: Float32Array,
  heads: number,
  tokens: number,
  headDim: number,
  firstPosition: number,
  invFreq: Float32Array,
  dst: Float32Array,
  total: number,
  offset: number,
): void {
  const half = invFreq.length;
  if (!Number.isInteger(firstPosition) || firstPosition < 0) throw new RangeError(`rotateBlockInto: firstPosition must be an integer >= 0, got ${firstPosition}`);
  if (src.length < heads * tokens * headDim) throw new RangeError(`rotateBlockInto: src length ${src.length} < ${heads}*${tokens}*${headDim}`);
  if (offset < 0 || offset + tokens > total || dst.length < heads * total * headDim) {
    throw new RangeError(`rotateBlockInto: tokens [${offset}, ${offset + tokens}) do not fit a [${heads}, ${total}, ${headDim}] array of length ${dst.length}`);
  }
  if (2 * half > headDim) throw new RangeError(`rotateBlockInto: rotaryDim ${2 * half} > headDim ${headDim}`);
  const lastPosition = firstPosition + tokens - 1;
  const table = trigTable(invFreq, Math.min(lastPosition, TABLE_LIMIT - 1) + 1);
  if (lastPosition < table.rows) {
    const rows = new Int32Array(tokens);
    for (let t = 0; t < tokens; t++) rows[t] = firstPosition + t === 0 ? -1 : (firstPosition + t) * half;
    rotateTableRows(src, tokens, dst, total, offset, heads, tokens, headDim, half, table.cos, table.sin, rows, 1);
    return;
  }
  const rot = 2 * half;
  const spare = new Float64Array(2 * half);
  for (let t = 0; t < tokens; t++) {
    const p = firstPosition + t;
    let cos = table.cos;
    let sin = table.sin;
    let row = p * half;
    if (p >= table.rows) {
      // Past the table: the same float32 angles, computed here (as rotateHeads does).
      const pos = Math.fround(p);
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(pos * invFreq[i]!);
        spare[i] = Math.cos(angle);
        spare[half + i] = Math.sin(angle);
      }
      cos = spare.subarray(0, half);
      sin = spare.subarray(half);
      row = 0;
    }
    for (let h = 0; h < heads; h++) {
      const from = (h * tokens + t) * headDim;
      const to = (h * total + offset + t) * headDim;
      if (p === 0) {
        // Every angle is 0: copy, keeping -0, Inf and NaN bit-exact (as rotateHeads does).
        for (let d = 0; d < headDim; d++) dst[to + d] = src[from + d]!;
        continue;
      }
      for (let i = 0; i < half; i++) {
        const x1 = src[from + i]!;
        const x2 = src[from + i + half]!;
        const c = cos[row + i]!;
        const s = sin[row + i]!;
        dst[to + i] = x1 * c - x2 * s;
        dst[to + i + half] = x2 * c + x1 * s;
      }
      for (let d = rot; d < headDim; d++) dst[to + d] = src[from + d]!;
    }
  }
}
