/**
 * Replicated memory (issue 18): what one stream costs to replicate to a JetStream object store and
 * how far the replica lags, at probe-random-tiny and probe-random-smolvlm2-256m geometry. A real
 * nats-server (JetStream, file storage) on 127.0.0.1, a real ChunkStore (fsync every chunk, default
 * segment size unless --segment-bytes) fed random chunks at --fps of wall time for --seconds, a
 * StreamReplicator snapshotting every --interval s. Then a restore of the newest snapshot into a new
 * folder (every piece checked) and an open of the restored store.
 *
 *   node --import tsx bench/cluster-replication.ts [--seconds 30] [--fps 1] [--interval 5] [--geometry tiny,256m] [--dtype float32] [--segment-bytes N]
 *
 * Per geometry: ingested bytes/s (segment bytes the store wrote), sent bytes/s (pieces sent,
 * manifest backups and segments), their ratio, lag (the replicator's lagSec sampled every 250 ms:
 * mean and max), snapshot time (backup + upload, mean and max), restore time and bytes/s.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from 'nats';
import type { FrameChunk, KvStorageDtype } from '../memory/frameChunk.js';
import { ChunkStore } from '../memory/store/index.js';
import { meanOverTokens } from '../kernels/pool.js';
import { mulberry32 } from '../kernels/sampling.js';
import { restoreStream, StreamReplicator } from '../src/cluster/replication.js';
import { freePort } from '../test/helpers/freePort.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    fps: { type: 'string', default: '1' },
    interval: { type: 'string', default: '5' },
    geometry: { type: 'string', default: 'tiny,256m' },
    dtype: { type: 'string', default: 'float32' },
    'segment-bytes': { type: 'string' },
  },
});

/** The probes' KV geometry and tokens a frame (image tokens + the frame's 13 prompt tokens). */
const GEOMETRIES = {
  tiny: { name: 'probe-random-tiny', numLayers: 2, numKvHeads: 2, headDim: 16, tokens: 4 + 13 },
  '256m': { name: 'probe-random-smolvlm2-256m', numLayers: 30, numKvHeads: 3, headDim: 64, tokens: 64 + 13 },
} as const;

type Geometry = (typeof GEOMETRIES)[keyof typeof GEOMETRIES];

function chunk(g: Geometry, id: number, wallTime: number): FrameChunk {
  const { numLayers: L, numKvHeads: H, headDim: D, tokens: T } = g;
  const rand = mulberry32(id + 1);
  const fill = (): Float32Array => Float32Array.from({ length: H * T * D }, () => (rand() * 2 - 1) * 3);
  const keys = Array.from({ length: L }, fill);
  return { chunkId: id, tStart: id, tEnd: id + 1, wallTime, tokenCount: T, numLayers: L, numKvHeads: H, headDim: D, keys, values: Array.from({ length: L }, fill), representatives: keys.map((k) => meanOverTokens(k, H, T, D)) };
}


function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function max(xs: number[]): number {
  return xs.reduce((a, b) => Math.max(a, b), 0);
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(3);

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-replication-'));
const port = await freePort();
const server = spawn('/usr/sbin/nats-server', ['-js', '-sd', path.join(scratch, 'nats'), '-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
await new Promise<void>((resolve, reject) => {
  let log = '';
  server.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    if (log.includes('Server is ready')) resolve();
  });
  server.once('exit', (code) => reject(new Error(`nats-server exited (${code}): ${log}`)));
});
const nc = await connect({ servers: `nats://127.0.0.1:${port}` });
const bucket = await nc.jetstream().views.os('vigil-bench-replication');
const seconds = Number(values.seconds);
const fps = Number(values.fps);
console.log(`nats-server 127.0.0.1:${port}; ${seconds} s at ${fps} frame/s, snapshot every ${values.interval} s, ${values.dtype}, load ${os.loadavg()[0]!.toFixed(1)}`);

try {
  for (const key of values.geometry.split(',')) {
    const g = GEOMETRIES[key as keyof typeof GEOMETRIES];
    if (!g) throw new Error(`unknown geometry ${key}: tiny or 256m`);
    const dir = path.join(scratch, key);
    const store = ChunkStore.open({
      dir: path.join(dir, 'kv'),
      geometry: { numLayers: g.numLayers, numKvHeads: g.numKvHeads, headDim: g.headDim },
      dtype: values.dtype as KvStorageDtype,
      ...(values['segment-bytes'] ? { segmentBytes: Number(values['segment-bytes']) } : {}),
    });
    const replicator = new StreamReplicator({ bucket, streamId: `bench-${key}`, dir, intervalSec: Number(values.interval) }).start();
    const lags: number[] = [];
    const snapshotMs: number[] = [];
    let seen = 0;
    const sampler = setInterval(() => {
      const s = replicator.status();
      lags.push(s.lagSec);
      if (s.snapshots > seen) {
        seen = s.snapshots;
        snapshotMs.push(s.lastSnapshotMs);
      }
    }, 250);
    const started = Date.now();
    const frames = Math.round(seconds * fps);
    for (let i = 0; i < frames; i++) {
      const due = started + (i * 1000) / fps;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      await store.append(chunk(g, i, Date.now()));
    }
    const ingestSec = (Date.now() - started) / 1000;
    const written = store.stats().segments.reduce((n, s) => n + s.fileBytes, 0);
    const final = await replicator.snapshotNow();
    clearInterval(sampler);
    await replicator.dispose();
    await store.dispose();
    const restored = path.join(scratch, `${key}-restored`);
    const report = await restoreStream(bucket, `bench-${key}`, restored);
    const opened = performance.now();
    const copy = ChunkStore.open({ dir: path.join(restored, 'kv'), create: false });
    const openMs = performance.now() - opened;
    const chunks = copy.stats().chunkCount;
    await copy.dispose();
    const manifestBytes = fs.statSync(path.join(dir, 'kv', 'manifest.sqlite')).size;
    console.log(
      `${g.name}: ${frames} chunks (${mb(written / frames)} MB each), ingested ${mb(written / ingestSec)} MB/s; sent ${mb(final.bytesUploaded)} MB = ${mb(final.bytesUploaded / ingestSec)} MB/s ` +
        `(${(final.bytesUploaded / written).toFixed(2)}x the segment bytes; manifest ${mb(manifestBytes)} MB); ${final.snapshots} snapshots, ` +
        `snapshot ${mean(snapshotMs).toFixed(0)} ms mean, ${max(snapshotMs).toFixed(0)} max; lag ${mean(lags).toFixed(2)} s mean, ${max(lags).toFixed(2)} s max; ` +
        `restore ${report.ms.toFixed(0)} ms for ${mb(report.bytes)} MB (${mb(report.bytes / (report.ms / 1000))} MB/s), open ${openMs.toFixed(0)} ms, ${chunks} chunks`,
    );
  }
} finally {
  await nc.close();
  server.kill('SIGTERM');
  fs.rmSync(scratch, { recursive: true, force: true });
}
