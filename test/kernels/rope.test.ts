import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rerotateHeads, ropeInvFreq, rotateHeads } from '../../kernels/rope.js';
import { seededData as data } from '../helpers/seededData.js';

// Reference inverse frequencies computed in float64, then rounded once.
function refInvFreq(rotaryDim: number, theta: number): number[] {
  const r: number[] = [];
  for (let i = 0; i < rotaryDim / 2; i++) r.push(Math.fround(theta ** (-(2 * i) / rotaryDim)));
  return r;
}

// Float64 reference: x -> x*cos + rotate_half(x)*sin per (head, token).
function refRotate(
  src: Float32Array,
  H: number,
  T: number,
  D: number,
  pos: number[],
  inv: number[],
  dir: number,
): Float64Array {
  const half = inv.length;
  const out = Float64Array.from(src);
  for (let h = 0; h < H; h++) {
    for (let t = 0; t < T; t++) {
      const row = (h * T + t) * D;
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(Math.fround(pos[t]!) * inv[i]!);
        const x1 = src[row + i]!;
        const x2 = src[row + i + half]!;
        const rh1 = -x2; // rotate_half: [-x2, x1]
        const rh2 = x1;
        out[row + i] = x1 * Math.cos(angle) + rh1 * dir * Math.sin(angle);
        out[row + i + half] = x2 * Math.cos(angle) + rh2 * dir * Math.sin(angle);
      }
    }
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('ropeInvFreq matches the float64 formula rounded to float32', () => {
  for (const [dim, theta] of [[128, 10000], [64, 1000000], [32, 500000], [2, 10000]] as const) {
    const inv = ropeInvFreq(dim, theta);
    assert.equal(inv.length, dim / 2);
    const ref = refInvFreq(dim, theta);
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(inv[i]! - ref[i]!) <= 2 ** -24 * ref[i]! * 1.01, `i=${i}`);
    assert.equal(inv[0], 1);
  }
  assert.throws(() => ropeInvFreq(7, 10000), RangeError);
});

test('rotateHeads matches the float64 reference (full and partial rotary, both directions)', () => {
  const H = 3;
  const T = 7;
  for (const [D, rot] of [[64, 64], [64, 32], [80, 48]] as const) {
    const inv = ropeInvFreq(rot, 10000);
    const invRef = Array.from(inv);
    const src = data(H * T * D, D + rot);
    const pos = [0, 1, 5, 100, 4097, 16000, 123456];
    for (const dir of [1, -1] as const) {
      const got = rotateHeads(src, H, T, D, pos, inv, dir);
      const ref = refRotate(src, H, T, D, pos, invRef, dir);
      assert.ok(maxAbsDiff(got, ref) < 1e-6, `D=${D} rot=${rot} dir=${dir}: ${maxAbsDiff(got, ref)}`);
      // Tail dims are bit-identical.
      for (let r = 0; r < H * T; r++) {
        for (let d = rot; d < D; d++) assert.ok(Object.is(got[r * D + d], src[r * D + d]));
      }
    }
  }
});

test('angles are rounded to float32 like the decoder', () => {
  const inv = ropeInvFreq(64, 10000);
  const src = data(64, 9);
  const pos = [16001];
  const got = rotateHeads(src, 1, 1, 64, pos, inv, 1);
  assert.ok(maxAbsDiff(got, refRotate(src, 1, 1, 64, pos, Array.from(inv), 1)) < 1e-6);
  // A float64-angle rotation differs by far more than the tolerance here.
  const half = 32;
  let worst = 0;
  for (let i = 0; i < half; i++) {
    const a = 16001 * inv[i]!;
    const x1 = src[i]!;
    const x2 = src[i + half]!;
    worst = Math.max(worst, Math.abs(got[i]! - (x1 * Math.cos(a) - x2 * Math.sin(a))));
  }
  assert.ok(worst > 1e-5, `float64 angles would be indistinguishable (${worst})`);
});

test('rotate then unrotate returns the input', () => {
  const H = 2;
  const T = 33;
  const D = 128;
  const inv = ropeInvFreq(128, 1000000);
  const src = data(H * T * D, 3);
  const pos = Array.from({ length: T }, (_, t) => t * 517 + 3);
  const back = rotateHeads(rotateHeads(src, H, T, D, pos, inv, 1), H, T, D, pos, inv, -1);
  assert.ok(maxAbsDiff(back, src) < 1e-6);
});

test('in place equals out of place', () => {
  const H = 4;
  const T = 5;
  const D = 96;
  const inv = ropeInvFreq(64, 10000);
  const src = data(H * T * D, 11);
  const pos = new Int32Array([3, 0, 77, 2048, 9999]);
  const outOfPlace = rotateHeads(src, H, T, D, pos, inv, 1);
  const buf = src.slice();
  const ret = rotateHeads(buf, H, T, D, pos, inv, 1, buf);
  assert.equal(ret, buf);
  assert.deepEqual(buf, outOfPlace);
  const to = [10, 20, 30, 40, 50];
  const rr = rerotateHeads(src, H, T, D, pos, to, inv);
  const rrBuf = src.slice();
  rerotateHeads(rrBuf, H, T, D, pos, to, inv, rrBuf);
  assert.deepEqual(rrBuf, rr);
});

test('position 0 is bit-exact identity (including -0 and non-finite values)', () => {
  const D = 8;
  const inv = ropeInvFreq(8, 10000);
  const src = new Float32Array([-0, 1.5, -2, Infinity, -0, 0, 3, NaN, ...data(8, 5)]);
  for (const dir of [1, -1] as const) {
    const got = rotateHeads(src, 2, 1, D, [0], inv, dir);
    for (let i = 0; i < src.length; i++) assert.ok(Object.is(got[i], src[i]), `i=${i}`);
  }
  const same = rerotateHeads(src, 1, 2, D, [7, 9], [7, 9], inv);
  for (let i = 0; i < src.length; i++) assert.ok(Object.is(same[i], src[i]));
});

test('rerotateHeads equals unrotate(from) then rotate(to) in float64', () => {
  const H = 2;
  const T = 6;
  const D = 64;
  const inv = ropeInvFreq(48, 10000);
  const invRef = Array.from(inv);
  const src = data(H * T * D, 21);
  const from = [0, 5, 100, 1000, 15000, 16000];
  const to = [3, 2, 0, 1024, 100, 16384];
  const got = rerotateHeads(src, H, T, D, from, to, inv);
  // Two-pass reference in float64 (no intermediate float32 rounding).
  const mid = refRotate(src, H, T, D, from, invRef, -1);
  const ref = refRotate(Float32Array.from(mid), H, T, D, to, invRef, 1);
  const refExact = refRotate2(mid, H, T, D, to, invRef);
  assert.ok(maxAbsDiff(got, refExact) < 1e-6, `${maxAbsDiff(got, refExact)}`);
  assert.ok(maxAbsDiff(got, ref) < 2e-6);
  // Rotating original keys to `to` directly (what the decoder would produce) agrees too.
  const orig = data(H * T * D, 22);
  const atFrom = rotateHeads(orig, H, T, D, from, inv, 1);
  const moved = rerotateHeads(atFrom, H, T, D, from, to, inv);
  assert.ok(maxAbsDiff(moved, refRotate(orig, H, T, D, to, invRef, 1)) < 2e-6);
});

// Same as refRotate but takes float64 input (used for the two-pass reference).
function refRotate2(src: Float64Array, H: number, T: number, D: number, pos: number[], inv: number[]): Float64Array {
  const half = inv.length;
  const out = Float64Array.from(src);
  for (let r = 0; r < H * T; r++) {
    const t = r % T;
    for (let i = 0; i < half; i++) {
      const a = Math.fround(Math.fround(pos[t]!) * inv[i]!);
      const x1 = src[r * D + i]!;
      const x2 = src[r * D + i + half]!;
      out[r * D + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
      out[r * D + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
    }
  }
  return out;
}

test('shape validation', () => {
  const inv = ropeInvFreq(16, 10000);
  assert.throws(() => rotateHeads(new Float32Array(10), 1, 1, 8, [0], inv, 1), RangeError);
  assert.throws(() => rotateHeads(new Float32Array(16), 1, 2, 8, [0], ropeInvFreq(8, 1e4), 1), RangeError);
});

test('rotateBlockInto equals rotateHeads + placement bit for bit (position 0, past the table, pass-through dims)', async () => {
  const { rotateBlockInto } = await import('../../kernels/rope.js');
  const { writeTokens } = await import('../../memory/kvLayout.js');
  const H = 3;
  const D = 10;
  const inv = ropeInvFreq(8, 10000); // dims 8, 9 pass through
  for (const [first, tokens] of [[0, 5], [7, 4], [65534, 4], [70000, 3]] as const) {
    const src = data(H * tokens * D, first + 1);
    src[0] = -0;
    const total = tokens + 6;
    const offset = 2;
    const expected = new Float32Array(H * total * D).fill(7);
    const positions = Array.from({ length: tokens }, (_, i) => first + i);
    writeTokens(expected, H, total, D, offset, rotateHeads(src, H, tokens, D, positions, inv, 1), tokens);
    const actual = new Float32Array(H * total * D).fill(7);
    rotateBlockInto(src, H, tokens, D, first, inv, actual, total, offset);
    assert.deepEqual(new Uint32Array(actual.buffer), new Uint32Array(expected.buffer), `first position ${first}`);
  }
  assert.throws(() => rotateBlockInto(data(H * 4 * D, 1), H, 4, D, 0, inv, new Float32Array(H * 5 * D), 5, 2), /do not fit/);
  assert.throws(() => rotateBlockInto(data(H * 4 * D, 1), H, 4, D, -1, inv, new Float32Array(H * 8 * D), 8, 0), /firstPosition/);
});
