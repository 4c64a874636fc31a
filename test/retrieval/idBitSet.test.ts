import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../kernels/sampling.js';
import { IdBitSet } from '../../retrieval/idBitSet.js';

test('IdBitSet agrees with a Set under random adds and deletes, word edges included', () => {
  const random = mulberry32(11);
  const bits = new IdBitSet();
  const reference = new Set<number>();
  // Memory is one bit per id up to the largest (4 MB at 2^25): word edges and bit 31 matter, not size.
  const ids = [0, 31, 32, 63, 64, 1_000_003, 2 ** 20 - 1, 2 ** 20 + 31];
  for (let i = 0; i < 20_000; i++) {
    const id = i < ids.length ? ids[i]! : Math.floor(random() * 5000);
    if (random() < 0.7 || i < ids.length) assert.equal(bits.add(id), !reference.has(id) && (reference.add(id), true), `add ${id}`);
    else assert.equal(bits.delete(id), reference.delete(id), `delete ${id}`);
    assert.equal(bits.size, reference.size);
  }
  for (const id of [0, 31, 32, 2 ** 20 + 31, 2 ** 20 + 32, 4999, 5000, 123_456]) assert.equal(bits.has(id), reference.has(id), `has ${id}`);
  assert.deepEqual(Array.from(bits.toArray()), [...reference].sort((a, b) => a - b));
});

test('between, min and max over word boundaries', () => {
  const set = new IdBitSet();
  for (const id of [0, 31, 32, 33, 63, 64, 1000]) set.add(id);
  assert.deepEqual(Array.from(set.between(0, 2000)), [0, 31, 32, 33, 63, 64, 1000]);
  assert.deepEqual(Array.from(set.between(31, 64)), [31, 32, 33, 63]);
  assert.deepEqual(Array.from(set.between(65, 1000)), []);
  assert.equal(set.min(), 0);
  assert.equal(set.max(), 1000);
  set.delete(0);
  set.delete(1000);
  assert.equal(set.min(), 31);
  assert.equal(set.max(), 64);
  assert.equal(new IdBitSet().min(), undefined);
});
