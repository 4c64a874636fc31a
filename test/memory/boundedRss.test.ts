/**
 * Resident memory stays bounded while a long synthetic stream is ingested (the window keeps only
 * its frames; everything else is on disk). The bound is generous on purpose: the measurement with
 * real geometry is bench/memory-rss.ts. If evicted chunks were kept in RAM, this stream would add
 * ~600 MB.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { removeDir, runSyntheticStream } from '../helpers/syntheticStream.js';

it('RSS does not grow with stream length', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-rss-'));
  try {
    const geometry = { numLayers: 8, numKvHeads: 4, headDim: 64, tokensPerChunk: 74 };
    const samples = await runSyntheticStream({ dir, geometry, chunks: 500, windowFrames: 16, sampleEvery: 100 });
    const chunkBytes = 2 * 8 * 4 * 74 * 64 * 4;
    const early = samples[0]!;
    const late = samples.at(-1)!;
    const growth = late.rssBytes - early.rssBytes;
    t.diagnostic(`RSS ${Math.round(early.rssBytes / 2 ** 20)} MiB at 100 chunks, ${Math.round(late.rssBytes / 2 ** 20)} MiB at 500; disk ${Math.round(late.diskBytes / 2 ** 20)} MiB`);
    assert.ok(late.diskBytes >= 500 * chunkBytes, 'every chunk went to disk');
    assert.ok(growth < 150 * 2 ** 20, `RSS grew by ${Math.round(growth / 2 ** 20)} MiB over 400 chunks of ${(chunkBytes / 2 ** 20).toFixed(2)} MiB`);
  } finally {
    removeDir(dir);
  }
});
