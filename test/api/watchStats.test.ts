/**
 * Per-watch stats in the watch routes (issue 17), on a real server on 127.0.0.1 with the
 * probe-needle model:
 * - A question watch on a needle clip (a green square on a red screen at 10-13 s), added while the
 *   stream's first frame is held back (as in watches.test.ts): all counters 0 at creation; after
 *   the clip, framesScored is every encoded frame, the checks add up by reason, one alert.
 * - A health watch (offline, 1 s) on an RTSP camera nobody serves (a closed port on 127.0.0.1):
 *   judged at once, raised with its start and sentence once the threshold passes (the same as
 *   the alert), and no longer judged, still raised, once a caller stops the stream.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import { VigilError } from '../../common/errors.js';
import { AUTH, disposeSharedModel, openApiValidator, question, startTestServer, tempDir, type TestServer, waitEnded, waitFor } from './helpers.js';

/** A port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('watch stats in the API', () => {
  let server: TestServer;
  let valid: (schema: string, value: unknown) => void;
  /** While true, the stream's first frame fails its ingest before anything is stored. */
  let holdFrames = true;
  const api = () => request(server.url);

  before(async () => {
    const clips = tempDir('vigil-watch-stats-');
    await makeProbeClip({ out: path.join(clips, 'a.mp4'), durationS: 16, width: 160, height: 90, needles: [{ start: 10, duration: 3, background: 'red', square: 'green' }] });
    server = await startTestServer({
      filesDir: clips,
      manager: {
        healthTickMs: 250,
        policy: { filesDir: clips, allowNetworks: ['127.0.0.1/32'] },
        sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 3 },
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });
    valid = await openApiValidator(server.url);
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
  });

  it('a question watch counts the frames it scored, its checks by reason and its alert', async () => {
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('a').state === 'failed');
    const created = (await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0 }).expect(201)).body;
    valid('Watch', created);
    assert.deepEqual(created.stats, { framesScored: 0, deferred: 0, checks: 0, checksByReason: { first: 0, score: 0, interval: 0, 'left-window': 0 }, alerts: 0, suppressed: 0, errors: 0, lastError: null, prefilterMs: 0 });

    holdFrames = false;
    await api().post('/v1/streams/a/start').set(AUTH).expect(200);
    const ended = await waitEnded(server, 'a');
    // The alert is raised by a check queued behind the frames: wait for it, not only for the end.
    const watch = await waitFor('the alert in the stats', async () => {
      const body = (await api().get(`/v1/streams/a/watches/${created.id}`).set(AUTH).expect(200)).body;
      return body.stats.alerts === 1 ? body : undefined;
    });
    valid('Watch', watch);
    const { stats } = watch;
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify(watch));
    assert.equal(stats.framesScored, ended.memory?.chunks, 'every encoded frame scored');
    assert.equal(stats.framesScored, 16);
    const byReason = stats.checksByReason as Record<string, number>;
    assert.equal(stats.checks, Object.values(byReason).reduce((a, b) => a + b, 0), JSON.stringify(stats));
    assert.equal(byReason.first, 1);
    assert.ok((byReason.score ?? 0) >= 1, `the needle moved the score: ${JSON.stringify(stats)}`);
    assert.ok(stats.checks < stats.framesScored, `not every frame checked: ${JSON.stringify(stats)}`);
    assert.deepEqual([stats.suppressed, stats.errors, stats.lastError], [0, 0, null]);
    assert.ok(stats.prefilterMs > 0 && stats.prefilterMs < 50, `prefilter ${stats.prefilterMs} ms a frame`);
    assert.equal((await api().get('/v1/alerts?stream=a').set(AUTH).expect(200)).body.alerts.length, 1);
    // The list carries the same stats.
    const list = (await api().get('/v1/streams/a/watches').set(AUTH).expect(200)).body;
    valid('WatchList', list);
    assert.deepEqual(list.watches[0].stats, stats);
    await api().delete('/v1/streams/a?purge=true').set(AUTH).expect(204);
  });

  it('a health watch shows whether it is judged, and its raised condition with its start', async () => {
    const port = await closedPort();
    await api().post('/v1/streams').set(AUTH).send({ id: 'cam', source: `rtsp://127.0.0.1:${port}/stream`, window: 2 }).expect(201);
    const started = Date.now();
    const created = (await api().post('/v1/streams/cam/watches').set(AUTH).send({ kind: 'health', condition: 'offline', thresholdSec: 1, cooldownSec: 0 }).expect(201)).body;
    valid('HealthWatch', created);
    assert.deepEqual({ ...created.stats, judged: undefined }, { judged: undefined, raised: false, since: null, answer: null, lastAlertAt: null });
    const get = async () => (await api().get(`/v1/streams/cam/watches/${created.id}`).set(AUTH).expect(200)).body;
    // An RTSP camera is judged from the start: nothing comes, so it is offline past 1 s.
    const raised = await waitFor('the offline condition raised', async () => {
      const body = await get();
      return body.stats.raised ? body : undefined;
    });
    valid('HealthWatch', raised);
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify(raised));
    const [alert] = (await api().get('/v1/alerts?stream=cam').set(AUTH).expect(200)).body.alerts;
    assert.equal(alert.watchId, created.id);
    assert.deepEqual(raised.stats, { judged: true, raised: true, since: alert.health.since, answer: alert.answer, lastAlertAt: alert.wallTime });
    assert.match(raised.stats.answer, /^offline for /);
    assert.ok(raised.stats.since >= started - 2000 && raised.stats.since <= alert.wallTime - 1000, `since ${raised.stats.since}, alert at ${alert.wallTime}`);
    // Stopped by a caller: not judged any more; the condition stays raised (nothing cleared it).
    await api().post('/v1/streams/cam/stop').set(AUTH).expect(200);
    const stopped = await get();
    assert.deepEqual(stopped.stats, { ...raised.stats, judged: false });
    const list = (await api().get('/v1/streams/cam/watches').set(AUTH).expect(200)).body;
    valid('WatchList', list);
    assert.deepEqual(list.watches[0].stats, stopped.stats);
    await api().delete('/v1/streams/cam?purge=true').set(AUTH).expect(204);
  });
});
