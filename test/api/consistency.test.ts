/**
 * API consistency (issue 13), over real HTTP servers on 127.0.0.1 with the probe-needle model:
 * one set of limits (common/settings.ts) for the API, OpenAPI, config file, CLI and engine; live
 * responses valid against the served /openapi.json (ajv); the ingest limit (ended and failed
 * streams do not count, 429 with Retry-After); /metrics accepted by `promtool check metrics`; the
 * OpenAI-compatible route through the official `openai` client (streamed = non-streamed text,
 * tools and image parts refused); and no server path in any error a caller sees.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import request from 'supertest';
import { loadServiceConfig } from '../../api/config.js';
import { startServer } from '../../api/server.js';
import { LIMITS, MAX_QUESTION_CHARS } from '../../common/settings.js';
import { runVigil } from '../helpers/runVigil.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, tempDir, TOKEN, type TestServer, openApiValidator, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());


/** Error bodies must not show where the server keeps anything. */
function assertNoServerPath(text: string, dirs: string[]): void {
  for (const dir of [...dirs, os.tmpdir()]) {
    for (const spelling of new Set([dir, fs.existsSync(dir) ? fs.realpathSync(dir) : dir])) assert.ok(!text.includes(spelling), `"${spelling}" appears in ${text}`);
  }
}

describe('API consistency', () => {
  let clips: string;
  let server: TestServer;
  let valid: (schema: string, value: unknown) => void;
  const api = () => request(server.url);

  before(async () => {
    clips = await makeClips(30);
    server = await startTestServer({ filesDir: clips });
    valid = await openApiValidator(server.url);
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await waitEnded(server, 'a');
  });
  after(() => server?.close());

  it('one question limit and one set of setting ranges for the schema, OpenAPI, config file, CLI and engine', async () => {
    const doc = (await api().get('/openapi.json')).body;
    const schemas = doc.components.schemas;
    assert.equal(schemas.Question.properties.question.maxLength, MAX_QUESTION_CHARS);
    assert.equal(MAX_QUESTION_CHARS, 2000);
    assert.equal(schemas.CreateStream.properties.window.maximum, LIMITS.window.max);
    assert.equal(schemas.CreateStream.properties.fps.maximum, LIMITS.fps.max);
    assert.equal(schemas.UploadStream.properties.window.type, 'integer');
    assert.equal(schemas.Question.properties.r.maximum, LIMITS.r.max);
    assert.equal(schemas.ChatCompletionRequest.properties.max_tokens.maximum, LIMITS.maxTokens.max);

    // The longest allowed question is answered; one more character is refused by the schema, naming the field.
    const longest = `${question('red')} ${'x'.repeat(MAX_QUESTION_CHARS - question('red').length - 1)}`;
    assert.equal(longest.length, MAX_QUESTION_CHARS);
    const ok = await api().post('/v1/streams/a/questions').set(AUTH).send({ question: longest, r: 4, maxTokens: 4 });
    assert.equal(ok.status, 200, ok.text);
    const tooLong = await api().post('/v1/streams/a/questions').set(AUTH).send({ question: `${longest}x` });
    assert.equal(tooLong.status, 400);
    assert.match(tooLong.body.error.message, /question: .*2000/);

    // The same window limit in the API, the config file, the CLI and the engine.
    const over = LIMITS.window.max + 1;
    const viaApi = await api().post('/v1/streams').set(AUTH).send({ source: 'a.mp4', window: over });
    assert.equal(viaApi.status, 400);
    const configFile = path.join(tempDir('vigil-config-'), 'vigil.yaml');
    fs.writeFileSync(configFile, `cameras:\n  - { id: x, source: "rtsp://cam.example.com/s", window: ${over} }\n`);
    assert.throws(() => loadServiceConfig(configFile, {}), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && /window/.test(e.message));
    const cli = await runVigil(['ask', path.join(clips, 'a.mp4'), 'q', '--window', String(over)]);
    assert.equal(cli.code, 2, cli.stderr);
    assert.match(cli.stderr, new RegExp(`--window.*1\\.\\.${LIMITS.window.max}`));
    await assert.rejects(server.ready.create({ source: 'rtsp://cam.example.com/s', window: over }, 'config'), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /window/.test(e.message));
    // Defaults come from the same place.
    const defaults = await api().post('/v1/streams').set(AUTH).send({ id: 'defaults', source: 'a.mp4' }).expect(201);
    assert.deepEqual(defaults.body.settings, { fps: LIMITS.fps.default, window: LIMITS.window.default, sinks: LIMITS.sinks.default, storage: 'float32', gate: 'off', retention: {}, budget: LIMITS.budget.default, tiers: { keepFullSec: LIMITS.keepFullSec.default, kvShare: LIMITS.kvShare.default, archive: true } });
    await waitEnded(server, 'defaults');
    await api().delete('/v1/streams/defaults?purge=true').set(AUTH).expect(204);
  });

  it('live responses match the served OpenAPI schemas exactly: status, list, answer, chat, models, errors', async () => {
    const status = (await api().get('/v1/streams/a').set(AUTH).expect(200)).body;
    valid('StreamStatus', status);
    // The length is the container's own, as ffprobe reads it (a CI run once saw 29.5 s for this 30-s clip).
    const probed = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', path.join(clips, 'a.mp4')], { encoding: 'utf8' });
    assert.equal(probed.status, 0, probed.stderr);
    assert.deepEqual(status.progress, { t: 29, durationS: Number(probed.stdout.trim()), fraction: 1 });
    valid('StreamList', (await api().get('/v1/streams').set(AUTH).expect(200)).body);
    const answer = (await api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200)).body;
    valid('Answer', answer);
    assert.equal(answer.text, 'green');
    valid('ChatCompletion', (await api().post('/v1/chat/completions').set(AUTH).send({ model: 'a', messages: [{ role: 'user', content: question('red') }], vigil: { r: 4 } }).expect(200)).body);
    valid('ModelList', (await api().get('/v1/models').set(AUTH).expect(200)).body);
    for (const res of [
      await api().get('/v1/streams/nope').set(AUTH),
      await api().post('/v1/streams/a/questions').set(AUTH).send({ question: '' }),
      await api().get('/v1/streams'),
      await api().get('/v1/nothing').set(AUTH),
    ]) {
      assert.ok(res.status >= 400, res.text);
      valid('Error', res.body);
    }
    // A schema that is not exact would accept this.
    assert.throws(() => valid('StreamStatus', { ...status, extra: 1 }), /additional/);
  });

  it('the official openai client: streamed content equals the non-streamed content', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN, maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: question('red') }];
    const plain = await client.chat.completions.create({ model: 'a', messages, max_tokens: 8 });
    assert.equal(plain.choices[0]?.message.content, 'green');
    const stream = await client.chat.completions.create({ model: 'a', messages, max_tokens: 8, stream: true });
    let streamed = '';
    const pieces: string[] = [];
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content;
      if (piece) pieces.push(piece);
      streamed += piece ?? '';
    }
    assert.equal(streamed, plain.choices[0]?.message.content, `streamed pieces ${JSON.stringify(pieces)}`);
    // The native SSE route streams the same pieces.
    const sse = await api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), r: 4, stream: true }).buffer(true).parse((res, cb) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => cb(null, text));
    });
    const tokens = (sse.body as string).split('\n').filter((l) => l.startsWith('data: {"text"')).map((l) => (JSON.parse(l.slice(6)) as { text: string }).text);
    assert.equal(tokens.join(''), 'green');
  });

  it('the openai client gets a clear 400 for tools and image content, streamed or not', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN, maxRetries: 0 });
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }];
    const image = [{ role: 'user' as const, content: [{ type: 'text' as const, text: question('red') }, { type: 'image_url' as const, image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }];
    for (const stream of [false, true]) {
      await assert.rejects(
        client.chat.completions.create({ model: 'a', messages: [{ role: 'user', content: question('red') }], tools, stream }),
        (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.code === 'BAD_INPUT' && /tools: tool calling is not supported/.test(e.message),
      );
      await assert.rejects(
        client.chat.completions.create({ model: 'a', messages: image, stream }),
        (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.code === 'BAD_INPUT' && /messages\.0\.content\.1: .*"image_url" are not supported/.test(e.message),
      );
    }
    const raw = await api().post('/v1/chat/completions').set(AUTH).send({ model: 'a', messages: [{ role: 'user', content: 'hi' }], tools });
    assert.equal(raw.status, 400);
    valid('Error', raw.body);
  });

  it('errors never show server paths: files folder, data folder, uploads, stores, models', async () => {
    const bodies: string[] = [];
    const expectError = async (res: request.Response, status: number, code: string) => {
      assert.equal(res.status, status, res.text);
      assert.equal(res.body.error.code, code, res.text);
      valid('Error', res.body);
      bodies.push(res.text);
      return res.body.error.message as string;
    };
    // A missing file given by its absolute path inside the files folder: named relative to that folder.
    const missing = await expectError(await api().post('/v1/streams').set(AUTH).send({ source: path.join(clips, 'sub', 'missing.mp4') }), 400, 'FILE_NOT_FOUND');
    assert.match(missing, /sub\/missing\.mp4/);
    // A damaged memory folder under the data folder: the store's error names the stream.
    const bad = path.join(server.dataDir, 'streams', 'damaged', 'kv');
    fs.mkdirSync(bad, { recursive: true });
    fs.writeFileSync(path.join(bad, 'manifest.sqlite'), 'this is not a database'.repeat(100));
    const damaged = await expectError(await api().post('/v1/streams').set(AUTH).send({ id: 'damaged', source: 'a.mp4' }), 500, 'STORE_CORRUPT');
    assert.match(damaged, /stream 'damaged'/);
    // An upload that is not a video: the failure in the status names the upload, not its spool file.
    const up = await api().post('/v1/streams').set(AUTH).field('id', 'junk').attach('file', Buffer.from('not a video at all '.repeat(1000)), 'junk.mp4');
    if (up.status >= 400) await expectError(up, up.status, up.body.error.code);
    else {
      const failed = await waitFor('the junk upload to fail', () => {
        const s = server.ready.status('junk');
        return s.state === 'failed' ? s : undefined;
      });
      assert.ok(failed.error);
      const res = await api().get('/v1/streams/junk').set(AUTH).expect(200);
      valid('StreamStatus', res.body);
      bodies.push(res.text);
    }
    // A model folder that does not exist: the start failure shown by /v1 names no folder.
    const modelDir = path.join(tempDir('vigil-models-'), 'no-such-model');
    const broken = await startServer({ host: '127.0.0.1', port: 0, auth: { tokens: [TOKEN] }, manager: { dataDir: tempDir('vigil-data-'), model: modelDir } });
    try {
      await broken.manager.catch(() => undefined);
      const res = await request(broken.url).get('/v1/streams').set(AUTH);
      await expectError(res, 503, 'NOT_READY');
    } finally {
      await broken.close();
    }
    if (process.env.VIGIL_TEST_SHOW) console.log(bodies.join('\n'));
    for (const body of bodies) assertNoServerPath(body, [clips, server.dataDir, modelDir]);
  });

  it('/metrics passes promtool check metrics', async (t) => {
    const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (promtool.error) {
      const reason = 'promtool is not installed (Debian package prometheus)';
      if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
      process.stderr.write(`\n*** SKIPPING PROMTOOL TEST: ${reason} ***\n\n`);
      t.skip(reason);
      return;
    }
    const text = (await api().get('/metrics').set(AUTH).expect(200)).text;
    assert.match(text, /^vigil_questions_total\{outcome="answered"\} [1-9]/m, 'metrics after real work');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  });
});

describe('stream limit', () => {
  let server: TestServer;
  let clips: string;
  before(async () => {
    clips = await makeClips(30);
    server = await startTestServer({
      filesDir: clips,
      manager: { limits: { maxStreams: 2 }, policy: { filesDir: clips, allowNetworks: ['127.0.0.1/32'] }, sourceOptions: { backoff: { initialMs: 300, maxMs: 1000 }, socketTimeoutS: 2 } },
    });
  });
  after(() => server?.close());

  it('counts only streams that are ingesting; a refused create says when to retry; a backing-off stream says why', async () => {
    const api = () => request(server.url);
    const valid = await openApiValidator(server.url);
    // A camera that is down: it keeps ingesting (reconnecting), and its status says why it is not live.
    await api().post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'rtsp://127.0.0.1:9/stream' }).expect(201);
    const backingOff = await waitFor('the camera to back off', async () => {
      const res = await api().get('/v1/streams/cam').set(AUTH);
      return res.body.state === 'backing-off' ? res.body : undefined;
    });
    valid('StreamStatus', backingOff);
    assert.match(backingOff.error?.code ?? '', /^SOURCE_/, JSON.stringify(backingOff));
    assert.ok(backingOff.error.message.length > 0);
    assert.deepEqual(backingOff.progress, { t: 0, durationS: null, fraction: null });

    await api().post('/v1/streams').set(AUTH).send({ id: 'a1', source: 'a.mp4', window: 4 }).expect(201);
    const refused = await api().post('/v1/streams').set(AUTH).send({ id: 'a2', source: 'a.mp4', window: 4 });
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.body.error.code, 'OVERLOADED');
    assert.match(refused.headers['retry-after'] ?? '', /^[1-9]\d*$/);
    valid('Error', refused.body);

    // An ended stream no longer counts.
    await waitEnded(server, 'a1');
    await api().post('/v1/streams').set(AUTH).send({ id: 'a2', source: 'a.mp4', window: 4 }).expect(201);
    await waitEnded(server, 'a2');
    // Neither does a failed one (an upload that is not a video).
    const junk = await api().post('/v1/streams').set(AUTH).field('id', 'junk').attach('file', Buffer.from('junk '.repeat(1000)), 'junk.mp4');
    if (junk.status === 201) await waitFor('the junk upload to fail', () => server.ready.status('junk').state === 'failed');
    // Nor a stopped one: stop the camera, and two more streams fit.
    await api().post('/v1/streams/cam/stop').set(AUTH).expect(200);
    assert.equal(server.ready.ingestingStreams, 0);
    await api().post('/v1/streams').set(AUTH).send({ id: 'b1', source: 'b.mp4', window: 4 }).expect(201);
    await api().post('/v1/streams').set(AUTH).send({ id: 'b2', source: 'b.mp4', window: 4 }).expect(201);
    // Restarting the camera now would be a third: refused the same way.
    const start = await api().post('/v1/streams/cam/start').set(AUTH);
    assert.equal(start.status, 429, start.text);
    assert.match(start.headers['retry-after'] ?? '', /^[1-9]\d*$/);
    await waitEnded(server, 'b1');
    await api().post('/v1/streams/cam/start').set(AUTH).expect(200);
  });
});
