// A full disk: every write that finds no space fails with DISK_FULL, nothing committed is lost or
// damaged, the failed append is undone (its id can be appended again) and appends succeed again
// once space returns. On a real size-limited tmpfs where this machine allows a mount (root), else
// through the store's ioFault seam; the test says which ran.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChunkStore, type StoreIoOp } from '../../memory/store/index.js';
import { assertChunkBitExact, makeChunk, rejectsWithCode, segmentFile, tempDir, TINY } from './helpers.js';

const SEG_HEADER = 32;
/** float32 record of a TINY chunk with 5 tokens: 72 + 3 layers x K,V x (2 x 5 x 8) x 4. */
const LEN = 72 + 3 * 2 * 2 * 5 * 8 * 4;
const SEGMENT_BYTES = SEG_HEADER + 4 * LEN;

/** A fresh tmpfs of `bytes` under os.tmpdir(), unmounted after the test (even when it fails); null where not permitted. */
function mountTmpfs(t: TestContext, bytes: number): string | null {
  // VIGIL_TEST_NO_MOUNT=1 runs the injected variant on a machine that could mount (to check it).
  if (process.getuid?.() !== 0 || process.env.VIGIL_TEST_NO_MOUNT === '1') return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    fs.rmSync(dir, { recursive: true, force: true });
    return null;
  }
  t.after(() => {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      // Still busy (a descriptor a failed assertion left open): detach now, freed when closed.
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Writes `file` until the file system has no byte left (big writes, then single bytes). */
function fillUp(file: string): void {
  const fd = fs.openSync(file, 'a');
  try {
    for (const size of [1 << 16, 512, 1]) {
      const buf = Buffer.alloc(size, 0xab);
      try {
        for (;;) fs.writeSync(fd, buf);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Disk {
  kind: string;
  /** The folder for the store. */
  dir: string;
  fill(): void;
  free(): void;
  /** For ChunkStoreOptions.ioFault (the injected disk). */
  ioFault?: (op: StoreIoOp) => void;
}

function realDisk(t: TestContext): Disk | null {
  const mnt = mountTmpfs(t, 8 << 20);
  if (mnt === null) return null;
  const filler = path.join(mnt, 'filler');
  return {
    kind: 'a real 8 MiB tmpfs filled to the last byte',
    dir: path.join(mnt, 'store'),
    fill: () => fillUp(filler),
    free: () => fs.rmSync(filler, { force: true }),
  };
}

function injectedDisk(t: TestContext): Disk {
  let full = false;
  const code: Record<StoreIoOp, string | null> = {
    'record-write': 'ENOSPC',
    'segment-create': 'ENOSPC',
    'manifest-commit': 'SQLITE_FULL',
    'gap-write': 'SQLITE_FULL',
    fsync: null, // tmpfs never fails an fsync; the injected-only test below covers it
  };
  return {
    kind: 'an injected ENOSPC / SQLITE_FULL (ioFault), no mount permitted here',
    dir: tempDir(t),
    fill: () => (full = true),
    free: () => (full = false),
    ioFault: (op) => {
      const c = code[op];
      if (full && c !== null) throw Object.assign(new Error(`${c}: no space left on device (injected)`), { code: c });
    },
  };
}

test('DISK_FULL at a record write, a segment roll, a manifest commit and a gap; nothing committed lost; appends resume', async (t) => {
  const disk = realDisk(t) ?? injectedDisk(t);
  t.diagnostic(`ran on ${disk.kind}`);
  let fillAfterWriteOf: number | null = null;
  const open = () =>
    ChunkStore.open({
      dir: disk.dir,
      geometry: TINY,
      segmentBytes: SEGMENT_BYTES,
      afterPayloadWrite: (id) => {
        if (id === fillAfterWriteOf) disk.fill();
      },
      ...(disk.ioFault ? { ioFault: disk.ioFault } : {}),
    });
  let store = open();
  let closed = false;
  t.after(async () => {
    if (!closed) await store.dispose().catch(() => undefined);
  });
  for (let id = 0; id < 6; id++) await store.append(makeChunk(id)); // segment 1: 0-3, segment 2: 4-5
  const committedSize = () => fs.statSync(segmentFile(disk.dir, 2)).size;
  const size2 = committedSize();

  // (a) The record write finds no space: cut back to its offset, the store still takes appends.
  disk.fill();
  await rejectsWithCode(store.append(makeChunk(6)), 'DISK_FULL', /no space left/);
  await rejectsWithCode(store.append(makeChunk(6)), 'DISK_FULL');
  assert.equal(committedSize(), size2, 'the partial record was cut back');
  assert.equal(store.stats().chunkCount, 6);
  await rejectsWithCode(() => store.recordGap({ tStart: 1, tEnd: 2, reason: 'camera unreachable' }), 'DISK_FULL');
  // Reads keep working while the disk is full.
  assertChunkBitExact((await store.readChunks([3])).chunks.get(3), makeChunk(3));
  disk.free();
  await store.append(makeChunk(6));
  await store.append(makeChunk(7)); // segment 2 is full now
  store.recordGap({ tStart: 1, tEnd: 2, reason: 'camera unreachable' });

  // (a2) Rolling to a new segment finds no space: no segment file is left behind.
  disk.fill();
  await rejectsWithCode(store.append(makeChunk(8)), 'DISK_FULL');
  assert.equal(fs.existsSync(segmentFile(disk.dir, 3)), false);
  disk.free();
  assert.equal((await store.append(makeChunk(8))).segment, 3);

  // (b) The payload is written, then the disk fills before the manifest commit: the row does not
  // commit, the record is cut off the segment's end, and the same id goes in once there is space.
  const size3 = fs.statSync(segmentFile(disk.dir, 3)).size;
  fillAfterWriteOf = 9;
  await rejectsWithCode(store.append(makeChunk(9)), 'DISK_FULL', /committing chunk rows/);
  fillAfterWriteOf = null;
  assert.equal(fs.statSync(segmentFile(disk.dir, 3)).size, size3, 'the uncommitted record was cut off');
  assert.equal(store.stats().chunkCount, 9);
  assert.equal(store.stats().lastChunkId, 8);
  disk.free();
  const r = await store.append(makeChunk(9));
  assert.deepEqual([r.segment, r.offset], [3, size3]);
  await store.append(makeChunk(10));
  // Closing on a full disk still closes (the store is then only marked unclean).
  disk.fill();
  await store.dispose();
  closed = true;
  disk.free();

  // Reopen: every committed chunk bit-exact, nothing dropped or damaged.
  store = open();
  closed = false;
  assert.deepEqual(store.recovery.droppedChunks, []);
  const ids = Array.from({ length: 11 }, (_, i) => i);
  assert.deepEqual(Array.from(store.chunkIds()), ids);
  const got = await store.readChunks(ids);
  assert.deepEqual(got.failed, []);
  for (const id of ids) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  assert.deepEqual((await store.verify()).damaged, []);
  assert.deepEqual(store.gaps(), [{ tStart: 1, tEnd: 2, reason: 'camera unreachable' }]);
  assert.equal(store.stats().chunkCount, 11);
  await store.dispose();
  closed = true;
});

test('injected: a failed fsync undoes its batch and the appends pending behind it; other errors still stop appends', async (t) => {
  const dir = tempDir(t);
  let fault: { op: StoreIoOp; code: string } | null = null;
  const ioFault = (op: StoreIoOp): void => {
    if (fault !== null && fault.op === op) throw Object.assign(new Error(`${fault.code} (injected)`), { code: fault.code });
  };
  let store = ChunkStore.open({ dir, geometry: TINY, fsync: { everyChunks: 2 }, ioFault });
  await Promise.all([0, 1].map((id) => store.append(makeChunk(id))));
  const size = fs.statSync(segmentFile(dir, 1)).size;

  fault = { op: 'fsync', code: 'ENOSPC' };
  // 2, 3 form a batch whose fsync fails; 4 was written behind them and must go too.
  const batch = [2, 3].map((id) => store.append(makeChunk(id)));
  const behind = store.append(makeChunk(4));
  for (const p of [...batch, behind]) await rejectsWithCode(p, 'DISK_FULL', /syncing chunk records/);
  fault = null;
  assert.equal(fs.statSync(segmentFile(dir, 1)).size, size, 'the undone records were cut off');
  assert.equal(store.stats().pendingChunks, 0);
  await Promise.all([2, 3].map((id) => store.append(makeChunk(id))));

  // A partial record write that fails for lack of space is cut back; the next append lands there.
  fault = { op: 'record-write', code: 'ENOSPC' };
  const before = fs.statSync(segmentFile(dir, 1)).size;
  await rejectsWithCode(store.append(makeChunk(4)), 'DISK_FULL');
  assert.equal(fs.statSync(segmentFile(dir, 1)).size, before);
  fault = null;
  const p4 = store.append(makeChunk(4));
  const p5 = store.append(makeChunk(5));
  assert.equal((await p4).offset, before);
  await p5;

  // Not a full disk: the store stops taking appends (STORE_IO), as before; reads still work.
  fault = { op: 'manifest-commit', code: 'EIO' };
  const failed = [6, 7].map((id) => store.append(makeChunk(id)));
  for (const p of failed) await rejectsWithCode(p, 'STORE_IO');
  fault = null;
  await rejectsWithCode(store.append(makeChunk(8)), 'STORE_IO');
  assert.equal((await store.readChunks([5])).chunks.size, 1);
  await store.dispose();

  store = ChunkStore.open({ dir });
  t.after(() => store.dispose());
  const ids = [0, 1, 2, 3, 4, 5];
  assert.deepEqual(Array.from(store.chunkIds()), ids);
  const got = await store.readChunks(ids);
  for (const id of ids) assertChunkBitExact(got.chunks.get(id), makeChunk(id));
  assert.deepEqual((await store.verify()).damaged, []);
});
