/**
 * The archive tier through the service (issue 15): a budgeted stream whose early needle went to the
 * archive (its KV dropped, its still kept) answers it, streaming `progress` events while the still
 * is re-encoded; `archive` in every answer says what was re-encoded; maxReencode 0 leaves the
 * archive out (and the needle is then not answered); the status horizon shows the archive span.
 * Real server, ffmpeg, probe-needle model.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { makeProbeClip } from '../../ingest/index.js';
import { AUTH, disposeSharedModel, parseSse, wholeText, question, startTestServer, tempDir, type TestServer, waitEnded } from './helpers.js';

describe('archive tier through the API', () => {
  let server: TestServer;

  before(async () => {
    const clips = tempDir('vigil-archive-clips-');
    await makeProbeClip({ out: path.join(clips, 'early.mp4'), durationS: 120, width: 160, height: 90, needles: [{ start: 20, duration: 3, background: 'red', square: 'green' }] });
    server = await startTestServer({ dataDir: tempDir('vigil-archive-data-'), filesDir: clips, manager: { defaults: { gate: 'off' } as never } });
    // 800 kB holds ~80 frames of KV (120 would take 1.15 MB), of which the KV share (0.4) ~35: the early needle goes to the archive.
    await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'early.mp4', window: 4, budget: '800kB', tiers: { keepFullSec: 10 } }).expect(201);
    await waitEnded(server, 'cam', 120_000);
  });
  after(async () => {
    await server.close();
    await disposeSharedModel();
  });

  it('the status horizon starts with an archive span that holds the needle', async () => {
    const status = (await request(server.url).get('/v1/streams/cam').set(AUTH).expect(200)).body;
    const spans = status.memory.horizon.spans as Array<{ tier: string; from: number; to: number }>;
    assert.equal(spans[0]!.tier, 'archive', JSON.stringify(spans));
    assert.ok(spans[0]!.from <= 20 && spans[0]!.to >= 23, JSON.stringify(spans));
  });

  it('answers the archived needle, streaming progress while its still is re-encoded', async () => {
    const res = await request(server.url)
      .post('/v1/streams/cam/questions')
      .set(AUTH)
      .send({ question: question('red'), r: 4, maxTokens: 8, stream: true })
      .buffer(true)
      .parse(wholeText);
    assert.equal(res.status, 200);
    const events = parseSse(res.body as string);
    const progress = events.filter((e) => e.event === 'progress').map((e) => JSON.parse(e.data) as { phase: string; done: number; total: number });
    const firstToken = events.findIndex((e) => e.event === 'token');
    assert.ok(progress.length >= 2, `progress events: ${JSON.stringify(progress)}`);
    assert.ok(events.findIndex((e) => e.event === 'progress') < firstToken, 'progress comes before the answer');
    assert.deepEqual(progress.at(-1), { phase: 'reencode', done: progress.at(-1)!.total, total: progress.at(-1)!.total });
    const answer = JSON.parse(events.at(-1)!.data);
    assert.equal(answer.text, 'green');
    assert.ok(answer.archive.reencoded >= 1 && answer.archive.reencoded <= 8, JSON.stringify(answer.archive));
    assert.ok(answer.evidence.some((e: { tStart: number }) => e.tStart >= 20 && e.tStart <= 23));
  });

  it('maxReencode 0 leaves the archive out (the needle is then not answered); past the limit is a 400', async () => {
    const off = (await request(server.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4, maxTokens: 8, maxReencode: 0 }).expect(200)).body;
    assert.equal(off.archive.reencoded, 0);
    assert.ok(off.archive.skipped >= 1);
    assert.notEqual(off.text, 'green');
    const bad = await request(server.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), maxReencode: 65 }).expect(400);
    assert.equal(bad.body.error.code, 'BAD_INPUT');
    assert.match(bad.body.error.message, /maxReencode/);
  });
});
