/**
 * Chunk loading for a question (issue 7): ChunkStore.readLayers of ReKV's per-layer selections, r
 * chunks for each of 30 layers, at the engine's geometry (30 layers, 3 KV heads, head_dim 64, 77
 * tokens per frame, float32: one layer section is 118 KiB, a chunk 3.4 MiB), from a real store on
 * disk (files in the page cache, as for a live stream), in two access patterns in the same run:
 *
 * - clustered: the layers mostly agree (each layer's r chunks are the previous layer's with r/8
 *   swapped for others): ~300 distinct chunks for r = 64, many sections of one record adjacent, so
 *   few reads (like a question at 5 min of stream);
 * - scattered: every layer picks its own r chunks at random out of the whole store: ~1450 distinct
 *   chunks out of 3600 for r = 64, nearly one read per section (like 60 min).
 *
 * Both read the same bytes (r x 30 sections), so a ratio scattered / clustered above 1 is the cost
 * of reads, not of bytes. Beside them, raw baselines in the same run: one fs.readSync of the same
 * number of bytes from one segment file, fs.readSync of each scattered section on its own (the
 * system-call floor of the scattered pattern, no checksum), and CRC-32 over the same bytes.
 *
 *   node --import tsx bench/chunk-load.ts [--chunks 3600] [--repeats 7] [--rs 16,64] [--dir DIR]
 *                                         [--baseline PATH/memory/store/index.ts [--build current|baseline]]
 *                                         [--store DIR]
 *
 * --baseline loads a second implementation of the store (e.g. the previous commit's, exported with
 * `git archive HEAD memory kernels src package.json | tar -x -C DIR`, node_modules linked) and runs
 * it interleaved with this one on the same segment files and selections; --build says whose code
 * writes the store (the manifest's column order differs). Each repeat times, per implementation,
 * a "cold" selection (its own, sections not read since they were written) and a "warm" one (shared,
 * its sections read once just before): on this VM the first read of page-cache data costs more.
 * Writes ~12.8 GB for 3600 chunks (an hour at 1 frame/s) into a temp folder, removed at the end
 * (--store DIR: kept there and reused by the next run; one store at a time fits the page cache).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { mulberry32 } from '../kernels/sampling.js';
import * as current from '../memory/store/index.js';
import { payloadLayout, RECORD_HEADER_BYTES } from '../memory/store/recordFormat.js';
import { payloadCrc32 } from '../memory/store/checksum.js';
import { BufferPool } from '../src/model/bufferPool.js';
import { syntheticChunks } from '../test/helpers/syntheticStream.js';

type StoreModule = typeof current;

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '3600' },
    repeats: { type: 'string', default: '7' },
    rs: { type: 'string', default: '16,64' },
    dir: { type: 'string', default: os.tmpdir() },
    baseline: { type: 'string' },
    build: { type: 'string', default: 'current' },
    store: { type: 'string' },
  },
});
const N = Number(values.chunks);
const REPEATS = Number(values.repeats);
const RS = values.rs!.split(',').map(Number);
const GEOMETRY = { numLayers: 30, numKvHeads: 3, headDim: 64 };
const TOKENS = 77;
const L = GEOMETRY.numLayers;
const LAYER_BYTES = payloadLayout('float32', GEOMETRY, TOKENS).layerBytes;
const MB = 1e6;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type Pattern = 'clustered' | 'scattered';

/** Per-layer selections: layer -> r chunk ids. */
function selection(pattern: Pattern, r: number, seed: number): number[][] {
  const rand = mulberry32(seed);
  const pick = (taken: Set<number>): number => {
    for (;;) {
      const id = Math.floor(rand() * N);
      if (!taken.has(id)) return id;
    }
  };
  const layers: number[][] = [];
  if (pattern === 'scattered') {
    for (let l = 0; l < L; l++) {
      const s = new Set<number>();
      while (s.size < r) s.add(pick(s));
      layers.push([...s]);
    }
    return layers;
  }
  const swaps = Math.max(1, Math.round(r / 8));
  let cur: number[] = [];
  const first = new Set<number>();
  while (first.size < r) first.add(pick(first));
  cur = [...first];
  layers.push(cur);
  for (let l = 1; l < L; l++) {
    const next = [...cur];
    const inSet = new Set(next);
    for (let k = 0; k < swaps; k++) {
      const at = Math.floor(rand() * r);
      inSet.delete(next[at]!);
      const id = pick(inSet);
      next[at] = id;
      inSet.add(id);
    }
    layers.push(next);
    cur = next;
  }
  return layers;
}

/** chunk id -> sorted layers, as the engine's loadLayers asks. */
function wantedOf(layers: number[][]): Map<number, number[]> {
  const wanted = new Map<number, number[]>();
  layers.forEach((ids, l) => {
    for (const id of ids) {
      const ls = wanted.get(id) ?? [];
      ls.push(l);
      wanted.set(id, ls);
    }
  });
  return wanted;
}

/** Adjacent-layer runs within one record: the reads a section reader needs without gap merging. */
function sectionRuns(wanted: Map<number, number[]>): number {
  let runs = 0;
  for (const ls of wanted.values()) ls.forEach((l, i) => (runs += i === 0 || ls[i - 1] !== l - 1 ? 1 : 0));
  return runs;
}

async function build(store: ReturnType<StoreModule['ChunkStore']['open']>): Promise<void> {
  const next = syntheticChunks({ ...GEOMETRY, tokensPerChunk: TOKENS }, 7);
  const t0 = performance.now();
  for (let id = 0; id < N; id++) {
    await store.append({ chunkId: id, ...next(id) });
    if ((id + 1) % 600 === 0) process.stderr.write(`  wrote ${id + 1}/${N} chunks, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  await store.flush();
}

function segFile(dir: string, s: number): string {
  return path.join(dir, `seg-${String(s).padStart(6, '0')}.kvseg`);
}

async function main(): Promise<void> {
  fs.mkdirSync(values.dir!, { recursive: true });
  const keep = values.store !== undefined;
  const root = keep ? path.resolve(values.store!) : fs.mkdtempSync(path.join(values.dir!, 'vigil-chunk-load-'));
  const dir = path.join(root, 'store');
  const impls: Array<{ name: string; mod: StoreModule; dir: string }> = [{ name: 'this tree', mod: current, dir }];
  if (values.baseline) {
    const mod = (await import(pathToFileURL(path.resolve(values.baseline)).href)) as StoreModule;
    impls.unshift({ name: 'baseline', mod, dir: path.join(root, 'store-baseline') });
  }
  const cleanup = () => {
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    if (!fs.existsSync(path.join(dir, 'manifest.sqlite'))) {
      const builder = values.build === 'baseline' ? impls[0]!.mod : current;
      console.error(`building a store of ${N} chunks (${((N * L * LAYER_BYTES) / 1e9).toFixed(1)} GB) with ${values.build} code in ${dir}`);
      const tb = performance.now();
      const store = builder.ChunkStore.open({ dir, geometry: GEOMETRY, fsync: 'none', cacheBytes: 0 });
      try {
        await build(store);
      } finally {
        await store.dispose();
      }
      console.error(`  built in ${((performance.now() - tb) / 1000).toFixed(1)} s`);
    }
    // The baseline opens its own folder: the same segment files (hard links, so the same page
    // cache) and a copy of the manifest, so both stores stay open side by side.
    for (const impl of impls) {
      if (impl.dir === dir) continue;
      fs.rmSync(impl.dir, { recursive: true, force: true });
      fs.mkdirSync(impl.dir);
      for (const name of fs.readdirSync(dir)) {
        if (name.endsWith('.kvseg')) fs.linkSync(path.join(dir, name), path.join(impl.dir, name));
        else if (name.startsWith('manifest.sqlite')) fs.copyFileSync(path.join(dir, name), path.join(impl.dir, name));
      }
    }

    // Section locations for the raw baselines, straight from the manifest.
    const db = new Database(path.join(dir, 'manifest.sqlite'), { readonly: true });
    const rows = db.prepare('SELECT chunk_id AS id, segment_id AS segment, offset FROM chunks').all() as Array<{ id: number; segment: number; offset: number }>;
    db.close();
    if (rows.length !== N) throw new Error(`the store in ${dir} holds ${rows.length} chunks, not --chunks ${N}`);
    const where = new Map(rows.map((r) => [r.id, r]));
    const fds = new Map<number, number>();
    const fdOf = (s: number) => fds.get(s) ?? (fds.set(s, fs.openSync(segFile(dir, s), 'r')), fds.get(s)!);
    const sectionsOf = (wanted: Map<number, number[]>) => {
      const secs: Array<{ segment: number; at: number }> = [];
      for (const [id, ls] of wanted) for (const l of ls) secs.push({ segment: where.get(id)!.segment, at: where.get(id)!.offset + RECORD_HEADER_BYTES + l * LAYER_BYTES });
      return secs.sort((a, b) => a.segment - b.segment || a.at - b.at);
    };

    const pool = new BufferPool(1.5 * 2 ** 30);
    const rawBuf = Buffer.from(pool.take(RS.reduce((a, r) => Math.max(a, r * L * LAYER_BYTES), 0)));
    const readSections = (secs: Array<{ segment: number; at: number }>) => {
      secs.forEach((s, i) => fs.readSync(fdOf(s.segment), rawBuf, i * LAYER_BYTES, LAYER_BYTES, s.at));
    };
    const cases = RS.flatMap((r) => (['clustered', 'scattered'] as Pattern[]).map((pattern) => ({ r, pattern })));
    type Sample = { ms: number; reads: number; distinct: number; runs: number };
    const samples = new Map<string, Sample[]>();
    const raw = new Map<string, number[]>();
    const push = <T>(m: Map<string, T[]>, k: string, v: T) => m.set(k, [...(m.get(k) ?? []), v]);
    const stores = impls.map((impl) => impl.mod.ChunkStore.open({ dir: impl.dir, geometry: GEOMETRY, fsync: 'none' }));

    const timed = async (k: number, wanted: Map<number, number[]>, r: number): Promise<Sample> => {
      const store = stores[k]!;
      const before = store.stats().io;
      const t0 = performance.now();
      const got = await store.readLayers(wanted, pool);
      const ms = performance.now() - t0;
      const after = store.stats().io;
      if (got.failed.length > 0) throw new Error(`${impls[k]!.name}: ${got.failed.length} chunks failed: ${got.failed[0]!.message}`);
      let sections = 0;
      for (const c of got.chunks.values()) sections += c.layers.size;
      if (sections !== r * L) throw new Error(`${impls[k]!.name}: ${sections} sections, expected ${r * L}`);
      got.release();
      return { ms, reads: after.readCalls - before.readCalls, distinct: wanted.size, runs: sectionRuns(wanted) };
    };

    try {
      for (let rep = -1; rep < REPEATS; rep++) {
        // rep -1 is an untimed warm-up of every path; the implementations alternate who goes first.
        const order = impls.map((_, k) => k);
        if (rep % 2 !== 0) order.reverse();
        for (const { r, pattern } of cases) {
          const seed = 1000 * (rep + 2) + 10 * r + (pattern === 'scattered' ? 1 : 0);
          // Cold: each implementation its own fresh selection, sections not read since written.
          for (const k of order) {
            const s = await timed(k, wantedOf(selection(pattern, r, seed + 100_000 * (k + 1))), r);
            if (rep >= 0) push(samples, `cold|${k}|${r}|${pattern}`, s);
          }
          // Warm: one selection, its sections read once beforehand (page cache touched).
          const wanted = wantedOf(selection(pattern, r, seed));
          const secs = sectionsOf(wanted);
          readSections(secs);
          for (const k of order) {
            const s = await timed(k, wanted, r);
            if (rep >= 0) push(samples, `warm|${k}|${r}|${pattern}`, s);
          }
          if (pattern !== 'scattered') continue;
          const bytes = r * L * LAYER_BYTES;
          // Raw, warm: each section on its own (sorted), one read of as many bytes from one file, CRC-32.
          let t0 = performance.now();
          readSections(secs);
          const perSection = performance.now() - t0;
          const fd = fdOf(1);
          const one = () => {
            for (let done = 0; done < bytes; ) done += fs.readSync(fd, rawBuf, done, bytes - done, 32 + done);
          };
          one();
          t0 = performance.now();
          one();
          const oneRead = performance.now() - t0;
          t0 = performance.now();
          payloadCrc32(rawBuf.subarray(0, bytes));
          const crc = performance.now() - t0;
          if (rep >= 0) {
            push(raw, `${r}|one read`, oneRead);
            push(raw, `${r}|crc`, crc);
            push(raw, `${r}|sections`, perSection);
          }
        }
        if (rep >= 0) process.stderr.write(`  repeat ${rep + 1}/${REPEATS} done\n`);
      }
    } finally {
      for (const store of stores) await store.dispose();
      for (const fd of fds.values()) fs.closeSync(fd);
    }

    const stat = (xs: Sample[]) => ({ med: median(xs.map((x) => x.ms)), min: Math.min(...xs.map((x) => x.ms)) });
    console.log(`\nChunk loading (readLayers), ${N} chunks in the store (built by ${values.build} code), median of ${REPEATS} (min), ${os.cpus().length} CPUs`);
    console.log('warm: the selection\'s sections read once just before (page cache touched); cold: a fresh selection, not read since written\n');
    console.log('| implementation | r | pattern | sections (MB) | distinct chunks | read calls | **warm ms** | warm GB/s | cold ms | scattered / clustered, warm (cold) |');
    console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|');
    impls.forEach((impl, k) => {
      for (const r of RS) {
        const bytes = r * L * LAYER_BYTES;
        const med: Record<string, { warm: number; cold: number }> = {};
        for (const pattern of ['clustered', 'scattered'] as Pattern[]) {
          const warm = samples.get(`warm|${k}|${r}|${pattern}`)!;
          const cold = samples.get(`cold|${k}|${r}|${pattern}`)!;
          const w = stat(warm);
          const c = stat(cold);
          med[pattern] = { warm: w.med, cold: c.med };
          const ratio = pattern === 'scattered' ? `${(med.scattered!.warm / med.clustered!.warm).toFixed(2)} (${(med.scattered!.cold / med.clustered!.cold).toFixed(2)})` : '';
          console.log(
            `| ${impl.name} | ${r} | ${pattern} | ${r * L} (${(bytes / MB).toFixed(0)}) | ${median(warm.map((x) => x.distinct)).toFixed(0)} | ${median(warm.map((x) => x.reads)).toFixed(0)} | ` +
              `**${w.med.toFixed(1)}** (${w.min.toFixed(1)}) | ${(bytes / w.med / 1e6).toFixed(2)} | ${c.med.toFixed(1)} (${c.min.toFixed(1)}) | ${ratio} |`,
          );
        }
      }
    });
    console.log('\nRaw baselines (warm), same run:\n');
    console.log('| r | bytes (MB) | one fs.readSync ms | GB/s | fs.readSync per scattered section ms (reads) | CRC-32 ms | read + CRC ms |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of RS) {
      const bytes = r * L * LAYER_BYTES;
      const one = median(raw.get(`${r}|one read`)!);
      const crc = median(raw.get(`${r}|crc`)!);
      console.log(
        `| ${r} | ${(bytes / MB).toFixed(0)} | ${one.toFixed(1)} | ${(bytes / one / 1e6).toFixed(2)} | ${median(raw.get(`${r}|sections`)!).toFixed(1)} (${r * L}) | ${crc.toFixed(1)} | ${(one + crc).toFixed(1)} |`,
      );
    }
    console.log('');
    impls.forEach((impl, k) => {
      const line = RS.map((r) => {
        const s = median(samples.get(`warm|${k}|${r}|scattered`)!.map((x) => x.ms));
        return `r=${r}: scattered (warm) ${(s / (median(raw.get(`${r}|one read`)!) + median(raw.get(`${r}|crc`)!))).toFixed(2)}x one raw read + CRC`;
      }).join(', ');
      console.log(`- ${impl.name}: ${line}`);
    });
  } finally {
    cleanup();
  }
}

await main();
