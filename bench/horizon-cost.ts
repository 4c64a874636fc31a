// What stating the memory horizon costs (issue 15 item 6: O(segments), never O(chunks)): a real
// chunk store of --chunks tiny chunks in --segments segments, with --gaps outages on record; times
// memoryHorizon() (store stats + one gaps query) against store.stats() alone and against the
// narrow scan of every chunk's times (chunkTimes(), what an O(chunks) horizon would read).
//   node --import tsx bench/horizon-cost.ts [--chunks 200000] [--segments 1000] [--gaps 50] [--repeats 20]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ChunkStore } from '../memory/store/index.js';
import { memoryHorizon } from '../src/engine/memoryHorizon.js';

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '200000' },
    segments: { type: 'string', default: '1000' },
    gaps: { type: 'string', default: '50' },
    repeats: { type: 'string', default: '20' },
  },
});
const chunks = Number(values.chunks);
const segments = Number(values.segments);
const gaps = Number(values.gaps);
const repeats = Number(values.repeats);

// The smallest geometry: the rows and segment summaries are what the horizon reads, not payloads.
const geometry = { numLayers: 1, numKvHeads: 1, headDim: 4 };
const tokens = 1;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-horizon-cost-'));
try {
  const probe = ChunkStore.open({ dir: path.join(dir, 'probe'), geometry, fsync: 'none' });
  const chunk = (id: number) => ({
    chunkId: id,
    tStart: id,
    tEnd: id,
    wallTime: 0,
    tokenCount: tokens,
    ...geometry,
    keys: [new Float32Array(tokens * 4).fill(0.5)],
    values: [new Float32Array(tokens * 4).fill(0.25)],
    representatives: [new Float32Array(4).fill(1)],
  });
  const receipt = await probe.append(chunk(0));
  await probe.dispose();
  // Segments sized to hold chunks/segments records each (a segment file starts with a 32-byte header).
  const segmentBytes = 32 + receipt.length * Math.ceil(chunks / segments);
  const store = ChunkStore.open({ dir: path.join(dir, 'store'), geometry, fsync: { everyChunks: 4096 }, segmentBytes });
  const started = performance.now();
  // Appends join group commits of 4096 rows; each batch is awaited whole.
  for (let first = 0; first < chunks; first += 4096) {
    const batch: Array<Promise<unknown>> = [];
    for (let id = first; id < Math.min(chunks, first + 4096); id++) batch.push(store.append(chunk(id)));
    await store.flush();
    await Promise.all(batch);
  }
  for (let i = 0; i < gaps; i++) {
    const t = ((i + 0.5) * chunks) / gaps;
    store.recordGap({ tStart: t, tEnd: t + 0.5, reason: 'camera unreachable' });
  }
  const buildS = (performance.now() - started) / 1000;
  const time = (fn: () => unknown) => {
    fn();
    const ms: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      fn();
      ms.push(performance.now() - t0);
    }
    return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]!;
  };
  const horizonMs = time(() => memoryHorizon(store.stats(), (from, to, limit) => store.gaps({ from, to, limit })));
  const statsMs = time(() => store.stats());
  const gapsMs = time(() => store.gaps({ from: 0, to: chunks, limit: 257 }));
  const scanMs = time(() => store.chunkTimes());
  const h = memoryHorizon(store.stats(), (from, to, limit) => store.gaps({ from, to, limit }));
  console.log(`${chunks} chunks in ${store.stats().segments.length} segments, ${gaps} gaps (built in ${buildS.toFixed(1)} s)`);
  console.log(`horizon ${h.from}..${h.to}, ${h.spans.length} span(s), ${h.gaps.length} gaps listed`);
  console.log(`median of ${repeats}: memoryHorizon (stats + gaps query) ${horizonMs.toFixed(3)} ms; store.stats() alone ${statsMs.toFixed(3)} ms (it measures the folder: a stat per file); gaps query ${gapsMs.toFixed(3)} ms; scan of every chunk's times ${scanMs.toFixed(1)} ms`);
  await store.dispose();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
