/**
 * Health watches through the service (issue 17): no model, judged on the manager's timer (every
 * 250 ms here) from the ingest's own state. Real components: GStreamer RTSP cameras on 127.0.0.1
 * (test/fixtures/rtspServer.ts, skipped loudly without it except with CI=true), a webhook receiver
 * on 127.0.0.2, the probe-needle model.
 * - A camera killed mid-stream: the offline alert comes within the threshold plus one tick of its
 *   last frame (listed, live on SSE, and delivered to the watch's webhook), and "back online" when
 *   it is served again. The model held for 4 s makes ingest fall behind: a lag alert, then "caught
 *   up". The camera's changing picture never raises its frozen watch.
 * - A camera whose picture is one still image for 4 s, then changes: frozen, then cleared.
 * - Bad specs are 400 naming the problem; health watches count in the 16-watch limit; they are
 *   listed, fetched, deleted and kept across a restart.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import type { Alert } from '../../src/engine/streamManager.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { AUTH, disposeSharedModel, openApiValidator, parseSse, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

const TICK_MS = 250;
const HOOK_ADDRESS = '127.0.0.2';

interface Hook {
  bodies: Alert[];
  port: number;
  close(): Promise<void>;
}

/** A webhook receiver that answers 204 and keeps each alert it is sent. */
async function webhookReceiver(): Promise<Hook> {
  const bodies: Alert[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      bodies.push((JSON.parse(text) as { alert: Alert }).alert);
      res.writeHead(204).end();
    });
  });
  const { port, close } = await listenLoopback(server, HOOK_ADDRESS);
  return { bodies, port, close };
}

/** The alert event stream: events so far; close() ends it. */
function alertEvents(url: string): { events: Array<{ event: string; data: string }>; close(): void } {
  const events: Array<{ event: string; data: string }> = [];
  let text = '';
  const req = http.get(url, { headers: AUTH }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      text += chunk;
      const end = text.lastIndexOf('\n\n');
      if (end < 0) return;
      events.push(...parseSse(text.slice(0, end + 2)));
      text = text.slice(end + 2);
    });
    res.on('error', () => undefined);
  });
  req.on('error', () => undefined);
  return { events, close: () => req.destroy() };
}

describe('health watches through the service', () => {
  let movingClip: string;
  let stillClip: string;
  let clips: string;
  let hook: Hook;
  const cameras: RtspServer[] = [];
  const servers: TestServer[] = [];
  const start = async (dataDir?: string) => {
    const started = await startTestServer({
      ...(dataDir !== undefined ? { dataDir } : {}),
      filesDir: clips,
      manager: {
        healthTickMs: TICK_MS,
        policy: { filesDir: clips, allowNetworks: ['127.0.0.1/32', `${HOOK_ADDRESS}/32`] },
        sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3 },
        webhooks: [{ id: 'ops', url: `http://${HOOK_ADDRESS}:${hook.port}/hook`, secret: 'health-test-secret' }],
        notifier: { retry: { baseMs: 50, maxMs: 200 } },
      },
    });
    servers.push(started);
    return started;
  };
  /** One service for the tests (the last one restarts it). */
  let shared: TestServer | null = null;
  const service = async () => (shared ??= await start());

  before(async () => {
    const dir = tempDir('vigil-health-');
    movingClip = path.join(dir, 'moving.mp4');
    stillClip = path.join(dir, 'still.mp4');
    // The haystack's noise changes twice a second: never one image for long.
    await makeProbeClip({ out: movingClip, durationS: 45, width: 160, height: 90, needles: [] });
    // One still scene (a green square on red) for 4 s, then the moving haystack.
    await makeProbeClip({ out: stillClip, durationS: 20, width: 160, height: 90, needles: [{ start: 0, duration: 4, background: 'red', square: 'green' }] });
    clips = dir;
    hook = await webhookReceiver();
  });
  after(async () => {
    for (const s of servers) await s.close();
    for (const c of cameras) await c.kill();
    await hook?.close();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  it('offline within the threshold plus one tick (listed, on SSE, to the webhook), back online; lag while the model is held; no frozen on a moving picture', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    // Behind basic auth: the alerts carry the source's error, never its credentials.
    const login = { user: 'cam', password: 'health-rtsp-secret-pw' };
    let camera = await startRtspServer(python, { file: movingClip, ...login });
    cameras.push(camera);
    const s = await service();
    const api = () => request(s.url);
    const valid = await openApiValidator(s.url);
    await api().post('/v1/streams').set(AUTH).send({ id: 'cam', source: `rtsp://cam:${login.password}@127.0.0.1:${camera.port}/stream`, fps: 2, window: 2 }).expect(201);
    // Live first: connecting counts as offline too, and may take longer than these short thresholds.
    await waitFor('live with frames', () => {
      const st = s.ready.status('cam');
      return st.state === 'live' && (st.memory?.lastT ?? 0) >= 1 ? st : undefined;
    }, 30_000);
    const add = async (spec: object) => {
      const res = await api().post('/v1/streams/cam/watches').set(AUTH).send(spec);
      assert.equal(res.status, 201, res.text);
      valid('HealthWatch', res.body);
      return res.body as { id: string };
    };
    const offline = await add({ kind: 'health', condition: 'offline', thresholdSec: 2, cooldownSec: 0, notify: ['ops'] });
    const lag = await add({ kind: 'health', condition: 'lag', thresholdSec: 1.5, cooldownSec: 0 });
    const frozen = await add({ kind: 'health', condition: 'frozen', thresholdSec: 2, cooldownSec: 0 });
    const created = (await api().get(`/v1/streams/cam/watches/${offline.id}`).set(AUTH).expect(200)).body;
    assert.deepEqual({ ...created, id: undefined, createdAt: undefined }, {
      id: undefined,
      createdAt: undefined,
      stream: 'cam',
      kind: 'health',
      condition: 'offline',
      thresholdSec: 2,
      cooldownSec: 0,
      notify: ['ops'],
      active: true,
      stats: { judged: true, raised: false, since: null, answer: null, lastAlertAt: null },
    });
    const alertsOf = async (watchId: string) => ((await api().get('/v1/alerts?stream=cam').set(AUTH).expect(200)).body.alerts as Alert[]).filter((a) => a.watchId === watchId);

    // The model busy for 4 s (other streams, say): the frame waiting for it ages, ingest falls behind.
    let release!: () => void;
    const held = s.ready.scheduler.run('other', 'frame', () => new Promise<void>((r) => (release = r)));
    const lagRaised = await waitFor('the lag alert', async () => (await alertsOf(lag.id))[0], 8000);
    release();
    await held;
    assert.equal(lagRaised.health?.condition, 'lag');
    assert.equal(lagRaised.health?.resolved, false);
    assert.match(lagRaised.answer, /^falling behind: ingest \d+\.\d s behind the live source$/);
    assert.ok(Number(/(\d+\.\d) s/.exec(lagRaised.answer)![1]) >= 1.5, lagRaised.answer);
    assert.equal(lagRaised.checkMs, 0);
    const caughtUp = await waitFor('caught up', async () => (await alertsOf(lag.id))[1], 10_000);
    assert.equal(caughtUp.health?.resolved, true);
    assert.match(caughtUp.answer, /^caught up after \d+ s \(lag 0\.\d s\)$/);
    assert.equal(caughtUp.previousAnswer, lagRaised.answer);

    // The camera goes down.
    const events = alertEvents(`${s.url}/v1/alerts/events?stream=cam`);
    await waitFor('the event stream', () => events.events.some((e) => e.event === 'ready'));
    const port = camera.port;
    await camera.kill();
    const down = await waitFor('the offline alert', async () => (await alertsOf(offline.id))[0], 15_000);
    valid('Alert', down);
    assert.equal(down.health?.condition, 'offline');
    assert.equal(down.health?.resolved, false);
    // Counted from the last frame: past the 2 s threshold, within one tick of it (plus the timer's lateness on a loaded machine).
    const elapsed = down.wallTime - down.health!.since;
    assert.ok(elapsed > 2000 && elapsed <= 2000 + TICK_MS + 400, `alert ${elapsed} ms after the last frame`);
    assert.match(down.answer, /^offline for 2 s \(.+\)$/);
    assert.equal(down.evidence.length, 1, 'the newest stored frame');
    assert.ok(down.t >= 1);
    // Live on the event stream, and delivered to the watch's webhook, as any alert.
    const live = await waitFor('the offline alert event', () => events.events.find((e) => e.event === 'alert'));
    assert.equal((JSON.parse(live.data) as Alert).id, down.id);
    const delivered = await waitFor('the webhook delivery', () => hook.bodies.find((b) => b.id === down.id), 10_000);
    assert.deepEqual(delivered.health, down.health);

    // Served again on the same port: back online, with the whole outage.
    camera = await startRtspServer(python, { file: movingClip, port, ...login });
    cameras.push(camera);
    const up = await waitFor('back online', async () => (await alertsOf(offline.id))[1], 30_000);
    valid('Alert', up);
    assert.equal(up.health?.resolved, true);
    assert.equal(up.health?.since, down.health!.since);
    assert.match(up.answer, /^back online after \d+ s$/);
    assert.equal(up.previousAnswer, down.answer);
    assert.ok(up.health!.durationSec >= down.health!.durationSec);
    await waitFor('both on the event stream', () => events.events.filter((e) => e.event === 'alert').length >= 2);
    events.close();
    // Only the offline watch notifies the webhook: both of its alerts, nothing else.
    await waitFor('the second webhook delivery', () => hook.bodies.some((b) => b.id === up.id), 10_000);
    assert.deepEqual(
      hook.bodies.map((b) => b.watchId),
      [offline.id, offline.id],
    );

    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify({ offlineAfterLastFrameMs: elapsed, backOnline: up.answer, lag: [lagRaised.answer, caughtUp.answer], alert: down }));
    const everything = JSON.stringify({ all: (await api().get('/v1/alerts').set(AUTH).expect(200)).body, hooks: hook.bodies, logs: s.logs });
    assert.ok(!everything.includes(login.password), 'no credentials in alerts, webhook bodies or the log');
    // The picture kept changing: the frozen watch never fired.
    assert.deepEqual(await alertsOf(frozen.id), []);

    // Paging GET /v1/alerts one at a time with since (inclusive: the last one comes again) walks them all in order.
    const all = (await api().get('/v1/alerts?stream=cam').set(AUTH).expect(200)).body.alerts as Alert[];
    valid('AlertList', { alerts: all, truncated: false });
    const paged: string[] = [];
    let since = 0;
    for (let i = 0; i < 10 && paged.length < all.length; i++) {
      const page = (await api().get(`/v1/alerts?stream=cam&since=${since}&limit=2`).set(AUTH).expect(200)).body as { alerts: Alert[] };
      for (const a of page.alerts) if (!paged.includes(a.id)) paged.push(a.id);
      since = page.alerts.at(-1)!.wallTime;
    }
    assert.deepEqual(paged, all.map((a) => a.id));
    await api().delete('/v1/streams/cam?purge=true').set(AUTH).expect(204);
  });

  it('a camera that shows one still image raises frozen, and clears when the picture changes', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    const camera = await startRtspServer(python, { file: stillClip });
    cameras.push(camera);
    const s = await service();
    const api = () => request(s.url);
    // Created before the source connects: every connection starts the clip at its still part.
    await api().post('/v1/streams').set(AUTH).send({ id: 'still', source: camera.url, fps: 2, window: 2 }).expect(201);
    const frozen = (await api().post('/v1/streams/still/watches').set(AUTH).send({ kind: 'health', condition: 'frozen', thresholdSec: 2 }).expect(201)).body as { id: string; cooldownSec: number };
    assert.equal(frozen.cooldownSec, 60, 'the default cooldown');
    const alertsOf = async (watchId: string) => ((await api().get('/v1/alerts?stream=still').set(AUTH).expect(200)).body.alerts as Alert[]).filter((a) => a.watchId === watchId);
    // Once frames come (connecting counts as offline, and may take longer than 3 s here).
    await waitFor('live', () => s.ready.status('still').state === 'live', 30_000);
    const offline = (await api().post('/v1/streams/still/watches').set(AUTH).send({ kind: 'health', condition: 'offline', thresholdSec: 3 }).expect(201)).body as { id: string };
    const raised = await waitFor('the frozen alert', async () => (await alertsOf(frozen.id))[0], 30_000);
    assert.equal(raised.health?.condition, 'frozen');
    assert.equal(raised.health?.resolved, false);
    assert.match(raised.answer, /^frozen image for [23] s \(identical frames while live\)$/);
    assert.ok(raised.health!.durationSec > 2 && raised.health!.durationSec < 4, JSON.stringify(raised.health));
    const cleared = await waitFor('the picture moving again', async () => (await alertsOf(frozen.id))[1], 30_000);
    assert.equal(cleared.health?.resolved, true);
    assert.match(cleared.answer, /^image changing again after [2-9] s$/);
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify({ frozen: raised.answer, frozenHealth: raised.health, cleared: cleared.answer }));
    // Frames kept coming: never offline.
    assert.deepEqual(await alertsOf(offline.id), []);
    await api().delete('/v1/streams/still?purge=true').set(AUTH).expect(204);
  });

  it('bad specs are 400; health watches count in the limit, are listed, deleted, and kept across a restart', async () => {
    const s = await service();
    const api = () => request(s.url);
    const valid = await openApiValidator(s.url);
    await api().post('/v1/streams').set(AUTH).send({ id: 'f', source: 'still.mp4', window: 2 }).expect(201);
    await api().post('/v1/streams/f/stop').set(AUTH).expect(200);
    const bad = async (body: object, message: RegExp) => {
      const res = await api().post('/v1/streams/f/watches').set(AUTH).send(body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, message);
      valid('Error', res.body);
    };
    await bad({ kind: 'health', condition: 'smoke', thresholdSec: 5 }, /condition/);
    await bad({ kind: 'health', thresholdSec: 5 }, /condition/);
    await bad({ kind: 'health', condition: 'offline' }, /thresholdSec/);
    await bad({ kind: 'health', condition: 'offline', thresholdSec: 0 }, /thresholdSec/);
    await bad({ kind: 'health', condition: 'lag', thresholdSec: 86_401 }, /thresholdSec/);
    await bad({ kind: 'health', condition: 'frozen', thresholdSec: '5' }, /thresholdSec/);
    await bad({ kind: 'health', condition: 'offline', thresholdSec: 5, cooldownSec: -1 }, /cooldownSec/);
    await bad({ kind: 'health', condition: 'offline', thresholdSec: 5, question: 'is it on?' }, /question/);
    await bad({ kind: 'health', condition: 'offline', thresholdSec: 5, notify: ['pager'] }, /notify: no webhook has the id "pager"/);
    await bad({ kind: 'camera', condition: 'offline', thresholdSec: 5 }, /kind/);
    assert.equal(s.ready.listWatches('f').length, 0);

    // 16 watches of both kinds fit (one question watch, 15 health watches); the 17th, of either kind, is refused.
    const question = (await api().post('/v1/streams/f/watches').set(AUTH).send({ kind: 'question', question: 'Is the door open?', trigger: 'yes' }).expect(201)).body;
    valid('Watch', question);
    assert.equal(question.kind, undefined, 'a question watch looks as before');
    const conditions = ['offline', 'frozen', 'lag'] as const;
    for (let i = 0; i < 15; i++) await api().post('/v1/streams/f/watches').set(AUTH).send({ kind: 'health', condition: conditions[i % 3], thresholdSec: 10 + i }).expect(201);
    for (const body of [{ kind: 'health', condition: 'offline', thresholdSec: 5 }, { question: 'Is the door open?', trigger: 'yes' }]) {
      const full = await api().post('/v1/streams/f/watches').set(AUTH).send(body);
      assert.equal(full.status, 400, full.text);
      assert.match(full.body.error.message, /at most 16 watches/);
    }
    const list = (await api().get('/v1/streams/f/watches').set(AUTH).expect(200)).body;
    valid('WatchList', list);
    assert.equal(list.watches.length, 16);
    assert.equal(list.watches[0].id, question.id, 'creation order');
    const gone = list.watches[1].id as string;
    await api().delete(`/v1/streams/f/watches/${gone}`).set(AUTH).expect(204);
    await api().get(`/v1/streams/f/watches/${gone}`).set(AUTH).expect(404);

    // A restart keeps them (persisted with the stream, both kinds in one list).
    const before = (await api().get('/v1/streams/f/watches').set(AUTH).expect(200)).body;
    await s.close();
    const again = await start(s.dataDir);
    const afterRestart = (await request(again.url).get('/v1/streams/f/watches').set(AUTH).expect(200)).body;
    assert.deepEqual(afterRestart, before);
    assert.equal(afterRestart.watches.length, 15);
    // The OpenAPI document offers both bodies.
    const doc = (await request(again.url).get('/openapi.json').expect(200)).body;
    assert.deepEqual(
      doc.paths['/v1/streams/{id}/watches'].post.requestBody.content['application/json'].schema.oneOf.map((r: { $ref: string }) => r.$ref),
      ['#/components/schemas/CreateWatch', '#/components/schemas/CreateHealthWatch'],
    );
    assert.deepEqual(doc.components.schemas.CreateHealthWatch.required, ['kind', 'condition', 'thresholdSec']);
  });
});
