/**
 * `/v1/streams` over real HTTP: creating streams from server-side files and uploads, status with
 * progress and memory, thumbnails, stop/start, delete with and without purge, and every error each
 * route can give (with its status and `{error:{code,message}}` body).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { assertNoChildrenLeft } from '../fixtures/processes.js';
import { AUTH, disposeSharedModel, makeClips, startTestServer, type TestServer, waitEnded, waitFor } from './helpers.js';

describe('streams API', () => {
  let clips: string;
  let server: TestServer;
  let http: () => ReturnType<typeof request>;

  before(async () => {
    clips = await makeClips();
    server = await startTestServer({ filesDir: clips, server: { maxBodyBytes: 4096, maxUploadBytes: 2 * 1024 * 1024 } });
    http = () => request(server.url);
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
    assertNoChildrenLeft('after the service was closed');
  });

  const expectError = (res: request.Response, status: number, code: string) => {
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error?.code, code, JSON.stringify(res.body));
    assert.equal(typeof res.body.error.message, 'string');
    assert.doesNotMatch(res.text, /at .*\.ts:\d+/, 'no stack trace in a response');
  };

  it('creates a stream from a server-side file, processes it as a finite stream, and reports status', async () => {
    const created = await http().post('/v1/streams').set(AUTH).send({ id: 'file-a', name: 'Clip A', source: 'a.mp4', window: 4, fps: 1 });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers.location, '/v1/streams/file-a');
    assert.equal(created.body.id, 'file-a');
    assert.equal(created.body.name, 'Clip A');
    assert.equal(created.body.kind, 'file');
    assert.equal(created.body.source, 'a.mp4', 'the status shows the path relative to the files folder');
    assert.deepEqual(created.body.settings, { fps: 1, window: 4, sinks: 1, storage: 'float32', gate: 'off', retention: {}, budget: 20e9, tiers: { keepFullSec: 1800, kvShare: 0.4, archive: true } });

    await waitEnded(server, 'file-a');
    const status = await http().get('/v1/streams/file-a').set(AUTH).expect(200);
    assert.equal(status.body.state, 'ended');
    assert.equal(status.body.live, false);
    assert.equal(status.body.frames, 40);
    assert.equal(status.body.memory.chunks, 40);
    assert.ok(status.body.memory.bytes > 0);
    assert.equal(status.body.memory.lastT, 39);
    assert.deepEqual(status.body.progress, { t: 39, durationS: 40, fraction: 1 });
    assert.equal(status.body.ingest.drops, 0);
    assert.equal(typeof status.body.ingest.fps, 'number');
    assert.equal(status.body.latestThumbnail, 39);

    const list = await http().get('/v1/streams').set(AUTH).expect(200);
    assert.ok(list.body.streams.some((s: { id: string }) => s.id === 'file-a'));
  });

  it('serves evidence thumbnails: a JPEG per chunk, and the latest one', async () => {
    const jpeg = await http().get('/v1/streams/file-a/frames/10.jpg').set(AUTH).buffer(true).expect(200);
    assert.equal(jpeg.headers['content-type'], 'image/jpeg');
    assert.deepEqual([...(jpeg.body as Buffer).subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG magic');
    assert.match(jpeg.headers['cache-control'] ?? '', /immutable/);
    const latest = await http().get('/v1/streams/file-a/frames/latest.jpg').set(AUTH).expect(200);
    assert.equal(latest.headers['cache-control'], 'no-store');
    expectError(await http().get('/v1/streams/file-a/frames/999.jpg').set(AUTH), 404, 'NOT_FOUND');
    expectError(await http().get('/v1/streams/file-a/frames/abc.jpg').set(AUTH), 400, 'BAD_INPUT');
    expectError(await http().get('/v1/streams/nope/frames/1.jpg').set(AUTH), 404, 'STREAM_NOT_FOUND');
  });

  it('uploads a video (multipart, streamed to disk) and processes it; the file is deleted once ingested', async () => {
    const res = await http()
      .post('/v1/streams')
      .set(AUTH)
      .field('id', 'up-b')
      .field('window', '4')
      .field('retention', JSON.stringify({ maxAgeSec: 3600 }))
      .attach('file', path.join(clips, 'b.mp4'), { filename: '../../evil name.mp4', contentType: 'video/mp4' });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.kind, 'upload');
    assert.equal(res.body.source, 'upload:evil name.mp4', 'the client file name is reduced to a safe base name');
    assert.deepEqual(res.body.settings.retention, { maxAgeSec: 3600 });
    const done = await waitEnded(server, 'up-b');
    assert.equal(done.memory?.chunks, 40);
    const dir = path.join(server.dataDir, 'streams', 'up-b');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'video')), [], 'the uploaded video is removed once its memory is complete');
    assert.deepEqual(fs.readdirSync(path.join(server.dataDir, 'incoming')), [], 'nothing left in transit');
  });

  it('refuses bad uploads: no file, too large (413), bad fields; leaves no file behind', async () => {
    expectError(await http().post('/v1/streams').set(AUTH).field('name', 'x'), 400, 'BAD_INPUT');
    const big = Buffer.alloc(3 * 1024 * 1024, 1);
    expectError(await http().post('/v1/streams').set(AUTH).attach('file', big, 'big.mp4'), 413, 'PAYLOAD_TOO_LARGE');
    expectError(await http().post('/v1/streams').set(AUTH).field('fps', 'fast').attach('file', path.join(clips, 'a.mp4')), 400, 'BAD_INPUT');
    expectError(await http().post('/v1/streams').set(AUTH).attach('video', path.join(clips, 'a.mp4')), 400, 'BAD_INPUT');
    assert.deepEqual(fs.readdirSync(path.join(server.dataDir, 'incoming')), []);
  });

  it('validates the JSON body: 400 for missing/unknown/out-of-range fields and bad JSON, 413 too large, 415 other types', async () => {
    expectError(await http().post('/v1/streams').set(AUTH).send({}), 400, 'BAD_INPUT');
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', colour: 'red' }), 400, 'BAD_INPUT');
    const fps = await http().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', fps: 100 });
    expectError(fps, 400, 'BAD_INPUT');
    assert.match(fps.body.error.message, /fps/);
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', id: '../x' }), 400, 'BAD_INPUT');
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', retention: { maxBytes: 10 } }), 400, 'BAD_INPUT');
    expectError(await http().post('/v1/streams').set(AUTH).set('Content-Type', 'application/json').send('{"source": '), 400, 'BAD_INPUT');
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', name: 'x'.repeat(5000) }), 413, 'PAYLOAD_TOO_LARGE');
    expectError(await http().post('/v1/streams').set(AUTH).set('Content-Type', 'text/plain').send('a.mp4'), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses sources: unknown scheme, missing file, paths outside the files folder (403)', async () => {
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'ftp://example.com/x.mp4' }), 400, 'SOURCE_SCHEME');
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'concat:a.mp4|b.mp4' }), 400, 'SOURCE_SCHEME');
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'missing.mp4' }), 400, 'FILE_NOT_FOUND');
    for (const source of ['../a.mp4', '/etc/passwd', 'file:///etc/passwd', `${clips}/../../etc/passwd`, 'sub/../../a.mp4']) {
      expectError(await http().post('/v1/streams').set(AUTH).send({ source }), 403, 'SOURCE_FORBIDDEN');
    }
    // A symlink inside the folder pointing out of it is refused too.
    fs.symlinkSync('/etc/hostname', path.join(clips, 'link.mp4'));
    expectError(await http().post('/v1/streams').set(AUTH).send({ source: 'link.mp4' }), 403, 'SOURCE_FORBIDDEN');
    assert.equal(server.ready.list().filter((s) => !['file-a', 'up-b'].includes(s.id)).length, 0, 'no refused stream was created');
  });

  it('gives 409 for an existing id and 404 for unknown streams on every route', async () => {
    expectError(await http().post('/v1/streams').set(AUTH).send({ id: 'file-a', source: 'a.mp4' }), 409, 'STREAM_EXISTS');
    expectError(await http().get('/v1/streams/nope').set(AUTH), 404, 'STREAM_NOT_FOUND');
    expectError(await http().post('/v1/streams/nope/stop').set(AUTH), 404, 'STREAM_NOT_FOUND');
    expectError(await http().post('/v1/streams/nope/start').set(AUTH), 404, 'STREAM_NOT_FOUND');
    expectError(await http().delete('/v1/streams/nope').set(AUTH), 404, 'STREAM_NOT_FOUND');
    expectError(await http().get('/v1/nothing-here').set(AUTH), 404, 'NOT_FOUND');
    expectError(await http().delete('/v1/streams/file-a?purge=maybe').set(AUTH), 400, 'BAD_INPUT');
  });

  it('stops and restarts an ingest; a stopped finite stream resumes after its last stored frame', async () => {
    const created = await http().post('/v1/streams').set(AUTH).send({ id: 'resume', source: 'b.mp4', window: 4, fps: 2 });
    assert.equal(created.status, 201);
    await waitFor('some frames', () => (server.ready.status('resume').memory?.chunks ?? 0) >= 4);
    const stopped = await http().post('/v1/streams/resume/stop').set(AUTH).expect(200);
    assert.equal(stopped.body.state, 'stopped');
    const chunksAtStop = stopped.body.memory.chunks as number;
    assert.ok(chunksAtStop < 80, 'stopped before the end');
    const started = await http().post('/v1/streams/resume/start').set(AUTH).expect(200);
    assert.notEqual(started.body.state, 'stopped');
    const done = await waitEnded(server, 'resume');
    assert.equal(done.memory?.chunks, 80, 'every 0.5-s sample of the 40-s clip stored exactly once');
    assert.ok(done.memory!.lastT! >= 39.5, `the last sample is in the last half second (${done.memory?.lastT})`);
  });

  it('applies retention to the memory and its thumbnails alike', async () => {
    await http().post('/v1/streams').set(AUTH).send({ id: 'kept', source: 'b.mp4', window: 4, fps: 10, retention: { maxBytes: 1024 * 1024 } }).expect(201);
    const done = await waitEnded(server, 'kept');
    const chunks = done.memory!.chunks;
    assert.ok(chunks < 400, `retention removed old chunks (${chunks} of 400 kept)`);
    assert.ok(done.memory!.bytes <= 1.25 * 1024 * 1024, `disk within budget plus the active segment: ${done.memory!.bytes}`);
    const thumbs = fs.readdirSync(path.join(server.dataDir, 'streams', 'kept', 'thumbs')).filter((f) => f.endsWith('.jpg'));
    assert.equal(thumbs.length, chunks, 'one thumbnail per stored chunk, none for deleted ones');
    expectError(await http().get('/v1/streams/kept/frames/0.jpg').set(AUTH), 404, 'NOT_FOUND');
    await http().get('/v1/streams/kept/frames/399.jpg').set(AUTH).expect(200);
    await http().delete('/v1/streams/kept?purge=true').set(AUTH).expect(204);
  });

  it('deletes a stream: without purge the memory stays and the same id continues it; purge removes it all', async () => {
    const dir = path.join(server.dataDir, 'streams', 'file-a');
    const del = await http().delete('/v1/streams/file-a').set(AUTH);
    assert.equal(del.status, 204);
    expectError(await http().get('/v1/streams/file-a').set(AUTH), 404, 'STREAM_NOT_FOUND');
    assert.ok(fs.existsSync(path.join(dir, 'kv')), 'memory kept');
    assert.ok(!fs.existsSync(path.join(dir, 'stream.json')), 'no longer registered');

    // The same id picks the memory up again: the finite source resumes after chunk 39, so nothing is added.
    await http().post('/v1/streams').set(AUTH).send({ id: 'file-a', source: 'a.mp4', window: 4 }).expect(201);
    const back = await waitEnded(server, 'file-a');
    assert.equal(back.memory?.chunks, 40);

    await http().delete('/v1/streams/file-a?purge=true').set(AUTH).expect(204);
    assert.ok(!fs.existsSync(dir), 'purge removes KV, index, thumbnails and record');
  });
});
