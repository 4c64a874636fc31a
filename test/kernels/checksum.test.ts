import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { crc32 } from '../../kernels/checksum.js';

// Reference: the bit-at-a-time definition of the reflected CRC-32.
function refCrc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function bytes(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s >>> 24;
  }
  return a;
}

test('crc32: published check values', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(new TextEncoder().encode('The quick brown fox jumps over the lazy dog')), 0x414fa339);
  assert.equal(crc32(new Uint8Array(32)), 0x190a55ad); // 32 zero bytes
});

test('crc32: matches the bitwise reference for every length 0..64 and odd offsets', () => {
  const data = bytes(200, 7);
  for (let len = 0; len <= 64; len++) {
    for (const off of [0, 1, 3, 7]) {
      assert.equal(crc32(data, 0, off, len), refCrc32(data.subarray(off, off + len)), `len=${len} off=${off}`);
    }
  }
  const big = bytes(100_003, 11);
  assert.equal(crc32(big), refCrc32(big));
});

test('crc32: chaining equals one pass, like zlib.crc32(data, value)', () => {
  const data = bytes(10_000, 3);
  const whole = crc32(data);
  for (const cut of [0, 1, 5, 4096, 9_999, 10_000]) {
    assert.equal(crc32(data, crc32(data, 0, 0, cut), cut), whole, `cut=${cut}`);
  }
});

test('crc32: equals node:zlib crc32 where the runtime has it', (t) => {
  const native = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
  if (typeof native !== 'function') {
    t.skip('zlib.crc32 needs Node >= 20.15');
    return;
  }
  for (const n of [1, 8, 9, 1000, 65_537]) {
    const d = bytes(n, n);
    assert.equal(crc32(d), native(d));
    assert.equal(crc32(d, 0x12345678), native(d, 0x12345678));
  }
});

test('crc32: rejects a range outside the buffer', () => {
  assert.throws(() => crc32(new Uint8Array(4), 0, 2, 3), RangeError);
});
