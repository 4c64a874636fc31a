/**
 * Watches and alerts over the REST API (issue 17), on a real server on 127.0.0.1 with the
 * probe-needle model and a generated needle clip (a.mp4: a green square on a red screen at 10-13 s).
 * The watch must exist before the needle is ingested, so the stream's first frame is held back: the
 * test fault fails the ingest before anything is stored, the watch is added, and `start` resumes the
 * clip from its beginning. Covers: the alert at GET /v1/alerts and live on GET /v1/alerts/events
 * (and unsubscribing when the client leaves), list/get/delete, bad input (4xx naming the problem or
 * the limit), responses valid against the served OpenAPI schemas, and watches and alerts kept
 * across a restart.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { VigilError } from '../../common/errors.js';
import { AUTH, disposeSharedModel, makeClips, openApiValidator, parseSse, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());

/** An open SSE connection: its events so far, and a way to wait for one. */
interface EventClient {
  events: Array<{ event: string; data: string }>;
  /** Comment lines (heartbeats) received. */
  comments: number;
  next(what: string, match: (e: { event: string; data: string }) => boolean, timeoutMs?: number): Promise<{ event: string; data: string }>;
  close(): void;
  closed: Promise<void>;
}

function openEvents(url: string): Promise<EventClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: AUTH }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`event stream answered ${res.statusCode}`));
        res.resume();
        return;
      }
      assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
      let text = '';
      const client: EventClient = {
        events: [],
        comments: 0,
        next: (what, match, timeoutMs = 20_000) => waitFor(what, () => client.events.find(match), timeoutMs),
        close: () => req.destroy(),
        closed: new Promise((done) => res.on('close', () => done())),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        const end = text.lastIndexOf('\n\n');
        if (end < 0) return;
        const blocks = text.slice(0, end + 2);
        client.comments += blocks.split('\n').filter((line) => line.startsWith(':')).length;
        client.events.push(...parseSse(blocks));
        text = text.slice(end + 2);
      });
      res.on('error', () => undefined);
      resolve(client);
    });
    req.on('error', (error) => {
      if (!(error as NodeJS.ErrnoException).code?.startsWith('ECONNRESET')) reject(error);
    });
  });
}

describe('watches and alerts over the API', () => {
  let clips: string;
  let dataDir: string;
  let server: TestServer;
  let valid: (schema: string, value: unknown) => void;
  /** While true, the stream's first frame fails its ingest before anything is stored. */
  let holdFrames = true;
  const api = () => request(server.url);
  const start = () =>
    startTestServer({
      dataDir,
      filesDir: clips,
      server: { alertHeartbeatMs: 200 },
      manager: {
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });

  before(async () => {
    clips = await makeClips(30);
    dataDir = tempDir('vigil-watches-');
    server = await start();
    valid = await openApiValidator(server.url);
  });
  after(() => server?.close());

  let watchId = '';
  let alertId = '';

  it('a watch created before the needle alerts: at GET /v1/alerts and live on the event stream', async () => {
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    // The first frame is refused: the stream fails with nothing stored.
    const failed = await waitFor('the held stream to fail', () => {
      const s = server.ready.status('a');
      return s.state === 'failed' ? s : undefined;
    });
    assert.equal(failed.memory?.chunks ?? 0, 0, JSON.stringify(failed.memory));

    const events = await openEvents(`${server.url}/v1/alerts/events`);
    const filtered = await openEvents(`${server.url}/v1/alerts/events?stream=a`);
    await events.next('the ready event', (e) => e.event === 'ready');
    await filtered.next('the ready event (stream a)', (e) => e.event === 'ready');
    assert.equal(server.ready.alertSubscribers, 2);

    const created = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0 });
    assert.equal(created.status, 201, created.text);
    valid('Watch', created.body);
    watchId = created.body.id;
    assert.equal(created.headers.location, `/v1/streams/a/watches/${watchId}`);
    assert.deepEqual({ ...created.body, id: undefined, createdAt: undefined }, {
      id: undefined,
      createdAt: undefined,
      stream: 'a',
      question: question('red'),
      trigger: 'answer-matches',
      pattern: 'green',
      cooldownSec: 0,
      maxIntervalSec: 30,
      active: true,
      // Counters since the memory opened (test/api/watchStats.test.ts watches them move).
      stats: { framesScored: 0, deferred: 0, checks: 0, checksByReason: { first: 0, score: 0, interval: 0, 'left-window': 0 }, alerts: 0, suppressed: 0, errors: 0, lastError: null, prefilterMs: 0 },
    });
    // Nothing ingested yet: no alert.
    const none = await api().get('/v1/alerts').set(AUTH).expect(200);
    assert.deepEqual(none.body, { alerts: [], truncated: false });

    const questionJobs = server.ready.scheduler.stats().completed.question;
    holdFrames = false;
    await api().post('/v1/streams/a/start').set(AUTH).expect(200);
    await waitEnded(server, 'a');
    const listed = await waitFor('the alert at GET /v1/alerts', async () => {
      const res = await api().get('/v1/alerts').set(AUTH).expect(200);
      return res.body.alerts.length > 0 ? res.body : undefined;
    });
    valid('AlertList', listed);
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify({ watch: created.body, alerts: listed }));
    assert.equal(listed.alerts.length, 1, JSON.stringify(listed));
    const alert = listed.alerts[0];
    assert.equal(alert.watchId, watchId);
    assert.equal(alert.stream, 'a');
    assert.match(alert.answer, /green/i);
    assert.ok(alert.t >= 10 && alert.t <= 13, `the alert is at the needle (10-13 s), not at ${alert.t}`);
    assert.ok(alert.evidence.length > 0);
    alertId = alert.id;
    // Watch checks are model work: they took turns in the scheduler (the reopen, the first frame's check, the alerting one at least).
    assert.ok(server.ready.scheduler.stats().completed.question - questionJobs >= 3, JSON.stringify(server.ready.scheduler.stats()));

    // The same alert, live, on both event streams (the unfiltered one and the one for stream a).
    for (const client of [events, filtered]) {
      const live = await client.next('the alert event', (e) => e.event === 'alert');
      const body = JSON.parse(live.data);
      valid('Alert', body);
      assert.deepEqual(body, alert);
      assert.equal(client.events.filter((e) => e.event === 'alert').length, 1);
    }

    // An idle event stream gets a comment line now and then (every 200 ms here, 15 s by default).
    await waitFor('a heartbeat', () => events.comments >= 1, 3000);
    // Closing the connection unsubscribes.
    events.close();
    filtered.close();
    await waitFor('the event streams to unsubscribe', () => server.ready.alertSubscribers === 0);

    // Filters: stream, since (ms or ISO), limit.
    assert.equal((await api().get('/v1/alerts?stream=a').set(AUTH).expect(200)).body.alerts.length, 1);
    assert.equal((await api().get(`/v1/alerts?since=${alert.wallTime}`).set(AUTH).expect(200)).body.alerts.length, 1);
    assert.equal((await api().get(`/v1/alerts?since=${alert.wallTime + 1}`).set(AUTH).expect(200)).body.alerts.length, 0);
    assert.equal((await api().get(`/v1/alerts?since=${new Date(alert.wallTime + 1000).toISOString()}`).set(AUTH).expect(200)).body.alerts.length, 0);
    assert.deepEqual((await api().get('/v1/alerts?limit=1').set(AUTH).expect(200)).body, { alerts: [alert], truncated: false });
  });

  it('the OpenAPI document has the watch and alert routes and exact schemas', async () => {
    const doc = (await api().get('/openapi.json').expect(200)).body;
    for (const p of ['/v1/streams/{id}/watches', '/v1/streams/{id}/watches/{watchId}', '/v1/alerts', '/v1/alerts/events']) assert.ok(doc.paths[p], p);
    assert.ok(doc.paths['/v1/streams/{id}/watches/{watchId}'].delete);
    const create = doc.components.schemas.CreateWatch;
    assert.deepEqual(create.required, ['question', 'trigger']);
    assert.equal(create.additionalProperties, false);
    assert.equal(create.properties.notify.type, 'array');
    assert.equal(create.properties.notify.items.type, 'string');
    for (const name of ['Watch', 'WatchList', 'Alert', 'AlertEvidence', 'AlertList']) assert.equal(doc.components.schemas[name].additionalProperties, false, name);
  });

  it('lists, gets and deletes watches; unknown stream or watch is 404', async () => {
    const second = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('cyan'), trigger: 'answer-changes' }).expect(201);
    assert.equal(second.body.pattern, undefined);
    assert.equal(second.body.cooldownSec, 60);
    const list = (await api().get('/v1/streams/a/watches').set(AUTH).expect(200)).body;
    valid('WatchList', list);
    assert.deepEqual(
      list.watches.map((w: { id: string }) => w.id),
      [watchId, second.body.id],
    );
    const one = (await api().get(`/v1/streams/a/watches/${watchId}`).set(AUTH).expect(200)).body;
    valid('Watch', one);
    assert.equal(one.pattern, 'green');

    await api().delete(`/v1/streams/a/watches/${second.body.id}`).set(AUTH).expect(204);
    for (const res of [
      await api().get(`/v1/streams/a/watches/${second.body.id}`).set(AUTH),
      await api().delete(`/v1/streams/a/watches/${second.body.id}`).set(AUTH),
    ]) {
      assert.equal(res.status, 404, res.text);
      assert.equal(res.body.error.code, 'NOT_FOUND');
      assert.match(res.body.error.message, new RegExp(second.body.id));
      valid('Error', res.body);
    }
    assert.deepEqual(
      (await api().get('/v1/streams/a/watches').set(AUTH).expect(200)).body.watches.map((w: { id: string }) => w.id),
      [watchId],
    );
    for (const res of [
      await api().get('/v1/streams/nope/watches').set(AUTH),
      await api().post('/v1/streams/nope/watches').set(AUTH).send({ question: question('red'), trigger: 'yes' }),
      await api().get(`/v1/streams/nope/watches/${watchId}`).set(AUTH),
      await api().delete(`/v1/streams/nope/watches/${watchId}`).set(AUTH),
      await api().get('/v1/alerts?stream=nope').set(AUTH),
      await api().get('/v1/alerts/events?stream=nope').set(AUTH),
    ]) {
      assert.equal(res.status, 404, res.text);
      assert.equal(res.body.error.code, 'STREAM_NOT_FOUND');
      valid('Error', res.body);
    }
    // Auth as every /v1 route.
    assert.equal((await api().get('/v1/streams/a/watches')).status, 401);
    assert.equal((await api().get('/v1/alerts')).status, 401);
    assert.equal((await api().get('/v1/alerts/events')).status, 401);
  });

  it('bad input is a 4xx naming the problem; too many watches names the limit', async () => {
    const bad = async (body: unknown, message: RegExp) => {
      const res = await api().post('/v1/streams/a/watches').set(AUTH).send(body as object);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, message);
      valid('Error', res.body);
    };
    const q = question('red');
    await bad({ question: q, trigger: 'answer-matches', pattern: '(unclosed' }, /pattern is not a valid regular expression/);
    await bad({ question: q, trigger: 'sometimes' }, /trigger/);
    await bad({ question: q, trigger: 'answer-matches' }, /needs a pattern/);
    await bad({ question: q, trigger: 'yes', pattern: 'x' }, /only for trigger answer-matches/);
    await bad({ question: q, trigger: 'yes', notify: ['home'] }, /notify/);
    await bad({ question: '', trigger: 'yes' }, /question/);
    await bad({ question: 'x'.repeat(2001), trigger: 'yes' }, /question: .*2000/);
    await bad({ question: q, trigger: 'answer-matches', pattern: 'g'.repeat(201) }, /pattern: .*200/);
    await bad({ question: q, trigger: 'yes', cooldownSec: -1 }, /cooldownSec/);
    await bad({ question: q, trigger: 'yes', maxIntervalSec: 0 }, /maxIntervalSec/);
    const notJson = await api().post('/v1/streams/a/watches').set(AUTH).set('Content-Type', 'application/json').send('{"question":');
    assert.equal(notJson.status, 400, notJson.text);

    for (const query of ['limit=0', 'limit=1001', 'limit=abc', 'since=yesterday', 'colour=red']) {
      const res = await api().get(`/v1/alerts?${query}`).set(AUTH);
      assert.equal(res.status, 400, `${query}: ${res.text}`);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      valid('Error', res.body);
    }

    // A second stream, stopped (no ingest needed): 16 watches fit, the 17th is refused naming the limit.
    await api().post('/v1/streams').set(AUTH).send({ id: 'b', source: 'b.mp4', window: 4 }).expect(201);
    await api().post('/v1/streams/b/stop').set(AUTH).expect(200);
    for (let i = 0; i < 16; i++) await api().post('/v1/streams/b/watches').set(AUTH).send({ question: `${question('yellow')} ${i}`, trigger: 'yes' }).expect(201);
    const full = await api().post('/v1/streams/b/watches').set(AUTH).send({ question: question('yellow'), trigger: 'yes' });
    assert.equal(full.status, 400, full.text);
    assert.match(full.body.error.message, /at most 16 watches/);
    assert.equal((await api().get('/v1/streams/b/watches').set(AUTH).expect(200)).body.watches.length, 16);
    await api().delete('/v1/streams/b?purge=true').set(AUTH).expect(204);
  });

  it('watches and alerts survive a restart; a reopened watch alerts live', async () => {
    // A second stream whose ingest is held before its first frame, with a watch, across the restart.
    holdFrames = true;
    await api().post('/v1/streams').set(AUTH).send({ id: 'r', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('stream r to be held', () => server.ready.status('r').state === 'failed');
    const rWatch = (await api().post('/v1/streams/r/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: '^green$' }).expect(201)).body;
    const before = (await api().get('/v1/streams/a/watches').set(AUTH).expect(200)).body;

    await server.close();
    server = await start();
    const afterRestart = (await api().get('/v1/streams/a/watches').set(AUTH).expect(200)).body;
    valid('WatchList', afterRestart);
    // The same watches; their stats count from the reopen (stream a has ended: nothing scored since).
    const withoutStats = (list: { watches: Array<{ stats: unknown }> }) => list.watches.map((w) => ({ ...w, stats: undefined }));
    assert.deepEqual(withoutStats(afterRestart), withoutStats(before));
    assert.ok(before.watches[0].stats.framesScored > 0);
    assert.equal(afterRestart.watches[0].stats.framesScored, 0);
    assert.equal(afterRestart.watches[0].id, watchId);
    assert.equal(afterRestart.watches[0].active, true);
    assert.deepEqual((await api().get(`/v1/streams/r/watches/${rWatch.id}`).set(AUTH).expect(200)).body, rWatch);
    const alerts = (await api().get('/v1/alerts?stream=a').set(AUTH).expect(200)).body;
    assert.deepEqual(
      alerts.alerts.map((a: { id: string }) => a.id),
      [alertId],
    );

    // Stream r resumed at the restart and was held again; released, its reopened watch alerts on a new subscriber.
    await waitFor('stream r to be held after the restart', () => server.ready.status('r').state === 'failed');
    const events = await openEvents(`${server.url}/v1/alerts/events?stream=r`);
    await events.next('the ready event', (e) => e.event === 'ready');
    holdFrames = false;
    await api().post('/v1/streams/r/start').set(AUTH).expect(200);
    const live = JSON.parse((await events.next('the reopened watch alert', (e) => e.event === 'alert')).data);
    assert.equal(live.watchId, rWatch.id);
    assert.equal(live.answer, 'green');
    events.close();
    await waitEnded(server, 'r');
    await waitFor('the event stream to unsubscribe', () => server.ready.alertSubscribers === 0);
    const all = (await api().get('/v1/alerts').set(AUTH).expect(200)).body;
    assert.deepEqual(
      all.alerts.map((a: { watchId: string }) => a.watchId),
      [watchId, rWatch.id],
    );
  });
});
