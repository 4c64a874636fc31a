import { test } from 'node:test';
import assert from 'node:assert/strict';
import { float16ToFloat32, float32ToFloat16, fromHalfBits, toHalfBits } from '../../kernels/fp16.js';

// Reference decoder straight from the IEEE 754 binary16 formula.
function refDecode(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

const ALL = new Uint16Array(65536).map((_, i) => i);
const isNaNBits = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

// Float32 bit helpers for building inputs next to a value.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function nextUp(x: number): number {
  f32[0] = x; // positive finite only
  u32[0]! += 1;
  return f32[0];
}
function nextDown(x: number): number {
  f32[0] = x;
  u32[0]! -= 1;
  return f32[0];
}
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

test('f16 -> f32 matches the IEEE formula for all 65536 patterns', () => {
  const out = float16ToFloat32(ALL);
  for (let h = 0; h < 65536; h++) {
    const ref = refDecode(h);
    if (Number.isNaN(ref)) assert.ok(Number.isNaN(out[h]), `pattern ${h}`);
    else assert.ok(Object.is(out[h], ref), `pattern ${h.toString(16)}: ${out[h]} vs ${ref}`);
    const s = fromHalfBits(h);
    assert.ok(Number.isNaN(ref) ? Number.isNaN(s) : Object.is(s, ref));
  }
});

test('f16 -> f32 -> f16 is the identity (NaN stays NaN)', () => {
  const back = float32ToFloat16(float16ToFloat32(ALL));
  for (let h = 0; h < 65536; h++) {
    if (isNaNBits(h)) {
      assert.ok(isNaNBits(back[h]!), `NaN ${h.toString(16)} -> ${back[h]!.toString(16)}`);
      assert.equal(back[h]! & 0x200, 0x200, 'NaN is quiet');
      assert.equal(back[h]! & 0x8000, h & 0x8000, 'NaN sign');
    } else {
      assert.equal(back[h], h, `pattern ${h.toString(16)}`);
    }
    if (!isNaNBits(h)) assert.equal(toHalfBits(refDecode(h)), h);
  }
});

test('midpoints round to even; neighbours of midpoints round to nearest', () => {
  // Every pair of adjacent positive finite halves (including subnormals and 0).
  const inputs: number[] = [];
  const expect: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    const a = refDecode(h);
    const b = refDecode(h + 1);
    const mid = (a + b) / 2; // 12 significant bits: exact in float32
    assert.equal(Math.fround(mid), mid);
    const even = (h & 1) === 0 ? h : h + 1;
    for (const sign of [1, -1]) {
      const sb = sign < 0 ? 0x8000 : 0;
      inputs.push(sign * mid, sign * nextUp(mid), sign * nextDown(mid));
      expect.push(sb | even, sb | (h + 1), sb | h);
    }
  }
  const got = float32ToFloat16(new Float32Array(inputs));
  for (let i = 0; i < inputs.length; i++) {
    if (got[i] !== expect[i]) assert.fail(`${inputs[i]}: got ${got[i]!.toString(16)} want ${expect[i]!.toString(16)}`);
    if (toHalfBits(inputs[i]!) !== expect[i]) assert.fail(`toHalfBits(${inputs[i]})`);
  }
});

test('edge values', () => {
  const cases: Array<[number, number]> = [
    [65504, 0x7bff],
    [nextDown(65520), 0x7bff],
    [65520, 0x7c00],
    [-65520, 0xfc00],
    [1e10, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000],
    [nextUp(2 ** -25), 0x0001],
    [-(2 ** -25), 0x8000],
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units -> even (2)
    [2 ** -14, 0x0400],
    [2 ** -14 - 2 ** -25, 0x0400], // tie between max subnormal (odd) and min normal -> min normal
    [1e-30, 0x0000],
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [1 + 2 ** -11, 0x3c00], // tie -> even
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
    [0.1, 0x2e66],
  ];
  const got = float32ToFloat16(new Float32Array(cases.map((c) => c[0])));
  cases.forEach(([x, want], i) => {
    assert.equal(got[i], want, `f32 ${x}`);
    assert.equal(toHalfBits(x), want, `scalar ${x}`);
  });
  const nan = float32ToFloat16(new Float32Array([NaN]))[0]!;
  assert.ok(isNaNBits(nan));
  assert.ok(isNaNBits(toHalfBits(NaN)));
  // A signaling float32 NaN (quiet bit clear, payload only in low bits) must not become Inf.
  const snan = new Float32Array(new Uint32Array([0x7f800001, 0xff802000]).buffer);
  const snanOut = float32ToFloat16(snan);
  assert.ok(isNaNBits(snanOut[0]!) && isNaNBits(snanOut[1]!));
  assert.equal(snanOut[1]! & 0x8000, 0x8000);
  assert.ok(Object.is(fromHalfBits(0x8000), -0));
});

test('random float32 inputs match a nearest-half search', () => {
  // Sorted positive finite halves; pick the nearest by distance, ties to even bits.
  const halves = new Float64Array(0x7c00);
  for (let h = 0; h < 0x7c00; h++) halves[h] = refDecode(h);
  let seed = 12345;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed;
  };
  const n = 100000;
  const src = new Float32Array(n);
  const bits = new Uint32Array(src.buffer);
  for (let i = 0; i < n; i++) {
    // Exponents concentrated around the half range (2^-30 .. 2^18).
    const exp = 97 + (rnd() % 48);
    bits[i] = ((rnd() & 1) << 31) | (exp << 23) | (rnd() & 0x7fffff);
  }
  const got = float32ToFloat16(src);
  for (let i = 0; i < n; i++) {
    const x = Math.abs(src[i]!);
    let want: number;
    if (x >= 65520) want = 0x7c00;
    else {
      let lo = 0;
      let hi = 0x7bff;
      while (hi - lo > 1) {
        const m = (lo + hi) >> 1;
        if (halves[m]! <= x) lo = m;
        else hi = m;
      }
      const dl = x - halves[lo]!;
      const dh = halves[hi]! - x;
      want = dl < dh ? lo : dh < dl ? hi : (lo & 1) === 0 ? lo : hi;
    }
    want |= src[i]! < 0 ? 0x8000 : 0;
    if (got[i] !== want) assert.fail(`bits ${bitsOf(src[i]!).toString(16)}: got ${got[i]!.toString(16)} want ${want.toString(16)}`);
  }
});

test('toHalfBits rounds float64 directly (no double rounding through float32)', () => {
  // 1 + 2^-11 + 2^-40 is just above the 1 / 1+2^-10 midpoint; float32 would
  // first round it to the midpoint, which then ties down to 1.
  assert.equal(toHalfBits(1 + 2 ** -11 + 2 ** -40), 0x3c01);
  assert.equal(toHalfBits(1 + 2 ** -11 - 2 ** -40), 0x3c00);
  assert.equal(toHalfBits(2 ** -25 + 2 ** -60), 0x0001);
  assert.equal(toHalfBits(65520 - 2 ** -20), 0x7bff);
  assert.equal(toHalfBits(1e300), 0x7c00);
  assert.equal(toHalfBits(-1e-300), 0x8000);
});

test('out buffers are used and validated', () => {
  const out16 = new Uint16Array(3);
  assert.equal(float32ToFloat16(new Float32Array([1, 2, 3]), out16), out16);
  assert.deepEqual([...out16], [0x3c00, 0x4000, 0x4200]);
  const out32 = new Float32Array(3);
  assert.equal(float16ToFloat32(out16, out32), out32);
  assert.deepEqual([...out32], [1, 2, 3]);
  assert.throws(() => float32ToFloat16(new Float32Array(4), new Uint16Array(3)), RangeError);
  // Works on a subarray view with a non-zero byteOffset.
  const big = new Float32Array([9, 1.5, -0.25]);
  assert.deepEqual([...float32ToFloat16(big.subarray(1))], [0x3e00, 0xb400]);
});
