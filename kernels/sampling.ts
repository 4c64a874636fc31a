// Token sampling: softmax, nucleus (top-p) sampling, and a seeded PRNG.

/**
 * Softmax in place, stable (shifts by the max). NaN entries get probability 0.
 * If every entry is -Infinity the result is uniform; +Infinity entries share
 * all the mass equally.
 */
export function softmaxInPlace(values: Float32Array | Float64Array): void {
  const n = values.length;
  if (n === 0) return;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (values[i]! > max) max = values[i]!;
  if (max === -Infinity || max === Infinity) {
    // No finite shift exists: the mass goes uniformly to the entries equal to max.
    let count = 0;
    for (let i = 0; i < n; i++) if (values[i] === max) count++;
    for (let i = 0; i < n; i++) values[i] = values[i] === max ? 1 / count : 0;
    return;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    const e = v === v ? Math.exp(v - max) : 0;
    values[i] = e;
    sum += values[i]!; // the stored (possibly float32-rounded) value, so the result sums to ~1
  }
  for (let i = 0; i < n; i++) values[i]! /= sum;
}

/**
 * Nucleus sampling. Probabilities are softmax(logits / temperature) in
 * float64; the kept set is the smallest prefix of tokens ordered by
 * probability (descending, ties by lower index) whose cumulative probability
 * reaches topP (at least one token). One draw of random() in [0, 1) picks
 * from the renormalized kept set, so the result is a pure function of the
 * logits and the random sequence.
 *
 * To avoid sorting the vocabulary, tokens with probability >= tau are
 * gathered first; that set is itself a prefix of the sorted order, so once
 * its mass reaches topP only it needs sorting. tau starts at max * 1e-4 and
 * drops by 1e-4 per retry (then 0), so a peaked distribution sorts a handful
 * of tokens and a flat one at worst sorts everything once.
 */
export function sampleTopP(logits: Float32Array, temperature: number, topP: number, random: () => number): number {
  if (!(temperature > 0)) throw new RangeError(`sampleTopP: temperature must be > 0, got ${temperature}`);
  if (topP !== topP) throw new RangeError('sampleTopP: topP is NaN');
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  if (max === -Infinity) throw new RangeError('sampleTopP: no selectable logits (empty, all -Infinity or NaN)');

  // One scratch buffer per call: probabilities (unnormalized) + candidate indices.
  const buf = new ArrayBuffer(n * 12);
  const p = new Float64Array(buf, 0, n);
  const cand = new Int32Array(buf, n * 8, n);
  let z = 0;
  for (let i = 0; i < n; i++) {
    const l = logits[i]!;
    let e: number;
    if (max === Infinity) e = l === Infinity ? 1 : 0; // +Inf logits take all the mass
    else e = l === l ? Math.exp((l - max) / temperature) : 0;
    p[i] = e;
    z += e;
  }
  const target = Math.min(topP, 1) * z; // cumulative mass to reach (unnormalized units)

  let count = 0;
  let tau = 1e-4; // max probability (unnormalized) is exactly 1
  for (;;) {
    count = 0;
    let mass = 0;
    for (let i = 0; i < n; i++) {
      if (p[i]! >= tau && p[i]! > 0) {
        cand[count++] = i;
        mass += p[i]!;
      }
    }
    if (mass >= target || tau === 0) break;
    tau = tau < 1e-200 ? 0 : tau * 1e-4;
  }

  const c = cand.subarray(0, count);
  c.sort((a, b) => (p[b]! - p[a]!) || a - b);

  // Smallest prefix reaching the target; keep all candidates if rounding leaves it just short.
  let kept = 0;
  let keptMass = 0;
  while (kept < count) {
    keptMass += p[c[kept++]!]!;
    if (keptMass >= target) break;
  }

  const r = random() * keptMass;
  let acc = 0;
  for (let j = 0; j < kept; j++) {
    acc += p[c[j]!]!;
    if (r < acc) return c[j]!;
  }
  return c[kept - 1]!; // r rounded up to keptMass
}

/**
 * mulberry32: 32-bit state advanced by a Weyl step (0x6D2B79F5), output
 * scrambled by xorshift-multiply rounds. Returns floats in [0, 1) with 32
 * random bits. Fast and reproducible; not cryptographic.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
