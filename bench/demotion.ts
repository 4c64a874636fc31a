/**
 * Demotion throughput (issue 15 item 2): ChunkStore.demoteSegment() rewriting whole float32
 * segments as kivi4 at smolvlm2-256m geometry (30 layers, 3 KV heads, head_dim 64, 77 tokens a
 * frame), everything included: read, record check, decode, quantize, checksums, write, fsync of the
 * new file and folder, the manifest transaction, the old file's unlink. Against ingest at 1 frame/s.
 * Also the longest the event loop was held while demotion ran (its slices), next to one append's
 * synchronous part (encode + write) and a budget retention pass.
 *
 *   node --import tsx bench/demotion.ts [--chunks 96] [--per-segment 16] [--tokens 77] [--dir /tmp] [--target kivi4|archive]
 *
 * --target archive: every chunk carries a 2.8 KiB still (a scene frame's WebP at 512x512, the size
 * docs/PERFORMANCE.md measured) and segments are rewritten as archive records (the still alone).
 *
 * With --budget BYTES: stream time kept under that budget, appending --chunks chunks (1 s of stream
 * time each) at --rate chunks/s of wall time (default 0: as fast as the store takes them), once
 * deleting only (retention.demote false), once demoting to kivi4 only (archive off) and once with
 * every tier (kivi4 and the archive, chunks with stills; keepFullSec --keep-full, default 60):
 *   node --import tsx bench/demotion.ts --budget 400MB --chunks 600 --keep-full 60 [--rate 20]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { FrameChunk } from '../memory/frameChunk.js';
import { ChunkStore } from '../memory/store/index.js';
import { chunkRecordBytes, planBudget } from '../memory/store/budget.js';
import { parseByteSize } from '../common/byteSize.js';
import { meanOverTokens } from '../kernels/pool.js';
import { mulberry32 } from '../kernels/sampling.js';

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '96' },
    'per-segment': { type: 'string', default: '16' },
    tokens: { type: 'string', default: '77' },
    dir: { type: 'string', default: os.tmpdir() },
    budget: { type: 'string' },
    'keep-full': { type: 'string', default: '60' },
    rate: { type: 'string', default: '0' },
    target: { type: 'string', default: 'kivi4' },
  },
});
const target = values.target === 'archive' ? 'archive' : 'kivi4';
/** A scene frame's still at 512x512 (WebP q75: 2.8 KiB, docs/PERFORMANCE.md "Memory tiers"): opaque bytes to the store. */
const STILL = new Uint8Array(2867).map((_, i) => (i * 131) & 0xff);
const N = Number(values.chunks);
const perSegment = Number(values['per-segment']);
const T = Number(values.tokens);
const geometry = { numLayers: 30, numKvHeads: 3, headDim: 64 };
const { numLayers: L, numKvHeads: H, headDim: D } = geometry;

function chunk(id: number): FrameChunk {
  const rand = mulberry32(id + 1);
  const fill = () => Float32Array.from({ length: H * T * D }, () => (rand() * 2 - 1) * 3);
  const keys = Array.from({ length: L }, fill);
  return {
    chunkId: id, tStart: id, tEnd: id + 1, wallTime: 1.7e12 + id * 1000, tokenCount: T, numLayers: L, numKvHeads: H, headDim: D,
    keys, values: Array.from({ length: L }, fill), representatives: keys.map((k) => meanOverTokens(k, H, T, D)),
  };
}

if (values.budget !== undefined) {
  await budgetRuns(parseByteSize(values.budget));
  process.exit(0);
}

/** Kept stream time under a budget, deleting only vs demoting. */
async function budgetRuns(budget: number): Promise<void> {
  const rate = Number(values.rate);
  const keepFullSec = Number(values['keep-full']);
  for (const [demote, archive] of [[false, false], [true, false], [true, true]] as const) {
    const dir = fs.mkdtempSync(path.join(values.dir!, 'vigil-demotion-budget-'));
    try {
      const plan = planBudget(budget, { geometry, dtype: 'float32', tokensPerFrame: T, windowFrames: 16 });
      const store = ChunkStore.open({ dir, geometry, dtype: 'float32', segmentBytes: plan.segmentBytes, cacheBytes: 0, retention: { budgetBytes: budget, demote, keepFullSec, archive } });
      let worst = 0;
      const t0 = performance.now();
      for (let id = 0; id < N; id++) {
        if (rate > 0) {
          const due = t0 + (id * 1000) / rate;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        await store.append(archive ? { ...chunk(id), still: STILL } : chunk(id));
        // Paced as StreamSession.addFrame is: a writer faster than demotion waits for it.
        await store.demotionBackpressure();
        worst = Math.max(worst, store.diskBytes());
      }
      const wallS = (performance.now() - t0) / 1000;
      await store.demotionIdle();
      const st = store.stats();
      const spans = store.tierSpans().map((x) => `${x.dtype} ${x.tStart}-${x.tEnd} s (${x.chunks})`).join(', ');
      console.log(
        `budget ${budget} B, ${N} chunks at ${rate > 0 ? `${rate}/s` : 'full speed'} (${(N / wallS).toFixed(1)}/s achieved), demote ${demote}, archive ${archive}: ` +
          `kept ${st.tEnd! - st.tStart!} s of stream (${st.chunkCount} chunks); worst folder ${worst} B (${((100 * worst) / budget).toFixed(1)} %; limit budget + segment ${budget + plan.segmentBytes}); ${spans}`,
      );
      await store.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

const dir = fs.mkdtempSync(path.join(values.dir!, 'vigil-demotion-'));
try {
  const f32 = chunkRecordBytes(geometry, 'float32', T);
  const k4 = chunkRecordBytes(geometry, 'kivi4', T);
  const store = ChunkStore.open({ dir, geometry, dtype: 'float32', fsync: 'every-chunk', segmentBytes: 32 + perSegment * (f32 + STILL.length + 8), cacheBytes: 0 });
  let appendSyncMs = 0;
  for (let id = 0; id < N; id++) {
    const c = target === 'archive' ? { ...chunk(id), still: STILL } : chunk(id);
    const t0 = performance.now();
    const p = store.append(c);
    appendSyncMs = Math.max(appendSyncMs, performance.now() - t0);
    await p;
  }
  const old = store.stats().segments.slice(0, -1).map((s) => s.segment); // the newest is being appended to
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const t0 = performance.now();
  let chunks = 0;
  for (const s of old) chunks += (await store.demoteSegment(s, target))!.chunks;
  const ms = performance.now() - t0;
  lag.disable();
  const v = await store.verify();
  await store.dispose();
  const rate = chunks / (ms / 1000);
  console.log(`geometry 30x3x64, ${T} tokens: record float32 ${f32} B, kivi4 ${k4} B (${(k4 / f32).toFixed(3)}x)`);
  console.log(`target ${target}: demoted ${chunks} chunks in ${old.length} segments of ${perSegment}: ${ms.toFixed(0)} ms, ${rate.toFixed(1)} chunks/s = ${rate.toFixed(1)}x ingest at 1 frame/s (verify: ${v.checkedChunks} checked, ${v.damaged.length} damaged)`);
  console.log(`event loop held: max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms during demotion; one append's synchronous part (encode + write) max ${appendSyncMs.toFixed(1)} ms`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
