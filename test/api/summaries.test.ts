/**
 * Summaries of a time range (issue 17) over the REST API, on a real server on 127.0.0.1 with the
 * probe-needle model and a generated clip with scheduled scenes: a still noise scene, a green square
 * on a red screen (7-10 s), a blue square on a red screen (15-18 s) and a magenta square on a
 * yellow screen (23-26 s). Two streams of it: the default frame gate (each scene is one chunk) and
 * gating off (every second a chunk; scenes found from the frames' key distances); and a still clip
 * whose only encodes are the gate's refreshes (the first shortened by the stream's phase). Checks coverage
 * (every scene in the range has an event overlapping it), order, evidence inside each event, the
 * model's text for the red-screen events (what probe-needle answers: the square's color on the
 * asked background), the event stream, bad input, and (last) thumbnails in alert evidence.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { VigilError } from '../../common/errors.js';
import { makeProbeClip, type Needle } from '../../ingest/index.js';
import { AUTH, disposeSharedModel, openApiValidator, parseSse, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor, wholeText } from './helpers.js';

after(() => disposeSharedModel());

const CLIP_S = 30;
const STILL_S = 20;
const NEEDLES: Needle[] = [
  { start: 7, duration: 3, background: 'red', square: 'green' },
  { start: 15, duration: 3, background: 'red', square: 'blue' },
  { start: 23, duration: 3, background: 'yellow', square: 'magenta' },
];
/** The scheduled scenes (stream s, end exclusive): noise, then each needle and the noise after it. */
const SCENES = [
  { from: 0, to: 7, square: null },
  { from: 7, to: 10, square: 'green' },
  { from: 10, to: 15, square: null },
  { from: 15, to: 18, square: 'blue' },
  { from: 18, to: 23, square: null },
  { from: 23, to: 26, square: null },
  { from: 26, to: CLIP_S + 1, square: null },
];

interface Evidence {
  chunkId: number;
  t: number;
  tEnd: number;
  score: number;
  thumbnail: string | null;
}
interface Event {
  from: number;
  to: number;
  text: string;
  chunks: number;
  startedBy: string;
  evidence: Evidence[];
}

describe('summaries of a time range over the API', () => {
  let server: TestServer;
  let valid: (schema: string, value: unknown) => void;
  /** While true, stream 'watched' fails its first frame (so its watch exists before the needle). */
  let holdWatched = true;
  const api = () => request(server.url);
  const summarize = (id: string, body: object) => api().post(`/v1/streams/${id}/summaries`).set(AUTH).send(body);

  before(async () => {
    const clips = tempDir('vigil-summary-clips-');
    // A still haystack (one noise frame for the whole clip), so the gate holds each scene in one chunk.
    await makeProbeClip({ out: path.join(clips, 'scenes.mp4'), durationS: CLIP_S, width: 160, height: 90, noiseFps: 1 / (CLIP_S + 0.5), needles: NEEDLES });
    // One still picture for 20 s: only the gate's refreshes are encoded.
    await makeProbeClip({ out: path.join(clips, 'still.mp4'), durationS: STILL_S, width: 160, height: 90, noiseFps: 1 / (STILL_S + 0.5), needles: [] });
    server = await startTestServer({
      filesDir: clips,
      manager: {
        defaults: {},
        testFaults: {
          beforeAddFrame: (id) => {
            if (id === 'watched' && holdWatched) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });
    valid = await openApiValidator(server.url);
    await api().post('/v1/streams').set(AUTH).send({ id: 'gated', source: 'scenes.mp4', window: 4 }).expect(201);
    await api().post('/v1/streams').set(AUTH).send({ id: 'all', source: 'scenes.mp4', window: 4, gate: 'off' }).expect(201);
    await api().post('/v1/streams').set(AUTH).send({ id: 'lobby', source: 'still.mp4', window: 4, gate: { maxHoldSec: 10 } }).expect(201);
    await waitEnded(server, 'gated');
    await waitEnded(server, 'all');
    await waitEnded(server, 'lobby');
  });
  after(() => server?.close());

  /** Events only (outage entries left out), checked for order, coverage of `scenes` and evidence inside each span. */
  function checkEvents(body: { events: Array<Event | { gap: unknown }>; from: number; to: number }, scenes: typeof SCENES): Event[] {
    const events = body.events.filter((e): e is Event => !('gap' in e));
    assert.ok(events.length > 0, JSON.stringify(body));
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      assert.ok(e.from <= e.to && e.from >= body.from && e.to <= body.to, `event ${i} lies in the range: ${JSON.stringify(e)}`);
      if (i > 0) assert.ok(e.from > events[i - 1]!.to, `events in time order, not overlapping: ${JSON.stringify(events.map((x) => [x.from, x.to]))}`);
      for (const ev of e.evidence) assert.ok(ev.tEnd >= e.from && ev.t <= e.to, `evidence ${JSON.stringify(ev)} lies in event ${e.from}..${e.to}`);
    }
    for (const scene of scenes) {
      if (scene.to <= body.from || scene.from > body.to) continue;
      assert.ok(
        events.some((e) => e.from < scene.to && e.to >= scene.from),
        `scene ${scene.from}..${scene.to} has an event overlapping it: ${JSON.stringify(events.map((x) => [x.from, x.to]))}`,
      );
    }
    return events;
  }

  for (const id of ['gated', 'all']) {
    it(`${id}: one event per scheduled scene, in order, with evidence inside; the red-screen events name their square`, async () => {
      const res = await summarize(id, { from: 0, to: CLIP_S, question: question('red'), maxTokens: 3 });
      assert.equal(res.status, 200, res.text);
      valid('Summary', res.body);
      if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify(res.body, null, 1));
      const events = checkEvents(res.body, SCENES);
      // Scenes are at least 3 s apart and the cap (8) is above their number: one event each.
      assert.equal(events.length, SCENES.length, JSON.stringify(events.map((e) => [e.from, e.to, e.startedBy])));
      assert.equal(res.body.segmentation.method, id === 'gated' ? 'gate+keys' : 'keys');
      assert.equal(res.body.segmentation.chunks, id === 'gated' ? SCENES.length : CLIP_S + 1);
      for (const [i, scene] of SCENES.entries()) {
        const e = events[i]!;
        assert.ok(Math.abs(e.from - scene.from) < 1e-6, `event ${i} starts at its scene: ${e.from} vs ${scene.from}`);
        // The model's own answer, from the frames retrieved inside the event's span.
        assert.equal(e.text, scene.square ?? 'unknown', `event ${i} (${e.from}..${e.to})`);
        if (scene.square) {
          assert.ok(e.evidence.length > 0, `a needle event cites its frames: ${JSON.stringify(e)}`);
          const url = e.evidence[0]!.thumbnail;
          assert.ok(url, JSON.stringify(e.evidence));
          const jpeg = await api().get(url).set(AUTH).expect(200);
          assert.equal(jpeg.headers['content-type'], 'image/jpeg');
        }
      }
      assert.equal(res.body.note, null);
      assert.equal(res.body.coverage.outOfMemory, false);
    });
  }

  it("a still scene is one event: the gate's shortened first refresh (by the stream id's phase) is no change", async () => {
    // 'lobby' has phase 4.51 s of 10: refreshes at 6 (the first, 10 - 4.51 after the stream's first frame) and 16.
    const res = await summarize('lobby', { from: 0, to: STILL_S, question: question('red'), maxTokens: 3 });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.segmentation.chunks, 3);
    assert.deepEqual(
      res.body.events.map((e: Event) => [e.from, e.startedBy]),
      [[0, 'range-start']],
    );
  });

  it('maxEvents caps the events (scenes merged across their weakest boundaries); a sub-range covers its scenes; the default question', async () => {
    const capped = await summarize('all', { from: 0, to: CLIP_S, maxEvents: 3, question: question('red'), maxTokens: 3 });
    assert.equal(capped.status, 200, capped.text);
    valid('Summary', capped.body);
    const events = checkEvents(capped.body, SCENES);
    assert.equal(events.length, 3);
    assert.ok(events[0]!.from === 0 && events.at(-1)!.to === CLIP_S, JSON.stringify(events));

    const part = await summarize('gated', { from: 12, to: 20, question: question('red'), maxTokens: 3 });
    assert.equal(part.status, 200, part.text);
    const inPart = checkEvents(part.body, SCENES);
    assert.deepEqual(
      inPart.map((e) => e.text),
      ['unknown', 'blue', 'unknown'],
    );
    assert.equal(inPart[0]!.from, 12, 'the first event is clipped to the range');

    const plain = await summarize('gated', { from: 0, to: CLIP_S, maxEvents: 2 });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.body.question, 'Describe what happens.');
    assert.equal(plain.body.events.length, 2);
    for (const e of plain.body.events) assert.equal(typeof e.text, 'string');
  });

  it('with Accept: text/event-stream: a plan, one event per finished event in order, then the whole summary', async () => {
    const res = await api()
      .post('/v1/streams/all/summaries')
      .set(AUTH)
      .set('Accept', 'text/event-stream')
      .send({ from: 0, to: CLIP_S, question: question('red'), maxTokens: 3 })
      .buffer(true)
      .parse(wholeText);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    const events = parseSse(res.body as string);
    assert.deepEqual(
      events.map((e) => e.event),
      ['plan', ...SCENES.map(() => 'event'), 'summary'],
    );
    const plan = JSON.parse(events[0]!.data);
    valid('SummaryPlan', plan);
    const summary = JSON.parse(events.at(-1)!.data);
    valid('Summary', summary);
    assert.deepEqual(
      events.slice(1, -1).map((e) => JSON.parse(e.data)),
      summary.events,
    );
    assert.deepEqual(
      plan.events.map((e: Event) => [e.from, e.to]),
      summary.events.map((e: Event) => [e.from, e.to]),
    );
  });

  it('a range memory does not hold is 200 with no events and the reason; bad input is 400; an unknown stream 404', async () => {
    const later = await summarize('gated', { from: 100, to: 200 });
    assert.equal(later.status, 200, later.text);
    valid('Summary', later.body);
    assert.deepEqual(later.body.events, []);
    assert.equal(later.body.coverage.outOfMemory, true);
    assert.match(later.body.note, /no memory of 1:40–3:20 yet/);

    for (const [body, message] of [
      [{ from: 10, to: 5 }, /from must be <= to/],
      [{ from: -1, to: 5 }, /from/],
      [{ from: 0 }, /to/],
      [{ from: 0, to: 5, maxEvents: 0 }, /maxEvents/],
      [{ from: 0, to: 5, maxEvents: 33 }, /maxEvents/],
      [{ from: 0, to: 5, maxEvents: 1.5 }, /maxEvents/],
      [{ from: 0, to: 5, question: '' }, /question/],
      [{ from: 0, to: 5, colour: 'red' }, /colour/],
      [{ from: '0', to: 5 }, /from/],
    ] as const) {
      const res = await summarize('gated', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, message);
      valid('Error', res.body);
    }
    // The OpenAPI document has the route and closed schemas.
    const doc = (await api().get('/openapi.json').expect(200)).body;
    assert.ok(doc.paths['/v1/streams/{id}/summaries'].post);
    assert.deepEqual(doc.components.schemas.SummaryRequest.required, ['from', 'to']);
    for (const name of ['SummaryRequest', 'Summary', 'SummaryEvent', 'SummaryEvidence', 'SummaryPlan']) assert.equal(doc.components.schemas[name].additionalProperties, false, name);
    const unknown = await summarize('nope', { from: 0, to: 5 });
    assert.equal(unknown.status, 404, unknown.text);
    assert.equal(unknown.body.error.code, 'STREAM_NOT_FOUND');
    assert.equal((await api().post('/v1/streams/gated/summaries').send({ from: 0, to: 5 })).status, 401);
  });

  it('alert evidence carries thumbnail URLs (GET /v1/alerts and the event stream); the stored alert is unchanged', async () => {
    await api().post('/v1/streams').set(AUTH).send({ id: 'watched', source: 'scenes.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('watched').state === 'failed');
    await api().post('/v1/streams/watched/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0 }).expect(201);
    const live = openAlertEvents(`${server.url}/v1/alerts/events?stream=watched`);
    await live.ready;
    holdWatched = false;
    await api().post('/v1/streams/watched/start').set(AUTH).expect(200);
    await waitEnded(server, 'watched');
    const listed = await waitFor('the alert', async () => {
      const res = await api().get('/v1/alerts?stream=watched').set(AUTH).expect(200);
      return res.body.alerts.length > 0 ? res.body : undefined;
    });
    valid('AlertList', listed);
    const alert = listed.alerts[0];
    assert.ok(alert.evidence.length > 0, JSON.stringify(alert));
    for (const e of alert.evidence) {
      assert.equal(e.thumbnail, `/v1/streams/watched/frames/${e.chunkId}.jpg`);
      const jpeg = await api().get(e.thumbnail).set(AUTH).expect(200);
      assert.equal(jpeg.headers['content-type'], 'image/jpeg');
    }
    const pushed = await waitFor('the live alert', () => live.alerts[0]);
    valid('Alert', pushed);
    assert.deepEqual(pushed, alert);
    live.close();
    // The persisted record (what webhooks send) keeps its own shape.
    const stored = server.ready.alerts({ stream: 'watched', limit: 10 }).alerts[0]!;
    assert.equal(stored.id, alert.id);
    assert.ok(stored.evidence.every((e) => !('thumbnail' in e)), JSON.stringify(stored));
  });
});

/** A subscriber to GET /v1/alerts/events: its alerts as they come. */
function openAlertEvents(url: string): { ready: Promise<void>; alerts: unknown[]; close(): void } {
  const alerts: unknown[] = [];
  let req: http.ClientRequest;
  const ready = new Promise<void>((resolve, reject) => {
    req = http.get(url, { headers: AUTH }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        const end = text.lastIndexOf('\n\n');
        if (end < 0) return;
        for (const e of parseSse(text.slice(0, end + 2))) {
          if (e.event === 'ready') resolve();
          if (e.event === 'alert') alerts.push(JSON.parse(e.data));
        }
        text = text.slice(end + 2);
      });
      res.on('error', () => undefined);
    });
    req.on('error', (error) => {
      if (!(error as NodeJS.ErrnoException).code?.startsWith('ECONNRESET')) reject(error);
    });
  });
  return { ready, alerts, close: () => req.destroy() };
}
