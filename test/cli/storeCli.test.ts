/**
 * `vigil store stats / verify / rebuild-index / repair` on a real stream memory written by
 * StreamSession: a clean store verifies (exit 0), a flipped payload byte is found (exit 1, chunk
 * named), a deleted index is reported and rebuilt, a row the index refuses is skipped and listed.
 * test/cli/storeRepair.test.ts covers repair of damaged chunks.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { mulberry32 } from '../../kernels/sampling.js';
import { streamDir } from '../../src/engine/dataLayout.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

describe('vigil store', () => {
  let data: string;
  before(async () => {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-store-cli-'));
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
    const session = await StreamSession.open(model, { dir: streamDir(data, 'cam-1'), windowFrames: 2 });
    const random = mulberry32(3);
    for (let i = 0; i < 8; i++) {
      const pixelValues = Float32Array.from({ length: 3 * 64 * 64 }, () => random() * 2 - 1);
      await session.addFrame({ pixelValues, count: 1, height: 64, width: 64, rows: 0, cols: 0 }, i * 2);
    }
    await session.dispose();
    await model.dispose();
  });
  after(() => fs.rmSync(data, { recursive: true, force: true }));

  it('stats reports chunks, bytes and time span', async () => {
    // Read-only runs, side by side.
    const [run, human] = await Promise.all([runVigil(['store', 'stats', '--data', data, '--json']), runVigil(['store', 'stats', '--data', data])]);
    assert.equal(run.code, 0, run.stderr);
    const [stats] = JSON.parse(run.stdout) as Array<{ stream: string; chunkCount: number; tStart: number; tEnd: number; bytesByDtype: { float32: number } }>;
    assert.equal(stats!.stream, 'cam-1');
    assert.equal(stats!.chunkCount, 8);
    assert.equal(stats!.tStart, 0);
    assert.equal(stats!.tEnd, 14);
    assert.ok(stats!.bytesByDtype.float32 > 0);
    assert.match(human.stdout, /cam-1: 8 chunks \(0\.\.7\)/);
  });

  it('verify passes on a clean store, finds a flipped byte (exit 1), and checks the index', async () => {
    const clean = await runVigil(['store', 'verify', '--data', data]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /8 chunks checked, 0 damaged; index consistent/);

    const kv = path.join(streamDir(data, 'cam-1'), 'kv');
    const segment = fs.readdirSync(kv).find((f) => f.endsWith('.kvseg'))!;
    const file = path.join(kv, segment);
    const bytes = fs.readFileSync(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    fs.writeFileSync(file, bytes);
    const damaged = await runVigil(['store', 'verify', '--data', data, '--json']);
    assert.equal(damaged.code, 1);
    const [report] = JSON.parse(damaged.stdout) as Array<{ damaged: Array<{ chunkId: number; reason: string }> }>;
    assert.equal(report!.damaged.length, 1);
    assert.equal(report!.damaged[0]!.reason, 'checksum');
    bytes[at] = bytes[at]! ^ 0xff;
    fs.writeFileSync(file, bytes);
  });

  it('rebuild-index restores a deleted index', async () => {
    fs.rmSync(path.join(streamDir(data, 'cam-1'), 'index'), { recursive: true });
    const missing = await runVigil(['store', 'verify', '--data', data]);
    assert.match(missing.stdout, /no saved index/);
    const rebuilt = await runVigil(['store', 'rebuild-index', '--data', data, '--stream', 'cam-1']);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.match(rebuilt.stdout, /cam-1: index rebuilt over 8 chunks/);
    const after = await runVigil(['store', 'verify', '--data', data]);
    assert.match(after.stdout, /index consistent/);
  });

  it('a row with a non-finite representative: rebuild-index and repair skip and list it, verify names it', async () => {
    // Written behind the store's back (the store now refuses such chunks): row 3's layer 0 gets a NaN.
    const db = new Database(path.join(streamDir(data, 'cam-1'), 'kv', 'manifest.sqlite'));
    try {
      const row = db.prepare('SELECT representatives FROM chunks WHERE chunk_id = 3').get() as { representatives: Buffer };
      const blob = Buffer.from(row.representatives);
      // Layer 0's scale (an int8 row keeps its per-layer scales first, memory/store/representatives.ts): the whole layer decodes to NaN.
      blob.writeFloatLE(NaN, 0);
      assert.equal(db.prepare('UPDATE chunks SET representatives = ? WHERE chunk_id = 3').run(blob).changes, 1);
    } finally {
      db.close();
    }
    const rebuilt = await runVigil(['store', 'rebuild-index', '--data', data, '--stream', 'cam-1', '--json']);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    const [r] = JSON.parse(rebuilt.stdout) as Array<{ chunks: number; skipped: Array<{ chunkId: number; reason: string }> }>;
    assert.equal(r!.chunks, 7);
    assert.deepEqual(r!.skipped.map((k) => k.chunkId), [3]);
    assert.match(r!.skipped[0]!.reason, /chunk 3, layer 0\[0\] is NaN/);
    const human = await runVigil(['store', 'rebuild-index', '--data', data, '--stream', 'cam-1']);
    assert.match(human.stdout, /cam-1: index rebuilt over 7 chunks in [0-9.]+ s; 1 unindexable rows skipped \(3: .*NaN\)/);

    const verify = await runVigil(['store', 'verify', '--data', data, '--stream', 'cam-1']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /8 chunks checked, 0 damaged; index consistent; 1 unindexable rows skipped \(3: /);

    // An unreadable index is rebuilt by repair, with the same report.
    fs.writeFileSync(path.join(streamDir(data, 'cam-1'), 'index', 'index.json'), '{');
    const repair = await runVigil(['store', 'repair', '--data', data, '--stream', 'cam-1', '--json']);
    assert.equal(repair.code, 0, repair.stderr);
    const [rep] = JSON.parse(repair.stdout) as Array<{ dropped: unknown[]; index: { rebuilt: boolean; entriesAdded: number; rebuildReason: string; skipped: Array<{ chunkId: number }> } }>;
    assert.deepEqual(rep!.dropped, []);
    assert.deepEqual([rep!.index.rebuilt, rep!.index.entriesAdded, rep!.index.skipped.map((k) => k.chunkId)], [true, 7, [3]]);
    assert.match(rep!.index.rebuildReason, /not usable/);
    assert.match((await runVigil(['store', 'verify', '--data', data, '--stream', 'cam-1'])).stdout, /index consistent/);
  });

  it('stats and verify inspect a store that a live writer holds, read-only: no lock taken, nothing changed', async () => {
    // This process holds the stream open (its store lock, a WAL manifest with an open session), as `vigil serve` does.
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
    const dir = streamDir(data, 'live-1');
    const session = await StreamSession.open(model, { dir, windowFrames: 2 });
    const kv = path.join(dir, 'kv');
    const snapshot = () =>
      fs.readdirSync(kv).filter((f) => f !== 'LOCK' && !f.startsWith('manifest.sqlite')).sort().map((f) => {
        const st = fs.statSync(path.join(kv, f));
        return `${f}:${st.size}:${st.mtimeMs}`;
      });
    try {
      const random = mulberry32(5);
      for (let i = 0; i < 5; i++) {
        const pixelValues = Float32Array.from({ length: 3 * 64 * 64 }, () => random() * 2 - 1);
        await session.addFrame({ pixelValues, count: 1, height: 64, width: 64, rows: 0, cols: 0 }, i);
      }
      await session.store.flush();
      const lock = fs.readFileSync(path.join(kv, 'LOCK'), 'utf8');
      assert.equal(lock, String(process.pid));
      const before = snapshot();
      const rows = () => (session.store.stats().chunkCount);

      // Side by side: neither takes the lock, so neither waits for nor disturbs the other.
      const [stats, verify] = await Promise.all([
        runVigil(['store', 'stats', '--data', data, '--stream', 'live-1', '--json']),
        runVigil(['store', 'verify', '--data', data, '--stream', 'live-1']),
      ]);
      assert.equal(stats.code, 0, stats.stderr);
      const [s] = JSON.parse(stats.stdout) as Array<{ chunkCount: number; tEnd: number }>;
      assert.equal(s!.chunkCount, 5);
      assert.equal(s!.tEnd, 4);
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /live-1: 5 chunks checked, 0 damaged/);

      assert.equal(fs.readFileSync(path.join(kv, 'LOCK'), 'utf8'), lock, 'the writer keeps its lock');
      assert.deepEqual(snapshot(), before, 'segment files untouched');
      assert.equal(rows(), 5);
      // The writer carries on as if nothing happened.
      const pixelValues = Float32Array.from({ length: 3 * 64 * 64 }, () => 0.5);
      await session.addFrame({ pixelValues, count: 1, height: 64, width: 64, rows: 0, cols: 0 }, 5);
      await session.store.flush();
      const again = await runVigil(['store', 'stats', '--data', data, '--stream', 'live-1', '--json']);
      assert.equal((JSON.parse(again.stdout) as Array<{ chunkCount: number }>)[0]!.chunkCount, 6);
      // Repairs still need the lock: rebuild-index is refused while the writer holds it.
      const rebuild = await runVigil(['store', 'rebuild-index', '--data', data, '--stream', 'live-1']);
      assert.equal(rebuild.code, 2);
      assert.match(rebuild.stderr, /already open in process/);
    } finally {
      await session.dispose();
      await model.dispose();
    }
  });

  it('bad arguments are one clear line', async () => {
    const [run, bad] = await Promise.all([runVigil(['store', 'stats', '--data', data, '--stream', 'nope']), runVigil(['store', 'stats', '--data', data, '--stream', '../etc'])]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /stream 'nope' has no memory/);
    assert.match(bad.stderr, /stream id '\.\.\/etc' is not valid/);
  });
});
