/**
 * The answer context's layout, as drawn above loadContext (src/engine/contextLoader.ts): per layer
 * [prefix | sink frames | that layer's chosen chunks in time order | window (if included)] at compact
 * positions, every layer the same length, keys rotated to their positions. Synthetic chunks in RAM.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ropeInvFreq } from '../../kernels/rope.js';
import { mulberry32 } from '../../kernels/sampling.js';
import { assembleContext, type PrefixBlock } from '../../memory/contextAssembler.js';
import { ContextWindow } from '../../memory/contextWindow.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { kvShape } from '../../memory/kvShape.js';
import { chunkLayers } from '../../memory/store/index.js';
import { loadContext, type Selection } from '../../src/engine/contextLoader.js';
import { makeChunk } from '../memory/helpers.js';

const SHAPE = kvShape({ numLayers: 2, numKvHeads: 2, headDim: 8, invFreq: ropeInvFreq(8, 10000) });
const TOKENS = 3;
const PREFIX_TOKENS = 4;

function prefix(): PrefixBlock {
  const random = mulberry32(7);
  const fill = () => Float32Array.from({ length: SHAPE.layerFloats(PREFIX_TOKENS) }, () => random() * 2 - 1);
  return { tokenCount: PREFIX_TOKENS, keys: [fill(), fill()], values: [fill(), fill()] };
}

test('per layer: prefix, sinks, chosen chunks in time order, window; one length; keys at their positions', async () => {
  const window = new ContextWindow(prefix(), SHAPE, { sinkFrames: 1, windowFrames: 2 }, false);
  const all = new Map<number, FrameChunk>();
  for (let id = 0; id < 10; id++) {
    const chunk = makeChunk(id, SHAPE, TOKENS, { seed: 5 });
    all.set(id, chunk);
    window.push(chunk);
  }
  // Layer 0 chose 6 and 2 (given out of time order), layer 1 chose 3 and 4.
  const selection: Selection = { chunkIds: [[6, 2], [3, 4]], scores: [[0.9, 0.8], [0.7, 0.6]], reselect: null };
  const loaded = await loadContext(window, selection, true, (wanted) =>
    Promise.resolve({ chunks: new Map([...wanted].map(([id, layers]) => [id, chunkLayers(all.get(id)!, layers)])), failed: [], release: () => undefined }),
  );
  try {
    const P = PREFIX_TOKENS;
    const span = (chunkId: number, start: number) => ({ chunkId, start, end: start + TOKENS });
    // [prefix 0..P) | sink 0 | chosen, time order | window 8, 9
    assert.deepEqual(loaded.context.spans[0], [span(0, P), span(2, P + 3), span(6, P + 6), span(8, P + 9), span(9, P + 12)]);
    assert.deepEqual(loaded.context.spans[1], [span(0, P), span(3, P + 3), span(4, P + 6), span(8, P + 9), span(9, P + 12)]);
    assert.equal(loaded.context.length, P + 5 * TOKENS);
    assert.deepEqual(loaded.layerChunkIds, [[6, 2], [3, 4]]);
    assert.deepEqual(loaded.evidence.map((e) => e.chunkId), [2, 3, 4, 6]);
    // Each layer equals a plain assembly of exactly its own chunks (keys rotated to the same positions).
    for (const layer of [0, 1]) {
      const ids = layer === 0 ? [0, 2, 6, 8, 9] : [0, 3, 4, 8, 9];
      const reference = assembleContext(window.prefix, ids.map((id) => all.get(id)!), SHAPE);
      assert.deepEqual(loaded.context.keys[layer], reference.keys[layer], `layer ${layer} keys`);
      assert.deepEqual(loaded.context.values[layer], reference.values[layer], `layer ${layer} values`);
    }
  } finally {
    loaded.dispose();
  }
});
