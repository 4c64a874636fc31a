import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32, sampleTopP, softmaxInPlace } from '../../kernels/sampling.js';

// mulberry32 reference in BigInt (no Math.imul, no int32 tricks).
function refMulberry(seed: number, count: number): number[] {
  const M = 0xffffffffn;
  const mul = (a: bigint, b: bigint): bigint => (a * b) & M;
  let state = BigInt(seed >>> 0);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5n) & M;
    let t = state;
    t = mul(t ^ (t >> 15n), t | 1n);
    t = t ^ ((t + mul(t ^ (t >> 7n), t | 61n)) & M);
    out.push(Number(t ^ (t >> 14n)) / 2 ** 32);
  }
  return out;
}

// Reference nucleus sampler: full sort, float64 probabilities. Returns a
// draw function so the sort runs once per distribution, not per draw.
function refSampler(logits: Float32Array, temperature: number, topP: number): (u: number) => number {
  const n = logits.length;
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  const p = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  const z = p.reduce((a, b) => a + b, 0);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
  const kept: number[] = [];
  let cum = 0;
  for (const i of order) {
    kept.push(i);
    cum += p[i]! / z;
    if (cum >= topP) break;
  }
  const mass = kept.reduce((a, i) => a + p[i]!, 0);
  return (u) => {
    let r = u * mass;
    for (const i of kept) {
      r -= p[i]!;
      if (r < 0) return i;
    }
    return kept[kept.length - 1]!;
  };
}

function logitsFrom(seed: number, n: number, scale: number): Float32Array {
  const l = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    l[i] = (s / 2 ** 32) * scale;
  }
  return l;
}

test('mulberry32 matches an independent BigInt implementation', () => {
  for (const seed of [0, 1, 42, 0xdeadbeef, -7, 2 ** 32 + 5]) {
    const rng = mulberry32(seed);
    const want = refMulberry(seed, 200);
    for (let i = 0; i < want.length; i++) assert.equal(rng(), want[i], `seed ${seed} draw ${i}`);
  }
});

test('mulberry32 is in [0, 1), reproducible and roughly uniform', () => {
  const a = mulberry32(123);
  const b = mulberry32(123);
  const bins = new Array<number>(10).fill(0);
  for (let i = 0; i < 100000; i++) {
    const x = a();
    assert.equal(x, b());
    assert.ok(x >= 0 && x < 1);
    bins[Math.floor(x * 10)]!++;
  }
  for (const c of bins) assert.ok(Math.abs(c - 10000) < 500, `bin count ${c}`);
  assert.notEqual(mulberry32(1)(), mulberry32(2)());
});

test('softmaxInPlace: values, stability, edge cases', () => {
  const v = new Float64Array([1, 2, 3]);
  softmaxInPlace(v);
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
  const z = e[0]! + e[1]! + e[2]!;
  v.forEach((x, i) => assert.ok(Math.abs(x - e[i]! / z) < 1e-15));
  const big = new Float32Array([1000, 1001, 1002]); // naive exp overflows
  softmaxInPlace(big);
  big.forEach((x, i) => assert.ok(Math.abs(x - e[i]! / z) < 1e-7));
  const masked = new Float32Array([-Infinity, 0, -Infinity, 0]);
  softmaxInPlace(masked);
  assert.deepEqual([...masked], [0, 0.5, 0, 0.5]);
  const allMasked = new Float64Array([-Infinity, -Infinity]);
  softmaxInPlace(allMasked);
  assert.deepEqual([...allMasked], [0.5, 0.5]);
  const withNaN = new Float64Array([NaN, 0]);
  softmaxInPlace(withNaN);
  assert.deepEqual([...withNaN], [0, 1]);
  softmaxInPlace(new Float32Array(0));
});

test('sampleTopP matches the full-sort reference for many draws', () => {
  const cases: Array<[number, number, number, number]> = [
    // seed, vocab, logit scale, topP
    [1, 50, 10, 0.9],
    [2, 1000, 20, 0.95],
    [3, 1000, 2, 0.5],
    [4, 300, 40, 1],
    [5, 300, 0.001, 0.7], // nearly flat
    [6, 5000, 30, 0.99],
  ];
  for (const [seed, n, scale, topP] of cases) {
    const logits = logitsFrom(seed, n, scale);
    for (const temperature of [0.3, 0.7, 1, 1.8]) {
      const rng = mulberry32(seed * 31);
      const ref = refSampler(logits, temperature, topP);
      for (let d = 0; d < 40; d++) {
        const u = rng();
        const got = sampleTopP(logits, temperature, topP, () => u);
        assert.equal(got, ref(u), `seed ${seed} T=${temperature} u=${u}`);
      }
    }
  }
});

test('nucleus boundary: smallest prefix reaching topP, ties by lower index', () => {
  // probabilities 0.4, 0.3, 0.2, 0.1 (logits = log p, temperature 1)
  const logits = new Float32Array([0.1, 0.4, 0.2, 0.3].map(Math.log));
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) seen.add(sampleTopP(logits, 1, 0.65, () => i / 1000));
  assert.deepEqual([...seen].sort(), [1, 3]); // 0.4 + 0.3 >= 0.65
  // u just below 0.4/0.7 picks token 1, at/above picks token 3.
  assert.equal(sampleTopP(logits, 1, 0.65, () => 0.5714), 1);
  assert.equal(sampleTopP(logits, 1, 0.65, () => 0.5715), 3);
  // Tiny topP keeps only the argmax; equal logits keep the lowest index.
  for (let i = 0; i < 20; i++) assert.equal(sampleTopP(logits, 1, 1e-9, () => i / 20), 1);
  const flat = new Float32Array(8);
  assert.equal(sampleTopP(flat, 1, 0, () => 0.99), 0);
  // topP = 1 reaches every token, in probability order.
  assert.equal(sampleTopP(logits, 1, 1, () => 0.999), 0);
});

test('sampleTopP: heavy tail below the first threshold is still handled', () => {
  // One dominant token and a tail of 100k tokens each 1e-5 of it: the tail
  // holds ~half the mass, so the nucleus must reach into it.
  const n = 100001;
  const logits = new Float32Array(n).fill(Math.log(1e-5));
  logits[0] = 0;
  const rng = mulberry32(9);
  const ref = refSampler(logits, 1, 0.9);
  for (let d = 0; d < 10; d++) {
    const u = rng();
    assert.equal(sampleTopP(logits, 1, 0.9, () => u), ref(u));
  }
});

test('sampleTopP: masked logits, frequencies, validation', () => {
  const logits = new Float32Array([-Infinity, Math.log(3), -Infinity, 0]);
  const rng = mulberry32(77);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[sampleTopP(logits, 1, 1, rng)]!++;
  assert.equal(counts[0]! + counts[2]!, 0);
  assert.ok(Math.abs(counts[1]! / 20000 - 0.75) < 0.02, `${counts}`);
  assert.throws(() => sampleTopP(logits, 0, 0.9, rng), RangeError);
  assert.throws(() => sampleTopP(new Float32Array([-Infinity]), 1, 0.9, rng), RangeError);
  assert.throws(() => sampleTopP(logits, 1, NaN, rng), RangeError);
});
