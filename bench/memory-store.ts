/**
 * Disk tier throughput against the raw disk, side by side in one run (design.md section 7):
 * - offload: ChunkStore.append of N chunks (encode + checksum + write + fsync policy + manifest commit)
 *   vs a plain fs.writeSync (+ fdatasync at the same policy) of the same number of bytes;
 * - reload: readChunks of r random chunks with the RAM cache dropped (read + checksum + decode to
 *   float32) vs fs.readSync of the same byte ranges.
 * Geometry: smolvlm2-256m (30 layers, 3 KV heads, head_dim 64), 74 tokens per chunk (64 image + ~10
 * prompt), random data.
 *
 *   node --import tsx bench/memory-store.ts [--chunks 96] [--fsync every-chunk|none] [--dtypes float32,float16,int8]
 *                                          [--rounds 3] [--dir /tmp]
 *
 * Reloads are timed warm (the bytes in the OS page cache, as for recently offloaded frames) and cold
 * (the segment files evicted from the page cache with `dd iflag=nocache count=0` before each side).
 * Warm, raw reading is a memory copy; the store also allocates the output, checksums every byte and
 * converts dtypes, so the warm ratio is CPU-bound; cold, both wait for the disk.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { FrameChunk, KvStorageDtype } from '../memory/frameChunk.js';
import { ChunkStore, checksumImplementation, type AppendReceipt, type FsyncPolicy } from '../memory/store/index.js';
import { meanOverTokens } from '../kernels/pool.js';
import { mulberry32 } from '../kernels/sampling.js';

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '96' },
    fsync: { type: 'string', default: 'every-chunk' },
    dtypes: { type: 'string', default: 'float32,float16,int8' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string', default: os.tmpdir() },
  },
});
const N = Number(values.chunks);
const policy = values.fsync as FsyncPolicy;
const dtypes = values.dtypes!.split(',') as KvStorageDtype[];
const rounds = Number(values.rounds);
const GEOMETRY = { numLayers: 30, numKvHeads: 3, headDim: 64 };
const TOKENS = 74;
const RS = [16, 64].filter((r) => r <= N);
const MiB = 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

// Roughly normal KV values (sum of 4 uniforms), so float16/int8 errors are typical, not best-case.
function randomChunk(id: number, seed: number): FrameChunk {
  const rand = mulberry32(seed);
  const { numLayers: L, numKvHeads: H, headDim: D } = GEOMETRY;
  const n = H * TOKENS * D;
  const tensor = (): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rand() + rand() + rand() + rand() - 2;
    return a;
  };
  const keys = Array.from({ length: L }, tensor);
  const values = Array.from({ length: L }, tensor);
  return {
    chunkId: id,
    tStart: id * 2,
    tEnd: id * 2 + 2,
    wallTime: Date.now(),
    tokenCount: TOKENS,
    numLayers: L,
    numKvHeads: H,
    headDim: D,
    keys,
    values,
    representatives: keys.map((k) => meanOverTokens(k, H, TOKENS, D)),
  };
}

// A pool of distinct chunks reused under new ids: generating 852k random floats per chunk would
// otherwise dominate the setup time (the store encodes each append afresh either way).
const POOL = Array.from({ length: 8 }, (_, i) => randomChunk(i, 1000 + i));
const chunkFor = (id: number): FrameChunk => ({ ...POOL[id % POOL.length]!, chunkId: id, tStart: id * 2, tEnd: id * 2 + 2 });

function rawWrite(file: string, lengths: number[]): number {
  const max = Math.max(...lengths);
  const buf = Buffer.allocUnsafeSlow(max);
  const rand = mulberry32(7);
  for (let i = 0; i < max; i += 4) buf.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
  const fd = fs.openSync(file, 'wx');
  const t0 = performance.now();
  let pos = 0;
  for (const len of lengths) {
    let done = 0;
    while (done < len) done += fs.writeSync(fd, buf, done, len - done, pos + done);
    pos += len;
    if (policy !== 'none') fs.fdatasyncSync(fd);
  }
  const ms = performance.now() - t0;
  fs.closeSync(fd);
  return ms;
}

/**
 * fs.readSync of the records' byte ranges. 'reuse': into one buffer reused for every record (the
 * I/O floor); 'fresh': into a new buffer per record, as any loader that hands data out must.
 */
function rawRead(dir: string, receipts: AppendReceipt[], mode: 'reuse' | 'fresh'): number {
  const fds = new Map<number, number>();
  const shared = Buffer.allocUnsafeSlow(Math.max(...receipts.map((r) => r.length)));
  const keep: Buffer[] = [];
  const t0 = performance.now();
  for (const r of receipts) {
    let fd = fds.get(r.segment);
    if (fd === undefined) {
      fd = fs.openSync(segmentPath(dir, r.segment), 'r');
      fds.set(r.segment, fd);
    }
    const buf = mode === 'reuse' ? shared : Buffer.allocUnsafeSlow(r.length);
    if (mode === 'fresh') keep.push(buf);
    let done = 0;
    while (done < r.length) done += fs.readSync(fd, buf, done, r.length - done, r.offset + done);
  }
  const ms = performance.now() - t0;
  for (const fd of fds.values()) fs.closeSync(fd);
  return ms;
}

function segmentPath(dir: string, segment: number): string {
  return path.join(dir, `seg-${String(segment).padStart(6, '0')}.kvseg`);
}

/** Drops the files' pages from the OS cache (coreutils dd: posix_fadvise DONTNEED; no root needed). */
function evict(dir: string): void {
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.kvseg'))) {
    const r = spawnSync('dd', [`if=${path.join(dir, f)}`, 'iflag=nocache', 'count=0', 'status=none']);
    if (r.status !== 0) throw new Error(`dd could not evict ${f}: ${r.stderr}`);
  }
}

function pick(r: number, seed: number): number[] {
  const rand = mulberry32(seed);
  const ids = new Set<number>();
  while (ids.size < r) ids.add(Math.floor(rand() * N));
  return [...ids].sort((a, b) => a - b); // retrieval hands back chunks in time order
}

/** Max abs error and RMS error / RMS value of a decoded chunk against its source. */
function errors(got: FrameChunk, want: FrameChunk): { maxAbs: number; relRms: number } {
  let maxAbs = 0;
  let se = 0;
  let ss = 0;
  for (const k of ['keys', 'values'] as const) {
    for (let l = 0; l < want[k].length; l++) {
      const a = got[k][l]!;
      const b = want[k][l]!;
      for (let i = 0; i < b.length; i++) {
        const e = Math.abs(a[i]! - b[i]!);
        if (e > maxAbs) maxAbs = e;
        se += e * e;
        ss += b[i]! * b[i]!;
      }
    }
  }
  return { maxAbs, relRms: Math.sqrt(se / ss) };
}

interface WriteRow {
  dtype: KvStorageDtype;
  recordMiB: number;
  storeMs: number;
  rawMs: number;
  bytes: number;
  err: { maxAbs: number; relRms: number };
}
interface ReloadRow {
  dtype: KvStorageDtype;
  r: number;
  mib: number;
  warmStore: number;
  warmRawReuse: number;
  warmRawFresh: number;
  coldStore: number;
  coldRaw: number;
}

const FLOAT32_CHUNK_BYTES = 2 * GEOMETRY.numLayers * GEOMETRY.numKvHeads * TOKENS * GEOMETRY.headDim * 4;
const root = fs.mkdtempSync(path.join(values.dir!, 'vigil-bench-store-'));
const writes: WriteRow[] = [];
const reloads: ReloadRow[] = [];
try {
  for (const dtype of dtypes) {
    const storeMs: number[] = [];
    const rawMs: number[] = [];
    const rl = new Map<number, Record<'ws' | 'wr' | 'wf' | 'cs' | 'cr', number[]>>(
      RS.map((r) => [r, { ws: [], wr: [], wf: [], cs: [], cr: [] }]),
    );
    const mib = new Map<number, number>();
    let bytes = 0;
    let err = { maxAbs: 0, relRms: 0 };
    for (let round = 0; round < rounds; round++) {
      const dir = path.join(root, `${dtype}-${round}`);
      const store = ChunkStore.open({ dir, geometry: GEOMETRY, dtype, fsync: policy });
      const receipts: AppendReceipt[] = [];
      const t0 = performance.now();
      for (let id = 0; id < N; id++) receipts.push(await store.append(chunkFor(id)));
      await store.flush();
      storeMs.push(performance.now() - t0);
      bytes = receipts.reduce((s, r) => s + r.length, 0);
      // Same bytes, same disk, same policy, right after.
      const rawFile = path.join(root, `raw-${dtype}-${round}`);
      rawMs.push(rawWrite(rawFile, receipts.map((r) => r.length)));
      fs.rmSync(rawFile);

      for (const r of RS) {
        const q = rl.get(r)!;
        for (let rep = 0; rep < 3; rep++) {
          const ids = pick(r, round * 100 + rep);
          const sub = ids.map((id) => receipts[id]!);
          mib.set(r, sub.reduce((s, x) => s + x.length, 0) / MiB);
          // Warm: everything in the OS page cache (recently written or read).
          rawRead(dir, sub, 'reuse');
          store.clearCache();
          let s0 = performance.now();
          const got = await store.readChunks(ids);
          q.ws.push(performance.now() - s0);
          if (got.failed.length > 0 || got.chunks.size !== r) throw new Error(`reload failed: ${JSON.stringify(got.failed)}`);
          if (round === 0 && rep === 0 && r === RS[0]) err = errors(got.chunks.get(ids[0]!)!, chunkFor(ids[0]!));
          q.wr.push(rawRead(dir, sub, 'reuse'));
          q.wf.push(rawRead(dir, sub, 'fresh'));
          // Cold: the segment files dropped from the page cache before each side.
          store.clearCache();
          evict(dir);
          s0 = performance.now();
          await store.readChunks(ids);
          q.cs.push(performance.now() - s0);
          evict(dir);
          q.cr.push(rawRead(dir, sub, 'reuse'));
        }
      }
      await store.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    writes.push({ dtype, recordMiB: bytes / N / MiB, storeMs: median(storeMs), rawMs: median(rawMs), bytes, err });
    for (const r of RS) {
      const q = rl.get(r)!;
      reloads.push({
        dtype,
        r,
        mib: mib.get(r)!,
        warmStore: median(q.ws),
        warmRawReuse: median(q.wr),
        warmRawFresh: median(q.wf),
        coldStore: median(q.cs),
        coldRaw: median(q.cr),
      });
    }
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}

const f1 = (x: number): string => x.toFixed(1);
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}`;
console.log(
  `memory store bench: ${N} chunks/round, ${rounds} rounds (medians), fsync ${JSON.stringify(policy)}, ` +
    `geometry 30x3x64, ${TOKENS} tokens (float32 KV ${(FLOAT32_CHUNK_BYTES / MiB).toFixed(2)} MiB/chunk), ` +
    `checksum ${checksumImplementation}, dir ${values.dir}, load avg ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} CPUs`,
);
console.log('\nOffload (append, awaited one by one, vs fs.writeSync of the same record sizes at the same fsync policy)');
console.log('| dtype | MiB/chunk on disk | store MiB/s | raw MiB/s | store/raw (disk bytes) | store KV MiB/s (float32-equivalent) | KV/raw | max abs err | rel RMS err |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const w of writes) {
  const store = w.bytes / MiB / (w.storeMs / 1000);
  const raw = w.bytes / MiB / (w.rawMs / 1000);
  const kv = (N * FLOAT32_CHUNK_BYTES) / MiB / (w.storeMs / 1000);
  console.log(
    `| ${w.dtype} | ${w.recordMiB.toFixed(2)} | ${store.toFixed(0)} | ${raw.toFixed(0)} | ${ratio(store, raw)} | ` +
      `${kv.toFixed(0)} | ${ratio(kv, raw)} | ${w.err.maxAbs.toExponential(2)} | ${w.err.relRms.toExponential(2)} |`,
  );
}
console.log('\nReload (readChunks of r random chunks, RAM cache dropped, checksum + decode to float32, vs fs.readSync of the same bytes), ms');
console.log('| dtype | r | MiB | warm store | warm raw (reused buf) | ratio | warm raw (fresh bufs) | ratio | cold store | cold raw | ratio |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const q of reloads) {
  console.log(
    `| ${q.dtype} | ${q.r} | ${f1(q.mib)} | ${f1(q.warmStore)} | ${f1(q.warmRawReuse)} | ${ratio(q.warmStore, q.warmRawReuse)} | ` +
      `${f1(q.warmRawFresh)} | ${ratio(q.warmStore, q.warmRawFresh)} | ${f1(q.coldStore)} | ${f1(q.coldRaw)} | ${ratio(q.coldStore, q.coldRaw)} |`,
  );
}
console.log('\ntargets (design.md section 7): write store/raw >= 0.50; reload r=64 store/raw <= 2');
