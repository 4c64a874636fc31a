// The native kernels against the JavaScript ones (the reference, with exact tests of their own):
// every output bit-identical, on random data and on the edge values each kernel special-cases.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, it } from 'node:test';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { kernelBackend, nativeKernels, nativeLoadError, prefetchRanges, trimHeap, useKernelBackend, type KernelBackend } from '../../kernels/native.js';
import { meanOverTokens } from '../../kernels/pool.js';
import { dequantizeKeysPerChannel, dequantizeValuesPerToken, quantizeKeysPerChannel, quantizeValuesPerToken } from '../../kernels/quantize.js';
import { ropeInvFreq, rotateBlockInto, rotateHeads } from '../../kernels/rope.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { dotRows } from '../../kernels/similarity.js';
import { dotRowsInt16, dotRowsInt8, quantizeQueryInt16 } from '../../kernels/int8Rows.js';
import { topK } from '../../kernels/topk.js';

const available = nativeKernels() !== undefined;
const initial = kernelBackend();
afterEach(() => useKernelBackend(initial));

/** Runs fn under both backends and returns [js, native] results. */
function both<T>(fn: () => T): [T, T] {
  useKernelBackend('js');
  const js = fn();
  useKernelBackend('native');
  const native = fn();
  return [js, native];
}

/** Bit patterns of a float array, NaN canonicalized (hardware NaN payloads may differ by operand order). */
function bits(a: Float32Array | Float64Array): number[] {
  const out: number[] = [];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const v of a) {
    if (Number.isNaN(v)) out.push(-1);
    else if (a instanceof Float32Array) {
      f32[0] = v;
      out.push(u32[0]!);
    } else out.push(Object.is(v, -0) ? -0.5 : v);
  }
  return out;
}

function randomFloats(n: number, seed: number, scale = 4): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (random() - 0.5) * scale);
}

/** Values fp16 and quantization treat specially, sprinkled into random data. */
function withEdges(a: Float32Array, seed: number): Float32Array {
  // 1 + 2^-11 and 1 + 3 * 2^-11: exact ties between two halves (round to even goes down, then up).
  const edges = [0, -0, 1.00048828125, -1.00146484375, 65504, 65520, 65519.99, -65536, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.9e-8, 1e-40, -1e-40, 3.4e38, 1 / 3, Infinity, -Infinity, NaN];
  const random = mulberry32(seed);
  const out = a.slice();
  for (let i = 0; i < out.length; i += 1 + Math.floor(random() * 8)) out[i] = edges[Math.floor(random() * edges.length)]!;
  return out;
}

describe('native kernels', { skip: available ? false : `not built (${nativeLoadError() ?? 'VIGIL_KERNELS=js'})` }, () => {
  it('are the ones in use unless VIGIL_KERNELS=js', () => {
    const expected: KernelBackend = process.env.VIGIL_KERNELS === 'js' ? 'js' : 'native';
    assert.equal(initial, expected);
  });

  it('rotate and unrotate heads bit-identically (table rows, in place and out of place, tail dims)', () => {
    for (const [heads, tokens, headDim, rotary] of [[3, 77, 64, 64], [2, 5, 10, 6], [1, 3, 64, 64]] as const) {
      const invFreq = ropeInvFreq(rotary, 100000);
      const src = randomFloats(heads * tokens * headDim, tokens);
      const positions = Array.from({ length: tokens }, (_, i) => (i * 37) % 5000);
      for (const direction of [1, -1] as const) {
        const [js, native] = both(() => rotateHeads(src, heads, tokens, headDim, positions, invFreq, direction));
        assert.deepEqual(bits(native), bits(js));
        const [jsIn, nativeIn] = both(() => {
          const copy = src.slice();
          return rotateHeads(copy, heads, tokens, headDim, positions, invFreq, direction, copy);
        });
        assert.deepEqual(bits(nativeIn), bits(jsIn));
      }
    }
  });

  it('rotate blocks into a larger context bit-identically, position 0 copied exactly', () => {
    const [heads, tokens, headDim, total] = [3, 77, 64, 300];
    const invFreq = ropeInvFreq(headDim, 100000);
    const src = withEdges(randomFloats(heads * tokens * headDim, 3), 4);
    for (const first of [0, 1, 1000]) {
      const [js, native] = both(() => {
        const dst = new Float32Array(heads * total * headDim).fill(7);
        rotateBlockInto(src, heads, tokens, headDim, first, invFreq, dst, total, 100);
        return dst;
      });
      assert.deepEqual(bits(native), bits(js));
    }
  });

  it('convert float32 <-> float16 bit-identically, including subnormals, overflow, Inf and NaN', () => {
    const src = withEdges(randomFloats(10007, 5, 200000), 6);
    const tiny = withEdges(randomFloats(1003, 7, 1e-4), 8);
    for (const input of [src, tiny, src.subarray(3, 12)]) {
      const [js, native] = both(() => float32ToFloat16(input));
      assert.deepEqual([...native], [...js]);
    }
    const every = Uint16Array.from({ length: 65536 }, (_, h) => h);
    const [js, native] = both(() => new Uint32Array(float16ToFloat32(every).buffer));
    assert.deepEqual([...native], [...js], 'every half pattern decodes to the same float32 bits (NaN payloads kept)');
  });

  it('quantize and dequantize keys per channel and values per token bit-identically', () => {
    for (const [heads, tokens, headDim] of [[3, 77, 64], [2, 1, 5], [1, 9, 3]] as const) {
      const n = heads * tokens * headDim;
      const src = randomFloats(n, n);
      src[0] = 1e-40; // a subnormal scale
      src.fill(0.25, Math.min(n, headDim), Math.min(n, 2 * headDim)); // a constant group
      if (headDim >= 16 && tokens >= 4) {
        // Rows whose minimum (then maximum) is a zero of both signs: the first one seen is kept.
        const minRow = 2 * headDim;
        const maxRow = 3 * headDim;
        for (let i = 0; i < headDim; i++) {
          src[minRow + i] = Math.abs(src[minRow + i]!) + 0.5;
          src[maxRow + i] = -Math.abs(src[maxRow + i]!) - 0.5;
        }
        for (const row of [minRow, maxRow]) {
          src[row + 2] = -0;
          src[row + 9] = 0;
        }
      }
      const run = (perToken: boolean) => () => {
        const groups = perToken ? heads * tokens : heads * headDim;
        const codes = new Uint8Array(n);
        const scales = new Float32Array(groups);
        const zeros = new Float32Array(groups);
        if (perToken) quantizeValuesPerToken(src, heads, tokens, headDim, codes, scales, zeros);
        else quantizeKeysPerChannel(src, heads, tokens, headDim, codes, scales, zeros);
        const back = perToken
          ? dequantizeValuesPerToken(codes, scales, zeros, heads, tokens, headDim)
          : dequantizeKeysPerChannel(codes, scales, zeros, heads, tokens, headDim);
        return { codes: [...codes], scales: bits(scales), zeros: bits(zeros), back: bits(back) };
      };
      for (const perToken of [false, true]) {
        const [js, native] = both(run(perToken));
        assert.deepEqual(native, js);
      }
    }
  });

  it('reject non-finite values with the same error', () => {
    const src = randomFloats(3 * 7 * 4, 9);
    src[2 * 28 + 5] = Number.NaN;
    for (const quantize of [quantizeKeysPerChannel, quantizeValuesPerToken]) {
      const [js, native] = both(() => {
        try {
          quantize(src, 3, 7, 4, new Uint8Array(84), new Float32Array(84), new Float32Array(84));
          return 'no error';
        } catch (error) {
          return (error as Error).message;
        }
      });
      assert.match(js, /non-finite value NaN at index 61/);
      assert.equal(native, js);
    }
  });

  it('mean over tokens, top-k and exact-search dot products bit-identically', () => {
    const src = randomFloats(3 * 77 * 64, 10);
    const [jsMean, nativeMean] = both(() => meanOverTokens(src, 3, 77, 64));
    assert.deepEqual(bits(nativeMean), bits(jsMean));

    const scores = randomFloats(5000, 11);
    scores[17] = scores[4000]!; // a tie: lower index first
    scores[99] = Number.NaN;
    for (const input of [scores, Float64Array.from(scores), scores.subarray(0, 70)]) {
      for (const k of [1, 64, 70]) {
        const [js, native] = both(() => topK(input, k));
        assert.deepEqual([...native.indices], [...js.indices]);
        assert.deepEqual(bits(native.values), bits(js.values));
      }
    }
    const allNaN = new Float32Array(10).fill(Number.NaN);
    const [jsNaN, nativeNaN] = both(() => topK(allNaN, 4));
    assert.deepEqual([...nativeNaN.indices], [...jsNaN.indices]);

    for (const dim of [192, 7]) {
      const matrix = randomFloats(101 * dim, dim);
      const query = randomFloats(dim, dim + 1);
      const [js, native] = both(() => dotRows(matrix, 101, dim, query, new Float64Array(101)));
      assert.deepEqual(bits(native), bits(js));
    }
  });

  it('sealed-index int8 scans (float64 sums and int16 queries) bit-identically', () => {
    const random = mulberry32(21);
    for (const dim of [192, 64, 7, 3, 1]) {
      for (const rows of [0, 1, 3, 4, 5, 9, 64, 131]) {
        const codes = Int8Array.from({ length: (rows + 2) * dim }, () => Math.floor(random() * 255) - 127);
        const scales = Float32Array.from({ length: rows + 2 }, () => random() * 2 ** Math.floor(random() * 16 - 8));
        // Values across many binades, so the float64 sums round and their order shows.
        const query = Float32Array.from({ length: dim }, () => (random() - 0.5) * 2 ** Math.floor(random() * 48 - 24));
        const [js, native] = both(() => dotRowsInt8(codes, scales, 2, rows, dim, query, new Float64Array(rows)));
        assert.deepEqual(bits(native), bits(js), `dotRowsInt8 dim ${dim} rows ${rows}`);
        const q16 = new Int16Array(dim);
        const qScale = quantizeQueryInt16(query, dim, q16);
        const [js16, native16] = both(() => dotRowsInt16(codes, scales, 2, rows, dim, q16, qScale, new Float64Array(rows)));
        assert.deepEqual(bits(native16), bits(js16), `dotRowsInt16 dim ${dim} rows ${rows}`);
      }
    }
  });

  it('trimHeap gives freed C heap back to the OS (glibc keeps it otherwise)', { skip: process.platform === 'linux' ? false : 'glibc only' }, () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // ~120 MiB of 64 KiB buffers (below glibc's mmap threshold: they come from its heap), every
    // 16th kept so the freed ones sit between live ones and cannot go back by shrinking the heap.
    let buffers: Buffer[] = Array.from({ length: 1920 }, () => Buffer.alloc(64 * 1024, 1));
    const kept = buffers.filter((_, i) => i % 16 === 0);
    buffers = [];
    gc();
    gc();
    const before = process.memoryUsage().rss;
    assert.equal(trimHeap(), true);
    const released = before - process.memoryUsage().rss;
    assert.ok(released > 64 * 2 ** 20, `RSS fell by ${(released / 2 ** 20).toFixed(1)} MiB after the trim`);
    assert.equal(kept.length, 120);
    assert.equal(typeof trimHeap(), 'boolean');
  });

  it('prefetchRanges is only a hint: any fd, offset or length is accepted and nothing changes', () => {
    const file = path.join(os.tmpdir(), `vigil-prefetch-${process.pid}.bin`);
    fs.writeFileSync(file, Buffer.alloc(8192, 7));
    const fd = fs.openSync(file, 'r');
    try {
      nativeKernels()!.prefetchRanges(Int32Array.from([fd, fd, -1, 999999]), Float64Array.from([0, 4096, 0, 0]), Float64Array.from([4096, 1e12, 10, 10]));
      nativeKernels()!.prefetchRanges(Int32Array.from([fd]), Float64Array.from([-5]), Float64Array.from([Number.NaN]));
      prefetchRanges(Int32Array.from([fd, fd]), Float64Array.from([0, 100]), Float64Array.from([100, 100]));
      const back = Buffer.alloc(8192);
      assert.equal(fs.readSync(fd, back, 0, 8192, 0), 8192);
      assert.ok(back.every((b) => b === 7));
    } finally {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    }
  });

  it('throw a clear error instead of touching memory out of bounds', () => {
    const addon = nativeKernels()!;
    const small = new Float32Array(10);
    const rows = new Int32Array(4);
    const table = new Float64Array(4);
    assert.throws(() => addon.rotateRows(small, 4, small, 4, 0, 1, 4, 64, 32, table, table, rows, 1), /src too short/);
    assert.throws(() => addon.rotateRows(new Float32Array(256), 4, new Float32Array(256), 4, 0, 1, 4, 64, 32, table, table, rows, 1), /row past the trig table/);
    assert.throws(() => addon.float32ToFloat16(new Float32Array(9), new Uint16Array(8)), /dst too short/);
    assert.throws(() => addon.float32ToFloat16(new Float64Array(2) as unknown as Float32Array, new Uint16Array(8)), TypeError);
    assert.throws(() => addon.meanOverTokens(small, 1, 20, 1, small), RangeError);
    assert.throws(() => addon.topK(small, 11, new Float64Array(11), new Int32Array(11)), /k > scores/);
    assert.throws(() => addon.dotRows(small, 3, 4, small, new Float64Array(3)), /matrix too short/);
    const codes = new Int8Array(12);
    assert.throws(() => addon.dotRowsInt8(codes, new Float32Array(3), 1, 3, 4, small, new Float64Array(3)), RangeError);
    assert.throws(() => addon.dotRowsInt8(codes, new Float32Array(2), 0, 3, 4, small, new Float64Array(3)), RangeError);
    assert.throws(() => addon.dotRowsInt8(codes, new Float32Array(3), 0, 3, 4, small, new Float64Array(2)), RangeError);
    assert.throws(() => addon.dotRowsInt8(new Uint8Array(12) as unknown as Int8Array, new Float32Array(3), 0, 3, 4, small, new Float64Array(3)), TypeError);
    assert.throws(() => addon.dotRowsInt16(codes, new Float32Array(3), 0, 3, 4, new Int16Array(3), 1, new Float64Array(3)), RangeError);
    assert.throws(() => addon.dotRowsInt16(new Int8Array(517), new Float32Array(1), 0, 1, 517, new Int16Array(517), 1, new Float64Array(1)), RangeError);
    assert.throws(() => addon.prefetchRanges(new Int32Array(2), new Float64Array(1), new Float64Array(2)), RangeError);
    assert.throws(() => addon.prefetchRanges(new Int32Array(2), new Float32Array(2) as unknown as Float64Array, new Float64Array(2)), TypeError);
    assert.throws(() => addon.quantizeKeysPerChannel(small, 1, 1.5, 4, new Uint8Array(10), small, small), RangeError);
  });
});
