/**
 * The timeline (issue 17): GET /v1/streams/{id}/timeline on a real server on 127.0.0.1 with the
 * probe-needle model and a generated needle clip (a.mp4: a green square on a red screen at 10-13 s),
 * ingested with the default frame gate (the red screen's unchanged seconds extend the 10-s chunk).
 * A watch exists before the needle (the first frame is held back until it does, as in
 * watches.test.ts), so the timeline holds a real alert; an outage is written into the stream's
 * manifest while no server holds it (as gaps.test.ts does). Checks spans (gated spans, thumbnails
 * that load), the gap, the alert, tiers, ranges, 4xx, and the OpenAPI schema. Then the bound on a
 * real chunk store of 2000 chunks: at most 500 spans, and point lookups that follow the spans, not
 * the history.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { VigilError } from '../../common/errors.js';
import { ChunkStore } from '../../memory/store/index.js';
import { streamDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { memoryHorizon } from '../../src/engine/memoryHorizon.js';
import { MAX_TIMELINE_SPANS, streamTimeline, type TimelineSource } from '../../src/engine/timeline.js';
import { makeChunk, TINY } from '../memory/helpers.js';
import { AUTH, disposeSharedModel, makeClips, openApiValidator, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());

interface Timeline {
  from: number;
  to: number;
  memory: { from: number | null; to: number | null };
  spans: Array<{ from: number; to: number; chunkId: number; chunks: number; thumbnail: string | null }>;
  chunks: number;
  step: number;
  truncated: boolean;
  gaps: Array<{ from: number; to: number; reason: string }>;
  alerts: Array<{ watchId: string; question: string | null; t: number; answer: string }>;
  tiers: Array<{ tier: string; from: number; to: number }>;
}

describe('timeline over the API', () => {
  let clips: string;
  let dataDir: string;
  let server: TestServer;
  let holdFrames = true;
  let watchId = '';
  const api = () => request(server.url);
  const start = () =>
    startTestServer({
      dataDir,
      filesDir: clips,
      // The manager's default gate (the helper's is off).
      manager: {
        defaults: {},
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });
  const GAP = { from: 20.5, to: 23.5, reason: 'camera unreachable (written by the test)' };

  before(async () => {
    clips = await makeClips(30);
    dataDir = tempDir('vigil-timeline-');
    server = await start();
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('a').state === 'failed');
    const watch = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0 }).expect(201);
    watchId = watch.body.id;
    holdFrames = false;
    await api().post('/v1/streams/a/start').set(AUTH).expect(200);
    await waitEnded(server, 'a');
    await waitFor('the alert', () => server.ready.alerts({ stream: 'a', limit: 10 }).alerts.length > 0);
    await server.close();
    // An outage on record, written into the manifest while no server holds it.
    const store = ChunkStore.open({ dir: streamStoreDir(streamDir(dataDir, 'a')), create: false });
    store.recordGap({ tStart: GAP.from, tEnd: GAP.to, reason: GAP.reason });
    await store.dispose();
    server = await start();
  });
  after(() => server?.close());

  it('the whole memory: gated scene spans with thumbnails, the gap, the alert, the tiers', async () => {
    const valid = await openApiValidator(server.url);
    const res = await api().get('/v1/streams/a/timeline').set(AUTH).expect(200);
    valid('Timeline', res.body);
    const tl = res.body as Timeline;
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify(tl));
    const status = server.ready.status('a');
    assert.deepEqual([tl.from, tl.to], [status.memory!.horizon.from, status.memory!.horizon.to]);
    assert.deepEqual(tl.memory, { from: tl.from, to: tl.to });
    // One span per chunk (30 sampled frames, 2 gated): in time order, the first at 0.
    assert.equal(tl.chunks, status.memory!.chunks);
    assert.equal(tl.spans.length, tl.chunks);
    assert.equal(tl.step, 1);
    assert.equal(tl.truncated, false);
    assert.equal(tl.spans[0]!.from, 0);
    for (let i = 1; i < tl.spans.length; i++) assert.ok(tl.spans[i]!.from >= tl.spans[i - 1]!.to, `span ${i} starts after the previous one ends`);
    // The red screen (10-13 s) is one picture: the gate extended the 10-s chunk over 11 and 12.
    const scene = tl.spans.find((s) => s.from === 10);
    assert.ok(scene && scene.to >= 12, JSON.stringify(tl.spans.slice(8, 13)));
    assert.equal(tl.spans.filter((s) => s.to - s.from > 1.5).length, 1, 'only the red screen is a long scene');
    // Every span has a thumbnail that loads.
    assert.ok(tl.spans.every((s) => s.thumbnail === `/v1/streams/a/frames/${s.chunkId}.jpg`), JSON.stringify(tl.spans.filter((s) => !s.thumbnail)));
    const jpeg = await api().get(scene.thumbnail!).set(AUTH).expect(200);
    assert.equal(jpeg.headers['content-type'], 'image/jpeg');
    assert.deepEqual(tl.gaps, [GAP]);
    assert.equal(tl.alerts.length, 1, JSON.stringify(tl.alerts));
    const alert = tl.alerts[0]!;
    assert.deepEqual({ watchId: alert.watchId, question: alert.question }, { watchId, question: question('red') });
    assert.match(alert.answer, /green/i);
    assert.ok(alert.t >= 10 && alert.t <= 13, `the alert is at the needle, not ${alert.t}`);
    assert.deepEqual(tl.tiers, [{ tier: 'kv-float32', from: tl.from, to: tl.to }]);
  });

  it('a range: only what overlaps it', async () => {
    const needle = (await api().get('/v1/streams/a/timeline?from=9.5&to=14').set(AUTH).expect(200)).body as Timeline;
    assert.deepEqual([needle.from, needle.to], [9.5, 14]);
    assert.deepEqual(
      needle.spans.map((s) => [s.from, s.to]),
      // A chunk is a frame at its time; the gated 10-s chunk reaches to 12.
      [
        [10, 12],
        [13, 13],
        [14, 14],
      ],
    );
    assert.equal(needle.alerts.length, 1);
    assert.deepEqual(needle.gaps, []);
    assert.deepEqual(needle.tiers, [{ tier: 'kv-float32', from: 9.5, to: 14 }]);
    const outage = (await api().get('/v1/streams/a/timeline?from=21&to=22').set(AUTH).expect(200)).body as Timeline;
    assert.deepEqual(outage.gaps, [GAP]);
    assert.deepEqual(outage.alerts, []);
    assert.deepEqual(
      outage.spans.map((s) => s.from),
      [21, 22],
    );
    // Only `from`: to the memory's end; past it: empty.
    assert.equal(((await api().get('/v1/streams/a/timeline?from=25').set(AUTH).expect(200)).body as Timeline).spans.length, 5);
    const beyond = (await api().get('/v1/streams/a/timeline?from=100&to=200').set(AUTH).expect(200)).body as Timeline;
    assert.deepEqual([beyond.spans, beyond.chunks, beyond.alerts, beyond.gaps, beyond.tiers], [[], 0, [], [], []]);
  });

  it("an answer's evidence lists only chunks that contributed: retrieval's zero-score fillers stay in the context", async () => {
    type Chunk = { chunkId: number; tStart: number; tEnd: number; score: number };
    const ask = async (body: object) => {
      const answer = (await api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), ...body }).expect(200)).body as { text: string; evidence: Array<Chunk | { gap: unknown }>; contextTokens: number };
      // The outage written above is evidence too (an outage in the searched range): chunks only here.
      return { ...answer, evidence: answer.evidence.filter((e): e is Chunk => !('gap' in e)) };
    };
    // Only the needle chunk scores with the probe model: r = 4 fills three slots with chunks scoring 0.
    const four = await ask({ r: 4 });
    const one = await ask({ r: 1 });
    assert.equal(four.text, 'green');
    assert.deepEqual(
      four.evidence.map((e) => [e.tStart, e.tEnd]),
      [[10, 12]],
      JSON.stringify(four.evidence),
    );
    assert.ok(four.evidence.every((e) => e.score > 0));
    // The fillers were in the context all the same: it is longer than with r = 1.
    assert.ok(four.contextTokens > one.contextTokens, `${four.contextTokens} vs ${one.contextTokens} context tokens`);
    // A fixed selection has no scores: every chunk it holds is listed.
    const uniform = await ask({ r: 4, mode: 'uniform' });
    assert.equal(uniform.evidence.length, 4, JSON.stringify(uniform.evidence));
  });

  it('bad parameters are 400 naming the problem; an unknown stream is 404', async () => {
    for (const [query, problem] of [
      ['from=5&to=2', /from must be <= to/],
      ['from=-1', /from: a number of stream seconds/],
      ['to=abc', /to: a number of stream seconds/],
      ['from=1e3', /from: a number of stream seconds/],
      ['from=1&until=3', /until/],
    ] as const) {
      const res = await api().get(`/v1/streams/a/timeline?${query}`).set(AUTH).expect(400);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, problem, query);
    }
    const missing = await api().get('/v1/streams/nope/timeline').set(AUTH).expect(404);
    assert.equal(missing.body.error.code, 'STREAM_NOT_FOUND');
    await api().get('/v1/streams/a/timeline').expect(401);
    const doc = (await api().get('/openapi.json').expect(200)).body;
    assert.ok(doc.paths['/v1/streams/{id}/timeline'].get);
    assert.equal(doc.components.schemas.Timeline.additionalProperties, false);
  });
});

describe('timeline bounds (a real chunk store of 2000 chunks)', () => {
  it('merges to at most 500 spans and reads per span, not per chunk of history', async (t) => {
    const dir = tempDir('vigil-timeline-store-');
    // Small segments: many summaries, and ranges that cut segments.
    const store = ChunkStore.open({ dir, geometry: TINY, fsync: 'none', segmentBytes: 64 * 1024 });
    t.after(() => store.dispose());
    const N = 2000;
    for (let i = 0; i < N; i++) await store.append(makeChunk(i, TINY, 1));
    await store.flush();
    // A damaged chunk dropped from the store leaves a hole in the ids.
    store.dropChunks([1501]);
    store.recordGap({ tStart: 100, tEnd: 104, reason: 'outage' });
    let lookups = 0;
    const counted: TimelineSource['store'] = {
      chunkSpan: (id) => {
        lookups++;
        return store.chunkSpan(id);
      },
      gaps: (range) => store.gaps(range),
    };
    const stats = store.stats();
    assert.ok(stats.segments.length > 10, `${stats.segments.length} segments`);
    const source: TimelineSource = { stream: 's', store: counted, stats, horizon: memoryHorizon(stats, (from, to, limit) => store.gaps({ from, to, limit })), alerts: [], questions: new Map(), hasThumbnail: () => false };

    // The whole history (chunks span 2 s each: 0..4000 s): step 4, 500 spans covering it all.
    let started = performance.now();
    const whole = streamTimeline(source);
    t.diagnostic(`whole history: ${N} chunks in ${whole.spans.length} spans, ${lookups} lookups, ${(performance.now() - started).toFixed(1)} ms`);
    assert.equal(whole.chunks, N);
    assert.equal(whole.step, Math.ceil(N / MAX_TIMELINE_SPANS));
    assert.equal(whole.truncated, true);
    assert.equal(whole.spans.length, MAX_TIMELINE_SPANS);
    assert.deepEqual([whole.spans[0]!.from, whole.spans.at(-1)!.to], [0, 2 * N]);
    assert.ok(whole.spans.every((s, i) => s.chunks === whole.step && (i === 0 || s.from === whole.spans[i - 1]!.to)), 'consecutive, each of step chunks');
    assert.deepEqual(whole.gaps, [{ from: 100, to: 104, reason: 'outage' }]);
    // Two lookups per span and a handful per segment edge: nowhere near one per chunk.
    assert.ok(lookups <= 2 * MAX_TIMELINE_SPANS + 100, `${lookups} lookups for ${N} chunks`);

    // A short range deep in the history: a span per chunk, cut to the range, read at its own cost.
    lookups = 0;
    started = performance.now();
    const short = streamTimeline(source, { from: 2999, to: 3021 });
    t.diagnostic(`a 22-s range: ${short.spans.length} spans, ${lookups} lookups, ${(performance.now() - started).toFixed(1)} ms`);
    assert.equal(short.step, 1);
    assert.deepEqual(
      short.spans.map((s) => s.from),
      [2998, 3000, 3004, 3006, 3008, 3010, 3012, 3014, 3016, 3018, 3020],
      'chunk 1501 (3002-3004 s) was dropped',
    );
    assert.ok(lookups <= 2 * short.spans.length + 80, `${lookups} lookups for a ${short.spans.length}-span range`);
    assert.throws(() => streamTimeline(source, { from: 5, to: 1 }), /from \(5\) is after to \(1\)/);
  });
});
