/**
 * Where a sealed-index search spends its time, per layer: centroid scoring, choosing the lists,
 * reading them, scoring their members, ranking, and the hits' times (SealedTier.profile), plus
 * recall@r against exact search and the whole retrieve() latency. The index is built once per
 * size into --keep (reused by later runs, so code changes are measured on the same blocks):
 *
 *   node --expose-gc --max-old-space-size=8192 --import tsx bench/sealed-profile.ts
 *        --keep /tmp/vigil-sealed-prof [--count 1000000,2600000] [--data moving] [--queries 50]
 *        [--probe 96] [--rounds 3] [--cold]
 *
 * Same data and build as bench/sealed-index.ts (192-d, block 2,048, lists of ~64, frame i at i s);
 * one layer (a question searches each of its layers the same way). `--cold` counts the first round
 * too (evict the block files from the page cache before, e.g. `dd if=F iflag=nocache count=0` for
 * each file, to time reads from disk).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { exactTopR, percentile, SCENE_MOTION, sealedBenchOptions, sealedBenchSettings } from './sealedBenchData.js';
import { StreamIndex } from '../retrieval/index.js';
import { emptyProfile, type SealedProfile } from '../retrieval/sealedTier.js';
import { syntheticFrames } from '../test/retrieval/syntheticFrames.js';

const { values } = parseArgs({
  options: {
    ...sealedBenchOptions({ count: '1000000,2600000', probe: '96', data: 'moving' }),
    keep: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    cold: { type: 'boolean', default: false },
  },
});
if (!values.keep) throw new Error('--keep DIR is required (the built indexes live there)');
const keep = values.keep;
const { counts, dim, queryCount, r, probes, blockChunks, listChunks } = sealedBenchSettings(values);
const rounds = Number(values.rounds);

console.log(`# sealed profile: ${counts.join(' / ')} chunks x ${dim}-d, block ${blockChunks}, list ${listChunks}, r=${r}, ${queryCount} queries x ${rounds} rounds, node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}`);
for (const kind of values.data!.split(',')) {
  const max = counts.at(-1)!;
  const frames = syntheticFrames({ count: max, dim, seed: 7, motion: SCENE_MOTION[kind] ?? 0.5 });
  const queries = Array.from({ length: queryCount }, (_, i) => frames.query(1000 + i));
  const root = path.join(keep, `${kind}-${dim}-${blockChunks}-${listChunks}`);
  const blocks = path.join(root, 'blocks');
  const folder = (count: number): string => path.join(root, `index-${count}`);
  if (!counts.every((c) => fs.existsSync(path.join(folder(c), 'index.json')))) {
    fs.rmSync(root, { recursive: true, force: true });
    fs.mkdirSync(root, { recursive: true });
    const index = StreamIndex.create({ numLayers: 1, dim, sealing: { dir: blocks, blockChunks, listChunks } });
    let added = 0;
    const started = performance.now();
    for (const count of counts) {
      for (; added < count; added++) {
        index.addChunk(added, added, added + 1, [frames.vectors.subarray(added * dim, (added + 1) * dim)]);
        if (added % blockChunks === 0) await index.idle();
      }
      await index.idle();
      await index.save(folder(count));
      console.log(`# built ${count} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
    await index.dispose();
  }
  for (const count of counts) {
    const index = await StreamIndex.load(folder(count), { sealing: { dir: blocks, readOnly: true, blockChunks, listChunks } });
    const stats = index.stats();
    const { truth } = exactTopR(frames.vectors, count, dim, queries, r);
    for (const probe of probes) {
      index.setProbeLists(probe);
      const times: number[] = [];
      const recalls: number[] = [];
      let profile: SealedProfile = emptyProfile();
      for (let round = 0; round < rounds; round++) {
        // Round 0 warms caches (page cache, open files, JIT) and is not counted, unless --cold.
        if (round > 0 || values.cold) profile = emptyProfile();
        index.profileSealed(profile);
        queries.forEach((q, i) => {
          const t = performance.now();
          const got = index.retrieve([q], r).chunkIds[0]!;
          if (round > 0 || values.cold) times.push(performance.now() - t);
          if (round === rounds - 1) recalls.push(got.filter((id) => truth[i]!.has(id)).length / r);
        });
        index.profileSealed(undefined);
      }
      times.sort((a, b) => a - b);
      const per = (ms: number): string => (ms / profile.searches).toFixed(2);
      const mean = recalls.reduce((s, x) => s + x, 0) / recalls.length;
      console.log(
        `${kind} ${count} blocks=${stats.sealed!.blocks} probe=${probe} recall@${r}=${mean.toFixed(3)} min=${Math.min(...recalls).toFixed(3)} ` +
          `retrieve ms median=${percentile(times, 50).toFixed(2)} p90=${percentile(times, 90).toFixed(2)} | per search ms: centroids ${per(profile.centroidMs)} order ${per(profile.orderMs)} ` +
          `reads ${per(profile.readMs)} members ${per(profile.scoreMs)} merge ${per(profile.mergeMs)} times ${per(profile.timesMs)} (lists ${(profile.listsRead / profile.searches).toFixed(0)})`,
      );
    }
    await index.dispose();
  }
}
