/**
 * Outages in the timeline, end to end (issue 14, item 5): a live RTSP camera (GStreamer's RTSP
 * server on 127.0.0.1) goes down and comes back; the persisted gap shows in the stream's status
 * (count and newest), in the evidence of an answer whose time range covers it (and not of one that
 * does not), and the count survives a service restart, which adds its own 'not ingesting' gap.
 * Skips loudly without the RTSP server, except with CI=true. And, with many outages on record, an
 * answer lists at most 32: those nearest the chunks it retrieved.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { AnswerSchema } from '../../api/schemas/questions.js';
import { ChunkStore } from '../../memory/store/index.js';
import { streamDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { StreamStatusSchema } from '../../api/schemas/streams.js';
import { makeProbeClip } from '../../ingest/index.js';
import type { StreamStatus } from '../../src/engine/streamManager.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor } from './helpers.js';

interface GapEntry {
  gap: { from: number; to: number; reason: string };
}
type Entry = GapEntry | { chunkId: number; tStart: number; score: number };

const gapsOf = (evidence: Entry[]) => evidence.filter((e): e is GapEntry => 'gap' in e).map((e) => e.gap);
const timeOf = (e: Entry) => ('gap' in e ? e.gap.from : e.tStart);

describe('outages in status, answers and across restarts', () => {
  let clip: string;
  let camera: RtspServer | null = null;
  let server: TestServer | null = null;
  const servers: TestServer[] = [];
  /** Every server a test starts is closed in `after`, whatever failed. */
  const start = async (options: Parameters<typeof startTestServer>[0]) => {
    const started = await startTestServer(options);
    servers.push(started);
    return started;
  };

  before(async () => {
    clip = path.join(tempDir('vigil-gaps-'), 'live.mp4');
    await makeProbeClip({ out: clip, durationS: 90, width: 160, height: 90, needles: [{ start: 2, duration: 2, background: 'red', square: 'green' }] });
  });
  after(async () => {
    for (const started of servers) await started.close();
    await camera?.kill();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  it('a camera outage is in the status and in answers covering it; the count survives a restart', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    camera = await startRtspServer(python, { file: clip });
    const options = { manager: { policy: { allowNetworks: ['127.0.0.1/32'] }, sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3 } } };
    server = await start(options);
    const s = server;
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: camera.url, fps: 2, window: 2 }).expect(201);
    const before = await waitFor('live past the needle', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && (st.memory?.lastT ?? 0) >= 5 ? st : undefined;
    }, 30_000);
    assert.equal(before.memory!.gaps, 0);
    assert.equal(before.memory!.lastGap, null);

    // The camera goes down and comes back on the same port.
    const port = camera.port;
    await camera.kill();
    await waitFor('the outage to be noticed', () => ['backing-off', 'connecting'].includes(s.ready.status('cam').state), 20_000);
    camera = await startRtspServer(python, { file: clip, port });
    const back = await waitFor('reconnected, the outage persisted', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && (st.memory?.gaps ?? 0) >= 1 ? st : undefined;
    }, 30_000);

    // Status: the persisted gap, with the reason the source gave for the outage.
    const status = (await request(s.url).get('/v1/streams/cam').set(AUTH).expect(200)).body as StreamStatus;
    StreamStatusSchema.parse(status);
    assert.equal(status.memory!.gaps, 1, JSON.stringify(status.memory));
    const gap = status.memory!.lastGap!;
    assert.ok(gap && gap.to > gap.from && gap.from >= before.memory!.lastT! - 1, `the outage, in stream time: ${JSON.stringify(gap)}`);
    assert.equal(gap.reason, back.ingest!.lastGap!.reason, 'the reason the source gave');
    assert.notEqual(gap.reason.trim(), '');
    assert.equal(status.ingest!.gapWriteErrors, 0);
    assert.match((await request(s.url).get('/metrics').set(AUTH).expect(200)).text, /^vigil_memory_gaps\{stream="cam"\} 1$/m);

    // An answer whose time range covers the outage lists it among the evidence, in time order.
    await waitFor('frames after the outage', () => (s.ready.status('cam').memory?.lastT ?? 0) > gap.to + 1, 20_000);
    const covering = (await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4, from: gap.from - 1, to: gap.to + 1 }).expect(200)).body;
    AnswerSchema.parse(covering);
    assert.deepEqual(gapsOf(covering.evidence), [gap], JSON.stringify(covering.evidence));
    // Chunk evidence is only what contributed: around the outage the haystack scores 0, so none here.
    assert.ok((covering.evidence as Entry[]).every((e) => 'gap' in e || e.score > 0), JSON.stringify(covering.evidence));
    // A fixed selection (uniform) lists the chunks it used, beside the outage and in time order.
    const beside = (await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), mode: 'uniform', r: 4, from: gap.from - 1, to: gap.to + 1 }).expect(200)).body;
    assert.deepEqual(gapsOf(beside.evidence), [gap], JSON.stringify(beside.evidence));
    const times = (beside.evidence as Entry[]).map(timeOf);
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'evidence in time order');
    assert.ok((beside.evidence as Entry[]).some((e) => !('gap' in e)), 'chunks are still there');
    assert.deepEqual(covering.skipped, []);
    // The whole stream (no range) covers it too; a range before the outage does not.
    const whole = (await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200)).body;
    assert.equal(whole.text, 'green');
    assert.deepEqual(gapsOf(whole.evidence), [gap]);
    const earlier = (await request(s.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4, from: 0, to: Math.max(0, gap.from - 0.5) }).expect(200)).body;
    assert.deepEqual(gapsOf(earlier.evidence), []);
    // The OpenAI-compatible answer carries the same entries.
    const chat = (await request(s.url).post('/v1/chat/completions').set(AUTH).send({ model: 'cam', messages: [{ role: 'user', content: question('red') }], vigil: { r: 4, from: gap.from - 1, to: gap.to + 1 } }).expect(200)).body;
    assert.deepEqual(gapsOf(chat.vigil.evidence), [gap]);

    // Service restart: the persisted count is there at once (read from the manifest), and the
    // time the service was down becomes a second gap once frames flow again.
    const dataDir = s.dataDir;
    await s.close();
    server = await start({ ...options, dataDir });
    const restored = server;
    const reopened = restored.ready.status('cam');
    assert.equal(reopened.memory!.gaps, 1, 'the count survives the restart');
    assert.deepEqual(reopened.memory!.lastGap, gap);
    const resumed = await waitFor('live again, the restart persisted as a gap', () => {
      const st = restored.ready.status('cam');
      return st.state === 'live' && st.memory!.gaps === 2 ? st : undefined;
    }, 30_000);
    assert.match(resumed.memory!.lastGap!.reason, /not ingesting/);
    assert.ok(resumed.memory!.lastGap!.from >= gap.to, JSON.stringify(resumed.memory));
    const afterRestart = (await request(restored.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200)).body;
    AnswerSchema.parse(afterRestart);
    assert.equal(gapsOf(afterRestart.evidence).length, 2, JSON.stringify(afterRestart.evidence));
  });

  it('lists at most 32 outages in an answer, those nearest its retrieved chunks, and only those in its range', async () => {
    const clips = await makeClips();
    const dataDir = tempDir('vigil-data-');
    let s = await start({ dataDir, filesDir: clips });
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'clip', source: 'a.mp4', window: 4 }).expect(201);
    await waitEnded(s, 'clip');
    await s.close();
    // 40 outages on record (written into the stream's manifest while no server holds it), one a second.
    const store = ChunkStore.open({ dir: streamStoreDir(streamDir(dataDir, 'clip')), create: false });
    for (let i = 0; i < 40; i++) store.recordGap({ tStart: i + 0.2, tEnd: i + 0.8, reason: `outage ${i}` });
    await store.dispose();
    s = await start({ dataDir, filesDir: clips });
    assert.equal(s.ready.status('clip').memory!.gaps, 40);

    const answer = (await request(s.url).post('/v1/streams/clip/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200)).body;
    AnswerSchema.parse(answer);
    assert.equal(answer.text, 'green');
    const entries = answer.evidence as Entry[];
    const times = entries.map(timeOf);
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'evidence in time order');
    const chunks = entries.filter((e): e is { chunkId: number; tStart: number; score: number } => !('gap' in e));
    const listed = gapsOf(entries);
    assert.equal(listed.length, 32);
    // Those left out are no nearer to a retrieved chunk than any listed one.
    const distance = (g: { from: number; to: number }) => Math.min(...chunks.map((c) => Math.max(0, c.tStart - g.to, g.from - c.tStart)));
    const shown = new Set(listed.map((g) => g.reason));
    const left = Array.from({ length: 40 }, (_, i) => ({ from: i + 0.2, to: i + 0.8, reason: `outage ${i}` })).filter((g) => !shown.has(g.reason));
    assert.equal(left.length, 8);
    assert.ok(Math.max(...listed.map(distance)) <= Math.min(...left.map(distance)), `listed: ${JSON.stringify(listed)}; chunks at ${chunks.map((c) => c.tStart).join(', ')}`);

    // A range lists the outages that overlap it, whatever the number elsewhere.
    const ranged = (await request(s.url).post('/v1/streams/clip/questions').set(AUTH).send({ question: question('red'), r: 4, from: 10, to: 15 }).expect(200)).body;
    assert.deepEqual(gapsOf(ranged.evidence).map((g) => g.reason), ['outage 10', 'outage 11', 'outage 12', 'outage 13', 'outage 14']);
  });
});
