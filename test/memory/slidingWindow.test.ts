import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { SlidingWindow } from '../../memory/slidingWindow.js';

function chunk(chunkId: number, tokenCount = 10): FrameChunk {
  return { chunkId, tStart: chunkId, tEnd: chunkId, wallTime: 0, tokenCount, numLayers: 1, numKvHeads: 1, headDim: 1, keys: [], values: [], representatives: [] };
}

it('keeps sink frames forever and the last W frames after them', () => {
  const w = new SlidingWindow({ sinkFrames: 2, windowFrames: 3 });
  const evicted: number[] = [];
  for (let i = 0; i < 9; i++) evicted.push(...w.push(chunk(i)).map((c) => c.chunkId));
  assert.deepEqual(w.sinkChunks.map((c) => c.chunkId), [0, 1]);
  assert.deepEqual(w.windowChunks.map((c) => c.chunkId), [6, 7, 8]);
  assert.deepEqual(evicted, [2, 3, 4, 5]);
  assert.throws(() => w.push(chunk(8)), /chunk ids must increase/);
});

it('a token cap evicts by tokens, never the newest frame', () => {
  const w = new SlidingWindow({ sinkFrames: 0, windowFrames: 100, windowTokens: 25 });
  assert.deepEqual(w.push(chunk(0, 10)), []);
  assert.deepEqual(w.push(chunk(1, 10)), []);
  assert.deepEqual(w.push(chunk(2, 10)).map((c) => c.chunkId), [0]);
  assert.deepEqual(w.push(chunk(3, 40)).map((c) => c.chunkId), [1, 2], 'an oversized newest frame stays alone');
  assert.deepEqual(w.windowChunks.map((c) => c.chunkId), [3]);
  assert.throws(() => new SlidingWindow({ sinkFrames: 0, windowFrames: 1, windowTokens: 0 }), /windowTokens/);
});

it('restore refills an empty window', () => {
  const w = new SlidingWindow({ sinkFrames: 1, windowFrames: 2 });
  w.restore([chunk(0)], [chunk(5), chunk(6), chunk(7)]);
  assert.deepEqual(w.contextChunks.map((c) => c.chunkId), [0, 6, 7]);
  assert.throws(() => w.restore([], []), /empty window/);
});
