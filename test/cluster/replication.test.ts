/**
 * Replicated memory (issue 18) against a real nats-server with JetStream on 127.0.0.1 (started
 * here), the real probe-needle model, store and index: a stream replicated while it ingests is
 * restored into a new folder and answers a needle shown before the snapshot, without what came after
 * (recorded as a gap); demotion and retention deletions reach the bucket; NATS killed mid-ingest does
 * not hold ingest up and replication catches up once it is back; a damaged or missing object makes
 * the restore refuse, leaving no folder.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type JetStreamClient, type NatsConnection, type ObjectStore } from 'nats';
import { isVigilError } from '../../common/errors.js';
import { REPLICATION_GAP_REASON, restoreStream, StreamReplicator } from '../../src/cluster/replication.js';
import { manifestObject, parseReplicationManifest, referencedObjects, type ReplicationManifest } from '../../src/cluster/replicationManifest.js';
import { StreamSession, type StreamSessionOptions } from '../../src/engine/streamSession.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts, type NeedleStreamParts } from '../helpers/needleStream.js';
import { freePort } from '../helpers/freePort.js';

const QUESTION = 'What color was the square on the red screen?';
const NEEDLE_AT = 9;
const BUCKET = 'vigil-memory-test';


/** A nats-server with JetStream on a loopback port; `start` again after `kill` keeps its store folder. */
class NatsServer {
  private child: ChildProcess | null = null;
  constructor(
    readonly port: number,
    private readonly storeDir: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('/usr/sbin/nats-server', ['-js', '-sd', this.storeDir, '-a', '127.0.0.1', '-p', String(this.port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${log}`)), 10_000);
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited (${code}): ${log}`));
      });
    });
    child.stderr!.resume();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function readManifest(bucket: ObjectStore, streamId: string): Promise<ReplicationManifest> {
  const data = await bucket.getBlob(manifestObject(streamId));
  assert.ok(data, `a replication manifest of ${streamId}`);
  return parseReplicationManifest(Buffer.from(data).toString('utf8'), streamId);
}

async function objectNames(bucket: ObjectStore, streamId: string): Promise<Set<string>> {
  return new Set((await bucket.list()).filter((i) => !i.deleted && i.name.startsWith(`${streamId}/piece/`)).map((i) => i.name));
}

describe('replicated memory: a stream folder to the JetStream object store and back', () => {
  let parts: NeedleStreamParts;
  let nats: NatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let bucket: ObjectStore;

  before(async () => {
    parts = await loadNeedleStreamParts('vigil-replication-');
    nats = new NatsServer(await freePort(), path.join(parts.scratch, 'nats'));
    await nats.start();
    nc = await connect({ servers: nats.url, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    js = nc.jetstream({ timeout: 2000 });
    bucket = await js.views.os(BUCKET);
  });
  after(async () => {
    await nc?.close();
    await nats?.kill('SIGTERM');
    await disposeNeedleStreamParts(parts);
  });

  function options(dir: string): StreamSessionOptions {
    // Small segments (~3 chunks each) so several seal; small index blocks so the saved index has sealed ones.
    return { dir, sinkFrames: 1, windowFrames: 4, segmentBytes: 1 << 15, gate: 'off', indexSealing: { blockChunks: 4, listChunks: 2 } };
  }

  async function ingest(session: StreamSession, from: number, to: number, wall0: number): Promise<void> {
    for (let i = from; i < to; i++) await session.addFrame(i === NEEDLE_AT ? parts.needle : parts.haystack, i, wall0 + i * 1000);
    await session.flush();
  }

  it('a replicated stream restores into a new folder and answers the needle shown before the snapshot; later frames are a gap', { timeout: 90_000 }, async () => {
    const dir = path.join(parts.scratch, 'cam-a');
    const wall0 = Date.now() - 40_000;
    let session = await StreamSession.open(parts.model, options(dir));
    await ingest(session, 0, 24, wall0);
    // A clean close saves the index (with sealed blocks); the stream goes on after a reopen.
    await session.dispose();
    session = await StreamSession.open(parts.model, options(dir));
    // The small files of the folder travel too: the watches and the source's saved probe.
    const smallFiles = { 'source-probe.json': '{"version":1,"probe":{}}\n', 'watches/watches.json': '{"watches":[]}\n' };
    fs.mkdirSync(path.join(dir, 'watches'), { recursive: true });
    for (const [name, text] of Object.entries(smallFiles)) fs.writeFileSync(path.join(dir, name), text);
    const replicator = new StreamReplicator({ bucket, streamId: 'cam-a', dir, intervalSec: 3600, pieceBytes: 16384 }).start();
    try {
      const status = await replicator.snapshotNow();
      assert.equal(status.recoveryPoint?.chunkId, 23);
      assert.equal(status.recoveryPoint?.streamTime, 23, 'the newest chunk ends at its frame time');
      assert.equal(status.lagSec, 0, 'the snapshot holds the newest chunk');
      assert.ok(status.bytesUploaded > 0);
      const manifest = await readManifest(bucket, 'cam-a');
      const paths = manifest.files.map((f) => f.path);
      assert.ok(paths.filter((p) => p.startsWith('kv/seg-')).length >= 5, `several segments: ${paths.join(' ')}`);
      assert.ok(paths.includes('index/index.json') && paths.some((p) => p.startsWith('index-blocks/block-')), `the saved index and its sealed blocks: ${paths.join(' ')}`);
      // The same state again sends nothing new (pieces are named by their SHA-256).
      const again = await replicator.snapshotNow();
      assert.equal(again.lastSnapshotBytes, 0);
      // Frames after the snapshot: not replicated, so the lag grows.
      await ingest(session, 24, 30, wall0);
      assert.ok(replicator.status().lagSec > 10, JSON.stringify(replicator.status()));
    } finally {
      await replicator.dispose();
      await session.dispose();
    }

    const restored = path.join(parts.scratch, 'restored-a');
    const restoreStarted = Date.now();
    const report = await restoreStream(bucket, 'cam-a', restored);
    assert.equal(report.recoveryPoint?.chunkId, 23);
    for (const [name, text] of Object.entries(smallFiles)) assert.equal(fs.readFileSync(path.join(restored, name), 'utf8'), text, `${name} restored`);
    // From the recovery point to the restore (the wall time since its chunk): it covers the frames lost (24..29).
    const elapsed = (restoreStarted - (wall0 + 23_000)) / 1000;
    assert.ok(report.gap && report.gap.tStart === 23 && report.gap.tEnd >= 23 + elapsed && report.gap.tEnd >= 29, JSON.stringify(report.gap));
    const copy = await StreamSession.open(parts.model, options(restored));
    try {
      assert.equal(copy.memory.openReport.indexRebuilt, false, 'the replicated index loads');
      assert.equal(copy.store.stats().lastChunkId, 23, 'nothing after the recovery point');
      assert.equal(copy.store.recovery.droppedChunks.length, 0);
      const gaps = copy.store.gaps();
      assert.deepEqual(gaps.map((g) => [g.tStart, g.reason]), [[23, REPLICATION_GAP_REASON]]);
      assert.deepEqual((await copy.store.verify()).damaged, []);
      const answer = await copy.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 4 });
      assert.equal(answer.text.trim(), 'green');
      assert.ok(answer.evidence.some((e) => e.chunkId === NEEDLE_AT), 'the needle chunk is evidence');
    } finally {
      await copy.dispose();
    }
    await assert.rejects(restoreStream(bucket, 'cam-a', restored), (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT' && /not empty/.test(e.message));
    await assert.rejects(restoreStream(bucket, 'cam-none', path.join(parts.scratch, 'none')), (e: unknown) => isVigilError(e) && e.code === 'FILE_NOT_FOUND');
  });

  it('demotion and retention deletions are mirrored: the removed segments leave the bucket', { timeout: 90_000 }, async () => {
    const dir = path.join(parts.scratch, 'cam-b');
    const session = await StreamSession.open(parts.model, options(dir));
    const replicator = new StreamReplicator({ bucket, streamId: 'cam-b', dir, intervalSec: 3600, pieceBytes: 16384 }).start();
    try {
      await ingest(session, 0, 24, Date.now() - 30_000);
      await replicator.snapshotNow();
      const before = await readManifest(bucket, 'cam-b');
      const segments = session.store.stats().segments.filter((s) => s.chunkCount > 0).sort((a, b) => a.firstChunkId! - b.firstChunkId!);
      const segPath = (id: number): string => `kv/seg-${String(id).padStart(6, '0')}.kvseg`;
      // Demote the second-oldest segment (a new segment file replaces it), delete the oldest by retention.
      const demoted = segments[1]!.segment;
      assert.ok((await session.store.demoteSegment(demoted, 'kivi4')) !== null);
      const retained = session.store.applyRetention({ maxStreamAgeSec: session.store.stats().tEnd! - segments[0]!.tEnd! - 0.5 });
      assert.ok(retained.removedChunkIds.length > 0, JSON.stringify(retained));
      const gone = [segPath(segments[0]!.segment), segPath(demoted)];
      for (const p of gone) assert.equal(fs.existsSync(path.join(dir, p)), false);
      const goneObjects = new Set(before.files.filter((f) => gone.includes(f.path)).flatMap((f) => f.pieces.map((p) => p.object)));
      assert.ok(goneObjects.size > 0);
      // Mirrored one snapshot later (the previous manifest's objects are kept for a restore in flight).
      await replicator.snapshotNow();
      const mid = await readManifest(bucket, 'cam-b');
      assert.ok(!mid.files.some((f) => gone.includes(f.path)), 'the new manifest lists neither removed segment');
      await session.store.flush();
      await ingest(session, 24, 25, Date.now() - 1000);
      await replicator.snapshotNow();
      const last = await readManifest(bucket, 'cam-b');
      const keep = referencedObjects(last);
      for (const name of referencedObjects(mid)) keep.add(name);
      const inBucket = await objectNames(bucket, 'cam-b');
      assert.deepEqual([...inBucket].sort(), [...keep].sort(), 'the bucket holds exactly what the newest two manifests reference');
      for (const name of goneObjects) if (!keep.has(name)) assert.ok(!inBucket.has(name), `${name} was deleted`);
      const local = session.store.stats();
      const restored = path.join(parts.scratch, 'restored-b');
      await restoreStream(bucket, 'cam-b', restored);
      const copy = await StreamSession.open(parts.model, options(restored));
      try {
        const stats = copy.store.stats();
        assert.equal(stats.chunkCount, local.chunkCount);
        assert.equal(stats.firstChunkId, local.firstChunkId);
        assert.ok((stats.bytesByDtype.kivi4 ?? 0) > 0, 'the demoted segment came back as kivi4');
        assert.deepEqual((await copy.store.verify()).damaged, []);
      } finally {
        await copy.dispose();
      }
    } finally {
      await replicator.dispose();
      await session.dispose();
    }
  });

  it('a damaged or missing object makes the restore refuse, and no folder is left', { timeout: 90_000 }, async () => {
    const dir = path.join(parts.scratch, 'cam-c');
    const session = await StreamSession.open(parts.model, options(dir));
    const replicator = new StreamReplicator({ bucket, streamId: 'cam-c', dir, intervalSec: 3600, pieceBytes: 16384 }).start();
    try {
      await ingest(session, 0, 12, Date.now() - 20_000);
      await replicator.snapshotNow();
    } finally {
      await replicator.dispose();
      await session.dispose();
    }
    const manifest = await readManifest(bucket, 'cam-c');
    const segment = manifest.files.find((f) => f.path.startsWith('kv/seg-'))!;
    // Damage: one more chunk message in the object's stream (what a broken disk or a stray writer leaves).
    const info = (await bucket.info(segment.pieces[0]!.object))!;
    await js.publish(`$O.${BUCKET}.C.${info.nuid}`, new Uint8Array([1, 2, 3]));
    const target = path.join(parts.scratch, 'restored-c');
    await assert.rejects(restoreStream(bucket, 'cam-c', target), (e: unknown) => isVigilError(e) && e.code === 'STORE_CORRUPT' && /damaged/.test(e.message) && e.message.includes(segment.path));
    assert.equal(fs.existsSync(target), false);
    assert.deepEqual(fs.readdirSync(parts.scratch).filter((n) => n.startsWith('restored-c')), [], 'no staging folder left');
    // Missing: the manifest backup's piece deleted.
    const sqlite = manifest.files.find((f) => f.path === 'kv/manifest.sqlite')!;
    await bucket.delete(sqlite.pieces[0]!.object);
    fs.mkdirSync(target);
    await assert.rejects(restoreStream(bucket, 'cam-c', target), (e: unknown) => isVigilError(e) && e.code === 'STORE_CORRUPT' && /missing/.test(e.message) && e.message.includes('kv/manifest.sqlite'));
    assert.deepEqual(fs.readdirSync(target), [], 'the empty folder stays empty');
  });

  it('NATS killed during ingest: ingest goes on, replication catches up once NATS is back', { timeout: 90_000 }, async () => {
    const dir = path.join(parts.scratch, 'cam-d');
    const session = await StreamSession.open(parts.model, options(dir));
    const errors: Error[] = [];
    const replicator = new StreamReplicator({ bucket, streamId: 'cam-d', dir, intervalSec: 0.3, retryMs: { initial: 200, max: 1000 }, onError: (e) => errors.push(e) }).start();
    try {
      const wall0 = Date.now() - 30_000;
      await ingest(session, 0, 6, wall0);
      await waitFor('the first snapshot', () => replicator.status().recoveryPoint?.chunkId === 5, 10_000);
      await nats.kill('SIGKILL');
      const started = performance.now();
      await ingest(session, 6, 20, wall0);
      const ingestMs = performance.now() - started;
      await waitFor('a failed attempt', () => replicator.status().failures > 0, 10_000);
      const down = replicator.status();
      assert.equal(down.recoveryPoint?.chunkId, 5, 'nothing replicated while NATS is down');
      assert.ok(down.lagSec > 0);
      // 14 frames while NATS was down took no longer than frames take here (~20-40 ms each, generous for a loaded machine).
      assert.ok(ingestMs < 14 * 1000, `ingest took ${ingestMs} ms`);
      await nats.start();
      await waitFor('replication to catch up', () => replicator.status().recoveryPoint?.chunkId === 19, 30_000);
      assert.equal(replicator.status().lagSec, 0);
      assert.ok(errors.length > 0 && errors.every((e) => e instanceof Error));
    } finally {
      await replicator.dispose();
      await session.dispose();
    }
    const restored = path.join(parts.scratch, 'restored-d');
    await restoreStream(bucket, 'cam-d', restored);
    const copy = await StreamSession.open(parts.model, options(restored));
    try {
      assert.equal(copy.store.stats().lastChunkId, 19);
    } finally {
      await copy.dispose();
    }
  });
});
