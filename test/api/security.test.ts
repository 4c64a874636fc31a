/**
 * Security of the service: bearer-token auth on /v1 and /metrics (public health, readiness, OpenAPI
 * and page), the explicit --no-auth mode, the URL policy against SSRF (loopback, private, link-local,
 * mapped and odd address spellings, names resolving to them), its explicit allow list, and
 * credentials kept out of statuses, logs and metrics.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { startHttpServer, type TestServer as HttpFixture } from '../fixtures/httpServer.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, type TestServer, TOKEN, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());

describe('auth', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server?.close());

  it('requires a valid bearer token on every /v1 route and on /metrics', async () => {
    const routes: Array<[string, string, object?]> = [
      ['get', '/v1/streams'],
      ['post', '/v1/streams', { source: 'rtsp://example.com/x' }],
      ['get', '/v1/streams/x'],
      ['post', '/v1/streams/x/stop'],
      ['delete', '/v1/streams/x'],
      ['post', '/v1/streams/x/questions', { question: 'q' }],
      ['get', '/v1/streams/x/frames/1.jpg'],
      ['post', '/v1/chat/completions', { model: 'x', messages: [] }],
      ['get', '/v1/models'],
      ['get', '/metrics'],
    ];
    for (const [method, url, body] of routes) {
      for (const header of [undefined, 'Bearer wrong-token-0123456789', `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`, `Bearer ${TOKEN}x`, 'Bearer']) {
        let req = (request(server.url) as unknown as Record<string, (u: string) => request.Test>)[method]!(url);
        if (header) req = req.set('Authorization', header);
        const res = body ? await req.send(body) : await req;
        assert.equal(res.status, 401, `${method} ${url} with ${header}`);
        assert.equal(res.body.error.code, 'UNAUTHORIZED');
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="vigil"');
        assert.ok(!res.text.includes(TOKEN), 'the token is never echoed');
      }
    }
    await request(server.url).get('/v1/streams').set(AUTH).expect(200);
    await request(server.url).get('/metrics').set(AUTH).expect(200);
  });

  it('keeps health, readiness, the OpenAPI document and the web page public', async () => {
    assert.deepEqual((await request(server.url).get('/healthz').expect(200)).body, { status: 'ok' });
    assert.equal((await request(server.url).get('/readyz').expect(200)).body.status, 'ready');
    await request(server.url).get('/openapi.json').expect(200);
    const page = await request(server.url).get('/').expect(200);
    assert.match(page.text, /<title>Vigil<\/title>/);
    assert.match(page.headers['content-security-policy'] ?? '', /default-src 'self'/);
  });

  it('never logs the token', () => {
    assert.ok(server.logs.length > 0);
    assert.ok(server.logs.every((line) => !line.includes(TOKEN)));
  });

  it('with auth explicitly disabled (--no-auth), requests need no token', async () => {
    const open = await startTestServer({ auth: { disabled: true } });
    try {
      await request(open.url).get('/v1/streams').expect(200);
      await request(open.url).get('/metrics').expect(200);
    } finally {
      await open.close();
    }
  });
});

describe('URL policy', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ filesDir: null });
  });
  after(() => server?.close());

  const refused = async (source: string, code = 'SOURCE_FORBIDDEN', status = 403) => {
    const res = await request(server.url).post('/v1/streams').set(AUTH).send({ source });
    assert.equal(res.status, status, `${source}: ${res.text}`);
    assert.equal(res.body.error.code, code, source);
    return res;
  };

  it('refuses URLs that reach loopback, private, link-local or unspecified addresses, however they are spelled', async () => {
    for (const source of [
      'rtsp://127.0.0.1:554/stream',
      'rtsp://127.1.2.3/stream',
      'http://10.1.2.3/video.mp4',
      'http://172.16.0.9/video.mp4',
      'http://192.168.1.10/video.mp4',
      'http://169.254.169.254/latest/meta-data',
      'http://0.0.0.0:8080/x.mp4',
      'rtsp://[::1]:554/stream',
      'http://[::ffff:127.0.0.1]/x.mp4',
      'http://[fd00::1]/x.mp4',
      'http://2130706433/x.mp4', // 127.0.0.1 as one number
      'http://0x7f.1/x.mp4',
      'http://localhost:8080/x.mp4', // a name that resolves to loopback
      'https://user:pw@127.0.0.1/x.m3u8',
    ]) {
      const res = await refused(source);
      assert.ok(!res.text.includes(':pw@'), 'credentials are not echoed');
    }
    assert.equal(server.ready.list().length, 0);
  });

  it('refuses disallowed schemes and, without --allow-files, every server-side file', async () => {
    await refused('file:///etc/passwd');
    await refused('/etc/passwd');
    await refused('relative/video.mp4');
    await refused('ftp://example.com/x.mp4', 'SOURCE_SCHEME', 400);
    await refused('gopher://example.com/x', 'SOURCE_SCHEME', 400);
    await refused('data:video/mp4;base64,AAAA', 'SOURCE_SCHEME', 400);
  });
});

describe('URL policy with an allowed network, and credentials kept secret', () => {
  let server: TestServer;
  let files: HttpFixture;
  before(async () => {
    const clips = await makeClips();
    files = await startHttpServer(clips, { user: 'vigil', password: 'hunter2-secret' });
    server = await startTestServer({ manager: { policy: { allowNetworks: ['127.0.0.1/32'] } } });
  });
  after(async () => {
    await server?.close();
    await files?.close();
  });

  it('ingests an allowed loopback URL with credentials; the password shows nowhere but the owner-only record', async () => {
    const source = `http://vigil:hunter2-secret@127.0.0.1:${files.port}/secret/a.mp4`;
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source, window: 4 });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.source, `http://***@127.0.0.1:${files.port}/secret/a.mp4`);
    assert.equal(created.body.kind, 'http');
    await waitEnded(server, 'cam');
    const answer = await request(server.url).post('/v1/streams/cam/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
    assert.equal(answer.body.text, 'green');

    const seen = [
      (await request(server.url).get('/v1/streams').set(AUTH)).text,
      (await request(server.url).get('/v1/streams/cam').set(AUTH)).text,
      (await request(server.url).get('/metrics').set(AUTH)).text,
      server.logs.join('\n'),
    ];
    for (const text of seen) assert.ok(!text.includes('hunter2'), `no password in: ${text.slice(0, 200)}`);
    const record = path.join(server.dataDir, 'streams', 'cam', 'stream.json');
    assert.equal(fs.statSync(record).mode & 0o777, 0o600, 'the record that holds the URL is readable by the owner only');
  });

  it('reports a failing source in the status without its password', async () => {
    const source = `http://vigil:wrong-hunter2@127.0.0.1:${files.port}/secret/a.mp4`;
    await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'badcam', source }).expect(201);
    const failed = await waitFor('the source to fail', async () => {
      const s = (await request(server.url).get('/v1/streams/badcam').set(AUTH)).body;
      return s.state === 'failed' ? s : undefined;
    }, 60_000);
    assert.equal(failed.error.code, 'SOURCE_AUTH');
    assert.ok(!JSON.stringify(failed).includes('hunter2'));
    assert.ok(server.logs.every((line) => !line.includes('hunter2')));
  });

  it('still refuses other private networks', async () => {
    const res = await request(server.url).post('/v1/streams').set(AUTH).send({ source: 'http://10.0.0.1/x.mp4' });
    assert.equal(res.status, 403);
  });
});
