import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fnv1a32 } from '../../kernels/index.js';

describe('fnv1a32', () => {
  it('matches the published FNV-1a 32-bit test vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('foobar'), 0xbf9cf968);
  });

  it('is unsigned and tells one-character differences apart', () => {
    const hashes = ['cam1', 'cam2', 'cam3', 'cam4'].map(fnv1a32);
    assert.equal(new Set(hashes).size, 4);
    for (const h of hashes) assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
  });
});
