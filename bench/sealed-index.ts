/**
 * The sealed index (retrieval/sealedBlock.ts) at stream scale: RAM per chunk, recall@r against
 * exact search, query latency and sealing throughput at 100k / 1M / 2.6M chunks (2.6M = 30 days
 * at 1 frame/s) of 192-d representatives (smolvlm2-256m: 3 KV heads x 64), camera-like scene data
 * (test/retrieval/syntheticFrames.ts, the data bench/index.ts measures HNSW on).
 *
 *   node --expose-gc --import tsx bench/sealed-index.ts [--count 100000,1000000,2600000] [--dim 192]
 *        [--queries 50] [--r 64] [--probe 32,96,256] [--data moving,static] [--block 2048] [--list 64]
 *
 * One layer is measured (every layer is searched the same way, on its own vectors); RAM per chunk
 * is reported per layer and for 30 layers. Chunks are added through StreamIndex.addChunk with
 * sealing on, as a stream adds them (each at stream time i s), waiting for each seal (the build
 * rate is then the sealing rate); the index grows across the sizes, so one run gives every row.
 * Exact top-r comes from brute force over the same vectors in the same run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { exactTopR, percentile, SCENE_MOTION, sealedBenchOptions, sealedBenchSettings } from './sealedBenchData.js';
import { StreamIndex } from '../retrieval/index.js';
import { syntheticFrames } from '../test/retrieval/syntheticFrames.js';

const { values } = parseArgs({ options: sealedBenchOptions({ count: '100000,1000000,2600000', probe: '32,96,256', data: 'moving,static' }) });
const { counts, dim, queryCount, r, probes, blockChunks, listChunks } = sealedBenchSettings(values);
const MiB = 2 ** 20;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) process.stderr.write('note: run with --expose-gc for stable RSS figures\n');

function rss(): number {
  gc?.();
  return process.memoryUsage().rss;
}

console.log(`# sealed index: ${counts.join(' / ')} chunks x ${dim}-d (one layer), block ${blockChunks}, list ${listChunks}, r=${r}, ${queryCount} queries, node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}`);
console.log('| data | chunks | blocks | index RAM (one layer) | B per chunk per layer | x30 layers | RSS growth | seal rate (chunks/s, one layer) | probe lists | recall@r mean | recall@r min | query ms median | p99 | exact ms median |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const kind of values.data!.split(',')) {
  const max = counts.at(-1)!;
  const frames = syntheticFrames({ count: max, dim, seed: 7, motion: SCENE_MOTION[kind] ?? 0.5 });
  const queries = Array.from({ length: queryCount }, (_, i) => frames.query(1000 + i));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-sealed-bench-'));
  const index = StreamIndex.create({ numLayers: 1, dim, sealing: { dir, blockChunks, listChunks } });
  const baseRss = rss();
  let added = 0;
  let buildMs = 0;
  try {
    for (const count of counts) {
      const started = performance.now();
      for (; added < count; added++) {
        index.addChunk(added, added, added + 1, [frames.vectors.subarray(added * dim, (added + 1) * dim)]);
        if (added % blockChunks === 0) await index.idle();
      }
      await index.idle();
      buildMs += performance.now() - started;
      const stats = index.stats();
      const recentBytes = stats.layers[0]!.size * (dim * 4 + 28);
      const ramBytes = stats.sealed!.ramBytes + recentBytes;
      const growth = rss() - baseRss;
      // Exact top-r over the first `count` rows, the reference.
      const { truth, ms: exactTimes } = exactTopR(frames.vectors, count, dim, queries, r);
      exactTimes.sort((a, b) => a - b);
      for (const probe of probes) {
        index.setProbeLists(probe);
        const recalls: number[] = [];
        const times: number[] = [];
        queries.forEach((q, i) => {
          const t = performance.now();
          const got = index.retrieve([q], r).chunkIds[0]!;
          times.push(performance.now() - t);
          recalls.push(got.filter((id) => truth[i]!.has(id)).length / r);
        });
        times.sort((a, b) => a - b);
        const mean = recalls.reduce((s, x) => s + x, 0) / recalls.length;
        console.log(
          `| ${kind} | ${count.toLocaleString('en-US')} | ${stats.sealed!.blocks} | ${(ramBytes / MiB).toFixed(1)} MiB | ${(ramBytes / count).toFixed(1)} | ${((ramBytes * 30) / MiB).toFixed(0)} MiB | ${(growth / MiB).toFixed(0)} MiB | ` +
            `${Math.round(count / (buildMs / 1000))} | ${probe} | ${mean.toFixed(3)} | ${Math.min(...recalls).toFixed(3)} | ${percentile(times, 50).toFixed(1)} | ${percentile(times, 99).toFixed(1)} | ${percentile(exactTimes, 50).toFixed(1)} |`,
        );
      }
    }
  } finally {
    await index.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
