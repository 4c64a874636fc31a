import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { ChunkStore } from '../../memory/store/index.js';
import { assertChunkBitExact, makeChunk, tempDir } from './helpers.js';
import { CRASH_GEOMETRY, CRASH_TOKENS } from './fixtures/crashGeometry.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/appendLoop.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));
// float32: 72 header + 6 layers x K,V x (2 x 64 x 64) x 4 bytes, already 8-aligned.
const LEN = 72 + 6 * 2 * 2 * 64 * 64 * 4;
const SEG_HEADER = 32;

/**
 * Runs the append loop in a child process. With killAfter, this test SIGKILLs the child (and only
 * it) once that many appends have been reported committed. Returns the ids the child reported.
 */
async function runChild(dir: string, opts: { killAfter?: number; killDelayMs?: number; crashAt?: number }): Promise<number[]> {
  const args = ['--import', 'tsx', FIXTURE, dir];
  if (opts.crashAt !== undefined) args.push(String(opts.crashAt));
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const committed: number[] = [];
  let pending = '';
  let stderr = '';
  let killScheduled = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    pending += d;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const l of lines) committed.push(Number(l));
    if (opts.killAfter !== undefined && committed.length >= opts.killAfter && !killScheduled) {
      killScheduled = true;
      // A delay moves the kill from the child's chunk generation into its write/fsync/commit.
      setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }, opts.killDelayMs ?? 0);
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000); // never leave it running
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(guard);
  assert.equal(signal, 'SIGKILL', `child ended with code ${code}: ${stderr}`);
  return committed;
}

/** After a crash: every committed chunk reads back bit-exactly and nothing past it remains. */
async function checkAfterCrash(dir: string, committed: number[]): Promise<ChunkStore> {
  const store = ChunkStore.open({ dir });
  const ids = store.listChunks({ limit: 100_000 }).map((m) => m.chunkId);
  // The child appends 0, 1, 2, ... in order; it may have committed one more than it printed.
  assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => i));
  assert.ok(ids.length === committed.length || ids.length === committed.length + 1, `${ids.length} rows, ${committed.length} reported`);
  assert.deepEqual(store.recovery.droppedChunks, [], 'committed chunks are never damaged by a crash');
  const end = SEG_HEADER + ids.length * LEN;
  for (const tr of store.recovery.truncatedSegments) assert.deepEqual(tr, { segment: 1, fromBytes: tr.fromBytes, toBytes: end });
  assert.equal(store.stats().segments[0]!.fileBytes, end, 'the segment ends at the last committed record');
  const got = await store.readChunks(ids);
  assert.deepEqual(got.failed, []);
  for (const id of ids) assertChunkBitExact(got.chunks.get(id), makeChunk(id, CRASH_GEOMETRY, CRASH_TOKENS));
  const v = await store.verify();
  assert.deepEqual([v.checkedChunks, v.damaged], [ids.length, []]);
  return store;
}

test('SIGKILL during ingest: every committed chunk reads back bit-exactly; the torn tail is cut', async (t) => {
  for (const [killAfter, killDelayMs] of <[number, number][]>[
    [3, 0],
    [6, 3],
    [9, 6],
  ]) {
    const dir = tempDir(t);
    const committed = await runChild(dir, { killAfter, killDelayMs });
    assert.ok(committed.length >= killAfter);
    const store = await checkAfterCrash(dir, committed);
    t.diagnostic(
      `killed ${killDelayMs} ms after ${killAfter} commits (${committed.length} reported): ${store.stats().chunkCount} rows, ` +
        `tail cut: ${JSON.stringify(store.recovery.truncatedSegments)}`,
    );
    // Ingest resumes after the last committed id.
    const next = store.stats().chunkCount;
    await store.append(makeChunk(next, CRASH_GEOMETRY, CRASH_TOKENS));
    await store.dispose();
  }
});

test('killed after a payload write, before its row commits: the uncommitted record is truncated', async (t) => {
  const dir = tempDir(t);
  const committed = await runChild(dir, { crashAt: 5 });
  assert.deepEqual(committed, [0, 1, 2, 3, 4]);
  const store = await checkAfterCrash(dir, committed);
  assert.deepEqual(store.recovery.cleanShutdown, false);
  assert.deepEqual(store.recovery.truncatedSegments, [{ segment: 1, fromBytes: SEG_HEADER + 6 * LEN, toBytes: SEG_HEADER + 5 * LEN }]);
  assert.deepEqual((await store.readChunks([5])).failed.map((f) => f.reason), ['not-found']);
  const r = await store.append(makeChunk(5, CRASH_GEOMETRY, CRASH_TOKENS));
  assert.deepEqual([r.segment, r.offset], [1, SEG_HEADER + 5 * LEN]);
  await store.dispose();
});
