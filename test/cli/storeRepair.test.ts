/**
 * `vigil store repair` through the real CLI on a stream memory written by StreamSession: a damaged
 * chunk is dropped from the manifest and the saved index, verify is clean afterwards, the stream
 * still answers questions; repair is refused (STORE_LOCKED, nothing changed) while another process
 * holds the store open for writing, and works once that process is gone.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../kernels/sampling.js';
import { StreamIndex } from '../../retrieval/index.js';
import { streamDir, streamIndexDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { StreamSession } from '../../src/engine/streamSession.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

interface RepairJson {
  stream: string;
  checkedChunks: number;
  dropped: Array<{ chunkId: number; tStart: number; tEnd: number; reason: string; message: string }>;
  unreadable: unknown[];
  index: { entriesRemoved: number; entriesAdded: number; rebuilt: boolean; skipped: unknown[]; saved: boolean } | null;
}

async function writeStream(data: string, id: string, frames: number): Promise<void> {
  const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
  const session = await StreamSession.open(model, { dir: streamDir(data, id), windowFrames: 2 });
  const random = mulberry32(7);
  for (let i = 0; i < frames; i++) {
    const pixelValues = Float32Array.from({ length: 3 * 64 * 64 }, () => random() * 2 - 1);
    await session.addFrame({ pixelValues, count: 1, height: 64, width: 64, rows: 0, cols: 0 }, i * 2);
  }
  await session.dispose();
  await model.dispose();
}

/** Flips one byte in the middle of the stream's (single) segment file; returns a function that undoes it. */
function damageMiddle(data: string, id: string): () => void {
  const kv = streamStoreDir(streamDir(data, id));
  const file = path.join(kv, fs.readdirSync(kv).find((f) => f.endsWith('.kvseg'))!);
  const bytes = fs.readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  fs.writeFileSync(file, bytes);
  return () => {
    bytes[at] = bytes[at]! ^ 0xff;
    fs.writeFileSync(file, bytes);
  };
}

async function damagedIds(data: string, id: string): Promise<number[]> {
  const run = await runVigil(['store', 'verify', '--data', data, '--stream', id, '--json']);
  const [report] = JSON.parse(run.stdout) as Array<{ damaged: Array<{ chunkId: number }> }>;
  return report!.damaged.map((d) => d.chunkId);
}

/** Another process holding the store open for writing (as `vigil serve` does), until killed. */
async function holdStore(storeDir: string): Promise<ChildProcess> {
  const module = pathToFileURL(path.resolve('memory/store/index.ts')).href;
  const code = `const { ChunkStore } = await import(process.argv[1]); ChunkStore.open({ dir: process.argv[2], create: false }); console.log('holding'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, module, storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('holding')) resolve();
    });
    child.on('exit', (c) => reject(new Error(`the lock holder exited (${c}): ${stderr}`)));
  });
  return child;
}

describe('vigil store repair', () => {
  let data: string;
  before(async () => {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-store-repair-'));
    await writeStream(data, 'cam-1', 8);
    await writeStream(data, 'cam-2', 6);
  });
  after(() => fs.rmSync(data, { recursive: true, force: true }));

  it('drops a damaged chunk and its index entry; verify is clean afterwards and the stream still answers', async () => {
    const clean = await runVigil(['store', 'repair', '--data', data, '--stream', 'cam-1']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /^cam-1: 8 chunks checked; no damaged chunks; index consistent\n$/);

    damageMiddle(data, 'cam-1');
    const [bad, ...more] = await damagedIds(data, 'cam-1');
    assert.equal(more.length, 0);
    assert.ok(bad !== undefined);

    const run = await runVigil(['store', 'repair', '--data', data, '--stream', 'cam-1', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const [report] = JSON.parse(run.stdout) as RepairJson[];
    assert.equal(report!.checkedChunks, 8);
    assert.deepEqual(report!.dropped, [{ chunkId: bad, tStart: bad * 2, tEnd: bad * 2, reason: 'checksum', message: report!.dropped[0]!.message }]);
    assert.match(report!.dropped[0]!.message, new RegExp(`chunk ${bad}`));
    assert.deepEqual(report!.index, { entriesRemoved: 1, entriesAdded: 0, rebuilt: false, rebuildReason: null, skipped: [], saved: true });

    const verify = await runVigil(['store', 'verify', '--data', data, '--stream', 'cam-1']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /cam-1: 7 chunks checked, 0 damaged; index consistent/);
    const index = await StreamIndex.load(streamIndexDir(streamDir(data, 'cam-1')));
    assert.equal(index.has(bad), false);
    assert.equal(index.size, 7);

    const again = await runVigil(['store', 'repair', '--data', data, '--stream', 'cam-1']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /cam-1: 7 chunks checked; no damaged chunks; index consistent/);

    // The stream opens and answers over what is left; the dropped chunk is never evidence.
    const model = await VisionLanguageModel.load(probeModelDir('probe-random-tiny'));
    try {
      const session = await StreamSession.open(model, { dir: streamDir(data, 'cam-1'), windowFrames: 2 });
      try {
        const answer = await session.ask({ question: 'What happened?', mode: 'rekv', retrieve: 8, maxNewTokens: 2 });
        assert.ok(answer.evidence.length > 0);
        assert.ok(answer.evidence.every((e) => e.chunkId !== bad));
        assert.deepEqual(answer.skipped, []);
      } finally {
        await session.dispose();
      }
    } finally {
      await model.dispose();
    }
  });

  it('is refused while another process holds the store (nothing changed), and repairs once it is gone', async () => {
    damageMiddle(data, 'cam-2');
    const [bad] = await damagedIds(data, 'cam-2');
    assert.ok(bad !== undefined);
    const holder = await holdStore(streamStoreDir(streamDir(data, 'cam-2')));
    try {
      // One stream, and every stream (the free one is repaired and reported, the held one refused,
      // and the run fails), side by side: they lock different stores, or are refused.
      const [refused, all] = await Promise.all([runVigil(['store', 'repair', '--data', data, '--stream', 'cam-2']), runVigil(['store', 'repair', '--data', data, '--json'])]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, new RegExp(`repair refused for cam-2: memory store .* is already open in process ${holder.pid}`));
      assert.equal(all.code, 2);
      const reports = JSON.parse(all.stdout) as Array<{ stream: string; refused?: { code: string } }>;
      assert.deepEqual(reports.map((r) => [r.stream, r.refused?.code ?? null]), [['cam-1', null], ['cam-2', 'STORE_LOCKED']]);
      assert.deepEqual(await damagedIds(data, 'cam-2'), [bad], 'a refused repair changes nothing');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    // The holder died without releasing its lock: a dead pid's lock is taken over.
    const run = await runVigil(['store', 'repair', '--data', data, '--stream', 'cam-2']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`cam-2: 6 chunks checked; 1 damaged dropped \\(${bad} at [0-9.]+s\\.\\.[0-9.]+s: checksum\\); index: 1 entries removed, 0 added\\n`));
    const verify = await runVigil(['store', 'verify', '--data', data, '--stream', 'cam-2']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /cam-2: 5 chunks checked, 0 damaged; index consistent/);
  });
});
