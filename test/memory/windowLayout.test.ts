import { test } from 'node:test';
import assert from 'node:assert/strict';
import { float32ToFloat16 } from '../../kernels/fp16.js';
import { ropeInvFreq } from '../../kernels/rope.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { assembleContext, type KvGeometry, type PrefixBlock } from '../../memory/contextAssembler.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { SlidingWindow } from '../../memory/slidingWindow.js';
import { WindowLayout } from '../../memory/windowLayout.js';
import { makeChunk } from './helpers.js';

const GEO: KvGeometry = { numLayers: 3, numKvHeads: 2, headDim: 8, invFreq: ropeInvFreq(6, 10000) };

function prefixBlock(tokens: number): PrefixBlock {
  const random = mulberry32(99);
  const fill = () => Float32Array.from({ length: GEO.numKvHeads * tokens * GEO.headDim }, () => random() * 2 - 1);
  return { tokenCount: tokens, keys: Array.from({ length: GEO.numLayers }, fill), values: Array.from({ length: GEO.numLayers }, fill) };
}

function assertSameBits(actual: Float32Array[], expected: Float32Array[], what: string): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, layer) => assert.deepEqual(new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(expected[layer]!.buffer, expected[layer]!.byteOffset, expected[layer]!.length), `${what}, layer ${layer}`));
}

test('the reused layout equals a fresh assembly bit for bit as the window slides (float32 and float16 mirrors)', () => {
  const prefix = prefixBlock(4);
  const window = new SlidingWindow({ sinkFrames: 2, windowFrames: 3 });
  const layout = new WindowLayout(prefix, GEO, true);
  const lengths = new Set<number>();
  for (let id = 0; id < 12; id++) {
    window.push(makeChunk(id, GEO, 5, { seed: 3 }));
    const chunks = window.contextChunks;
    const laid = layout.layout(chunks);
    const fresh = assembleContext(prefix, chunks, GEO);
    assert.equal(laid.length, fresh.length);
    assert.deepEqual(laid.spans, fresh.spans);
    assertSameBits(laid.keys, fresh.keys, `keys after frame ${id}`);
    assertSameBits(laid.values, fresh.values, `values after frame ${id}`);
    laid.keys.forEach((k, layer) => assert.deepEqual(laid.keys16![layer], float32ToFloat16(k), `float16 keys after frame ${id}`));
    laid.values.forEach((v, layer) => assert.deepEqual(laid.values16![layer], float32ToFloat16(v), `float16 values after frame ${id}`));
    lengths.add(laid.length);
  }
  // Warm-up grows the context, then it stays at prefix + (2 sinks + 3 window) x 5 tokens.
  assert.deepEqual([...lengths].slice(-1), [4 + 5 * 5]);
});

test('a chunk replaced by an equal-id copy from disk, or chunks of other sizes, are laid out anew', () => {
  const prefix = prefixBlock(3);
  const layout = new WindowLayout(prefix, GEO);
  const first: FrameChunk[] = [0, 1, 2].map((id) => makeChunk(id, GEO, 4, { seed: 1 }));
  layout.layout(first);
  // Same ids and sizes, other contents (as a re-read after corruption repair would be): must not be skipped.
  const other = [0, 1, 2].map((id) => makeChunk(id, GEO, 4, { seed: 2 }));
  const laid = layout.layout(other);
  const fresh = assembleContext(prefix, other, GEO);
  assertSameBits(laid.keys, fresh.keys, 'keys of replaced chunks');
  assertSameBits(laid.values, fresh.values, 'values of replaced chunks');
  const mixed = [makeChunk(5, GEO, 2), makeChunk(6, GEO, 7)];
  const laidMixed = layout.layout(mixed);
  assertSameBits(laidMixed.keys, assembleContext(prefix, mixed, GEO).keys, 'keys of chunks of other sizes');
  assert.equal(laidMixed.length, 3 + 2 + 7);
  assert.equal(laid.keys16, undefined);
});

test('a chunk of the wrong geometry is refused', () => {
  const layout = new WindowLayout(prefixBlock(2), GEO);
  assert.throws(() => layout.layout([makeChunk(0, { numLayers: 3, numKvHeads: 1, headDim: 8 })]), /geometry/);
});
