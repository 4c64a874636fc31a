/**
 * Several streams in one process over one model: two streams ingesting at the same time give
 * answers from their own memory only; after the server restarts (same data folder) every stream
 * and its memory come back and answer the same way, and an interrupted ingest resumes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, type TestServer, waitEnded, waitFor } from './helpers.js';

describe('many streams, one model', () => {
  let clips: string;
  let dataDir: string;
  let server: TestServer;

  before(async () => {
    clips = await makeClips();
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  const ask = (s: TestServer, id: string, background: string) =>
    request(s.url).post(`/v1/streams/${id}/questions`).set(AUTH).send({ question: question(background), r: 4, maxTokens: 8 }).expect(200).then((r) => r.body.text as string);

  it('ingests two streams concurrently, sharing the model fairly, with isolated answers', async () => {
    server = await startTestServer({ filesDir: clips });
    dataDir = server.dataDir;
    await Promise.all([
      request(server.url).post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201),
      request(server.url).post('/v1/streams').set(AUTH).send({ id: 'b', source: 'b.mp4', window: 4 }).expect(201),
    ]);
    // Fair scheduling: while both ingest, neither runs far ahead of the other.
    let maxSpread = 0;
    await waitFor('both streams to end', () => {
      const [a, b] = [server.ready.status('a'), server.ready.status('b')];
      if (a.state === 'processing' && b.state === 'processing') maxSpread = Math.max(maxSpread, Math.abs(a.frames - b.frames));
      return a.state === 'ended' && b.state === 'ended';
    });
    assert.ok(maxSpread <= 8, `frames of the two streams stayed within ${maxSpread} of each other`);

    // A asked about its own needle, B about its own; each asked about the other's needle says unknown.
    assert.equal(await ask(server, 'a', 'red'), 'green');
    assert.equal(await ask(server, 'b', 'red'), 'blue');
    assert.equal(await ask(server, 'a', 'yellow'), 'unknown', "stream a never saw a yellow screen (only b did)");
    assert.equal(await ask(server, 'b', 'yellow'), 'magenta');

    // Questions asked while another stream is ingesting are answered without waiting for that backlog.
    await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'c', source: 'b.mp4', window: 4, fps: 4 }).expect(201);
    const answer = await request(server.url).post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
    assert.equal(answer.body.text, 'green');
    assert.ok(answer.body.timing.queueMs < 1000, `queue wait ${answer.body.timing.queueMs} ms`);
    await request(server.url).post('/v1/streams/c/stop').set(AUTH).expect(200);
  });

  it('brings every stream and its memory back after a restart', async () => {
    const before = Object.fromEntries(server.ready.list().map((s) => [s.id, s]));
    // An ingest cut short by the shutdown must resume; a stopped one must stay stopped.
    await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'long', source: 'a.mp4', window: 4, fps: 5 }).expect(201);
    await waitFor('some frames of long', () => (server.ready.status('long').memory?.chunks ?? 0) >= 10);
    await server.close();

    server = await startTestServer({ dataDir, filesDir: clips });
    const after = Object.fromEntries(server.ready.list().map((s) => [s.id, s]));
    assert.deepEqual(Object.keys(after).sort(), ['a', 'b', 'c', 'long']);
    for (const id of ['a', 'b']) {
      assert.equal(after[id]!.state, 'ended', `${id} is complete and stays answerable`);
      assert.equal(after[id]!.memory?.chunks, before[id]!.memory?.chunks);
      assert.equal(after[id]!.latestThumbnail, 39);
    }
    assert.equal(after.c!.state, 'stopped', 'a stream stopped by a caller stays stopped');
    assert.equal(await ask(server, 'a', 'red'), 'green');
    assert.equal(await ask(server, 'b', 'red'), 'blue');
    assert.equal(await ask(server, 'a', 'yellow'), 'unknown');

    const long = await waitEnded(server, 'long');
    assert.equal(long.memory?.chunks, 200, 'the interrupted ingest resumed where it stopped: every 0.2-s sample once');
    await request(server.url).get('/v1/streams/a/frames/12.jpg').set(AUTH).expect(200);
  });
});
