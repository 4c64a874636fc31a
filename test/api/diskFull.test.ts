/**
 * A full disk pauses ingest instead of failing the stream (issue 14, item 7). A live RTSP camera
 * (GStreamer's RTSP server on 127.0.0.1) ingests onto a small real filesystem (a tmpfs mounted
 * here: the tests run as root) that a filler file then fills. The stream must show `paused` with
 * DISK_FULL, drop live frames meanwhile (not queue them), answer questions, keep stream.json whole,
 * and, once the filler is deleted, resume by itself with the paused time persisted as a 'disk full'
 * gap and nothing committed lost. Two placements: the whole data folder on the small filesystem
 * (whichever write comes first finds it full: often a thumbnail), and only the chunk store's folder
 * (so the chunk store's own writes find it full: segment and manifest). A file source pauses the
 * same way but drops nothing: it waits, reading nothing, and goes on from where it stopped.
 *
 * Where mounting is not permitted (not root, or VIGIL_TEST_INJECT_DISK_FULL=1), the full disk is
 * injected instead: the manager's test-only `testFaults.beforeAddFrame` throws the DISK_FULL a
 * full disk makes the store throw. Each test reports which ran (t.diagnostic). The camera tests
 * skip loudly without the RTSP server, except with CI=true.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import request from 'supertest';
import { VigilError } from '../../common/errors.js';
import { makeProbeClip, type Needle } from '../../ingest/index.js';
import { readRecord } from '../../src/engine/manager/streamRecord.js';
import type { StreamStatus } from '../../src/engine/streamManager.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { AUTH, disposeSharedModel, question, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

/** Mounts a size-limited tmpfs on `dir` (made here), or says why it cannot. */
function mountSmallFs(dir: string, mib: number): string | null {
  if (process.env.VIGIL_TEST_INJECT_DISK_FULL === '1') return 'VIGIL_TEST_INJECT_DISK_FULL=1';
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return (r.error?.message ?? r.stderr).trim() || `mount exited ${r.status}`;
  return null;
}

/** Writes `file` until the filesystem has no room left (ENOSPC); returns the bytes written. */
function fill(file: string): number {
  const fd = fs.openSync(file, 'w');
  let written = 0;
  try {
    for (const size of [1 << 20, 64 << 10, 4 << 10, 512]) {
      const block = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          written += fs.writeSync(fd, block);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          break;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return written;
}

// The three cases share nothing but the clips (each has its own server, camera and filesystem) and
// mostly wait on real time (a live camera, the fill, the resume): they run at once.
describe('disk full: ingest pauses and resumes', { concurrency: true }, () => {
  let clipDir: string;
  const clipSeconds = { live: 120, file: 60 };
  const cameras: RtspServer[] = [];
  const servers: TestServer[] = [];
  const mounts: string[] = [];
  const fillers: string[] = [];

  before(async () => {
    clipDir = tempDir('vigil-full-clips-');
    const needles: Needle[] = [{ start: 2, duration: 2, background: 'red', square: 'green' }];
    // Two ffmpeg encodes, at once.
    await Promise.all(Object.entries(clipSeconds).map(([name, durationS]) => makeProbeClip({ out: path.join(clipDir, `${name}.mp4`), durationS, width: 160, height: 90, needles })));
  });
  after(async () => {
    try {
      // A test that failed midway may have left its filesystem full: room first, so that closing saves.
      for (const file of fillers) fs.rmSync(file, { force: true });
      for (const server of servers) await server.close().catch((e: unknown) => process.stderr.write(`closing a server: ${String(e)}\n`));
      for (const camera of cameras) await camera.kill();
      await disposeSharedModel();
    } finally {
      // Unmounted whatever happened above (lazily, should anything still hold a file open).
      const failed = mounts.filter((dir) => spawnSync('umount', ['-l', dir]).status !== 0);
      assert.deepEqual(failed, [], 'unmounted');
    }
    assertNoChildrenLeft('after the service was closed');
  });

  /**
   * A server whose stream 'cam' writes onto a small filesystem: the whole data folder, or only the
   * stream's chunk store (`<data>/streams/cam/kv`, mounted before the stream creates it). `full()`
   * fills it (or switches the injected fault on), `room()` frees it. Null when the test skipped.
   */
  async function setUp(t: TestContext, placement: 'data' | 'store', injectedToo = placement === 'data') {
    const dataDir = tempDir('vigil-data-');
    const smallDir = placement === 'data' ? dataDir : path.join(dataDir, 'streams', 'cam', 'kv');
    const mib = placement === 'data' ? 32 : 8;
    const mountError = mountSmallFs(smallDir, mib);
    const real = mountError === null;
    if (real) mounts.push(smallDir);
    else if (!injectedToo) {
      // Injected, it would be the same fault as the data-folder case.
      t.skip(`needs a small real filesystem (${mountError}); the injected case runs in the data-folder test`);
      return null;
    }
    t.diagnostic(real ? `real filesystem: a ${mib} MiB tmpfs holding the ${placement === 'data' ? 'data folder' : "stream's chunk store"}, filled by a filler file` : `injected DISK_FULL (no small filesystem: ${mountError})`);
    // The injected fault stands in for the full disk where none can be mounted.
    let injectFull = false;
    const s = await startTestServer({
      dataDir,
      filesDir: clipDir,
      manager: {
        policy: { allowNetworks: ['127.0.0.1/32'], filesDir: clipDir },
        sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3 },
        diskFull: { pollMs: 300, maxBackoffMs: 1500 },
        ...(real
          ? {}
          : {
              testFaults: {
                beforeAddFrame: () => {
                  if (injectFull) throw new VigilError('DISK_FULL', 'injected: no space left on device (test)');
                },
              },
            }),
      },
    });
    servers.push(s);
    const filler = path.join(smallDir, 'filler.bin');
    return {
      s,
      dataDir,
      status: () => s.ready.status('cam'),
      full: () => {
        if (!real) return void (injectFull = true);
        fillers.push(filler);
        t.diagnostic(`filler: ${fill(filler)} bytes`);
      },
      room: () => {
        if (!real) return void (injectFull = false);
        fs.rmSync(filler);
      },
    };
  }

  type Setup = NonNullable<Awaited<ReturnType<typeof setUp>>>;

  /** Waits for `paused` (never `failed`) and checks what the status and metrics say then. */
  async function expectPaused(t: TestContext, { s, status, dataDir }: Setup): Promise<StreamStatus> {
    const paused = await waitFor('paused for a full disk', () => {
      const st = status();
      if (st.state === 'failed') assert.fail(`the stream failed instead of pausing: ${JSON.stringify(st.error)}`);
      return st.state === 'paused' ? st : undefined;
    }, 30_000);
    t.diagnostic(`status while paused: ${paused.error?.message}`);
    assert.equal(paused.error?.code, 'DISK_FULL');
    assert.match(paused.error!.message, /^paused: disk full/);
    assert.ok(!paused.error!.message.includes(dataDir), 'no server path in the status');
    assert.equal(paused.ingest!.pauses, 1);
    const metrics = (await request(s.url).get('/metrics').set(AUTH).expect(200)).text;
    assert.match(metrics, /^vigil_streams\{state="paused"\} 1$/m);
    assert.match(metrics, /^vigil_ingest_disk_full_pauses_total\{stream="cam"\} 1$/m);
    return paused;
  }

  /** Questions are answered while paused, from what is stored; stream.json is whole. */
  async function expectAnswered({ s, dataDir }: Setup): Promise<void> {
    const answer = await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.text, 'green');
    assert.equal(readRecord(path.join(dataDir, 'streams', 'cam'))?.id, 'cam', 'stream.json is whole');
  }

  async function liveCase(t: TestContext, placement: 'data' | 'store'): Promise<void> {
    const python = requireRtsp(t);
    if (!python) return;
    const setup = await setUp(t, placement);
    if (!setup) return;
    const { s, status, dataDir } = setup;
    const camera = await startRtspServer(python, { file: path.join(clipDir, 'live.mp4') });
    cameras.push(camera);
    // A budget the 32 MiB data folder can hold: with the default 20 GB, the stream's first hour
    // (~70 MB at 2 frames/s) would not fit and the stream would be refused.
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: camera.url, fps: 2, window: 2, budget: '8MB' }).expect(201);
    await waitFor('live past the needle', () => status().state === 'live' && (status().memory?.lastT ?? 0) >= 5, 30_000);

    setup.full();
    const paused = await expectPaused(t, setup);
    // While paused: frames are dropped (not stored, not queued), questions are answered.
    const chunksPaused = status().memory!.chunks;
    await waitFor('frames dropped while paused', () => (status().ingest?.pausedDrops ?? 0) >= 3, 20_000);
    const during = (await request(s.url).get('/v1/streams/cam').set(AUTH).expect(200)).body as StreamStatus;
    assert.equal(during.state, 'paused');
    assert.equal(during.memory!.chunks, chunksPaused, 'nothing stored while the disk is full');
    assert.ok(during.ingest!.queued <= 8, 'frames are not queued up');
    await expectAnswered(setup);

    // Space returns: ingest resumes by itself; the paused time is a 'disk full' gap in the timeline.
    setup.room();
    const resumed = await waitFor('ingest resumed', () => {
      const st = status();
      if (st.state === 'failed') assert.fail(`the stream failed after space returned: ${JSON.stringify(st.error)}`);
      return st.state === 'live' && st.memory!.chunks > chunksPaused + 2 ? st : undefined;
    }, 30_000);
    assert.equal(resumed.error, null);
    assert.ok(resumed.ingest!.pausedDrops >= 3);
    const gap = resumed.memory!.lastGap;
    assert.equal(gap?.reason, 'disk full', JSON.stringify(resumed.memory));
    assert.ok(gap!.to > gap!.from && gap!.from >= paused.memory!.lastT! - 2, JSON.stringify(gap));
    assert.equal(resumed.ingest!.gapWriteErrors, 0);
    // Nothing committed was lost: the needle (stored before the disk filled) is still answered
    // from disk, and the answer covering the pause shows it as a gap.
    const after = await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
    assert.equal(after.body.text, 'green');
    assert.ok(after.body.evidence.some((e: { gap?: { reason: string } }) => e.gap?.reason === 'disk full'), JSON.stringify(after.body.evidence));
    // Stopped first: a live camera is writing its next thumbnail (write .tmp, rename) at any moment.
    await request(s.url).post('/v1/streams/cam/stop').set(AUTH).expect(200);
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'streams', 'cam', 'thumbs')).filter((f) => f.endsWith('.tmp')), [], 'no half-written thumbnails');
  }

  it('a camera, the data folder fills up: pauses with DISK_FULL, answers meanwhile, resumes when space returns', (t) => liveCase(t, 'data'));
  it("a camera, the chunk store's folder fills up: the store's own writes pause ingest, which resumes when space returns", (t) => liveCase(t, 'store'));

  it("a file, the chunk store's folder fills up: ingest waits, reading nothing, and goes on where it stopped", async (t) => {
    const setup = await setUp(t, 'store', true);
    if (!setup) return;
    const { s, status } = setup;
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'file.mp4', fps: 1, window: 2 }).expect(201);
    await waitFor('a few frames stored', () => (status().memory?.chunks ?? 0) >= 6, 30_000);
    setup.full();
    await expectPaused(t, setup);
    const chunksPaused = status().memory!.chunks;
    await new Promise((r) => setTimeout(r, 1500));
    const during = status();
    assert.equal(during.state, 'paused');
    assert.equal(during.memory!.chunks, chunksPaused, 'nothing stored while the disk is full');
    assert.equal(during.ingest!.pausedDrops, 0, 'a file drops nothing: it waits');
    await expectAnswered(setup);

    setup.room();
    const ended = await waitFor('the file read to its end', () => {
      const st = status();
      if (st.state === 'failed') assert.fail(`the stream failed after space returned: ${JSON.stringify(st.error)}`);
      return st.state === 'ended' ? st : undefined;
    }, 60_000);
    assert.equal(ended.error, null);
    // Every second of the file is stored, except a frame that was handed over just before the disk
    // filled and whose commit it refused: such a frame lies inside a 'disk full' gap.
    const all = (await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), mode: 'full' }).expect(200)).body;
    const stored = new Set((all.evidence as Array<{ tStart?: number }>).filter((e) => e.tStart !== undefined).map((e) => Math.round(e.tStart!)));
    const gaps = (all.evidence as Array<{ gap?: { from: number; to: number; reason: string } }>).flatMap((e) => (e.gap ? [e.gap] : []));
    // (mode full lists the chunks it selected: not the sink frame (0 s) nor the 2-frame window.)
    const missing = Array.from({ length: clipSeconds.file - 3 }, (_, i) => i + 1).filter((i) => !stored.has(i));
    t.diagnostic(`frames stored: ${stored.size} of ${clipSeconds.file}; missing: ${JSON.stringify(missing)}; gaps: ${JSON.stringify(gaps)}`);
    assert.ok(missing.length <= 2, `at most the frames in flight are lost: ${JSON.stringify(missing)}`);
    for (const m of missing) assert.ok(gaps.some((g) => g.reason === 'disk full' && g.from < m && m < g.to), `${m} s is inside a disk full gap: ${JSON.stringify(gaps)}`);
    if (missing.length === 0) assert.deepEqual(gaps, [], 'nothing lost, no gap');
    assert.equal(ended.memory!.chunks, clipSeconds.file - missing.length, 'every other frame is stored');
  });
});
