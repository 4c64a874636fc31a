/**
 * The service around the routes: readiness while the model loads, /metrics after real work, the
 * generated OpenAPI document, the config file (cameras validated by the API's schemas, secrets from
 * env vars kept out of the data folder), and the fair model scheduler.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../../api/app.js';
import { loadServiceConfig } from '../../api/config.js';
import { ModelScheduler } from '../../src/engine/manager/modelScheduler.js';
import type { StreamManager } from '../../src/engine/streamManager.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, tempDir, waitEnded } from './helpers.js';

after(() => disposeSharedModel());

describe('readiness', () => {
  it('answers /healthz at once, and /readyz and /v1 with 503 until the manager is ready', async () => {
    let resolve!: (m: StreamManager) => void;
    const pending = new Promise<StreamManager>((r) => (resolve = r));
    const { app } = createApp({ manager: pending, auth: { disabled: true } });
    await request(app).get('/healthz').expect(200);
    const ready = await request(app).get('/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.body.error.code, 'NOT_READY');
    const api = await request(app).get('/v1/streams');
    assert.equal(api.status, 503);
    assert.equal(api.headers['retry-after'], '2');
    void resolve;
  });

  it('reports a failed start on /readyz and /v1 (503) instead of crashing', async () => {
    const failing = Promise.reject(new Error('model folder is damaged'));
    failing.catch(() => {});
    const logs: string[] = [];
    const { app, ctx } = createApp({ manager: failing, auth: { disabled: true }, log: (l) => logs.push(l) });
    await ctx.ready;
    assert.equal((await request(app).get('/readyz')).status, 503);
    const res = await request(app).get('/v1/streams');
    assert.equal(res.status, 503);
    assert.match(res.body.error.message, /damaged/);
  });
});

describe('metrics and OpenAPI', () => {
  it('exposes ingest, memory and question-latency metrics after real work', async () => {
    const clips = await makeClips();
    const server = await startTestServer({ filesDir: clips });
    try {
      await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'm', source: 'a.mp4', window: 4 }).expect(201);
      await waitEnded(server, 'm');
      await request(server.url).post('/v1/streams/m/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
      const res = await request(server.url).get('/metrics').set(AUTH).expect(200);
      assert.match(res.headers['content-type'] ?? '', /^text\/plain/);
      const text = res.text;
      for (const line of [
        /^vigil_ingest_fps\{stream="m"\} [\d.]+$/m,
        /^vigil_ingest_lag_seconds\{stream="m"\} [\d.]+$/m,
        /^vigil_ingest_frames_dropped_total\{stream="m"\} 0$/m,
        /^vigil_ingest_reconnects_total\{stream="m"\} 0$/m,
        /^vigil_ingest_frames_total\{stream="m"\} 40$/m,
        /^vigil_memory_chunks\{stream="m"\} 40$/m,
        /^vigil_memory_disk_bytes\{stream="m"\} [1-9]\d*$/m,
        /^vigil_memory_budget_bytes\{stream="m"\} 20000000000$/m,
        /^vigil_memory_budget_used_bytes\{stream="m"\} [1-9]\d*$/m,
        /^vigil_streams\{state="ended"\} 1$/m,
        /^vigil_question_seconds_count\{phase="ttft",mode="rekv"\} 1$/m,
        /^vigil_question_seconds_count\{phase="retrieval",mode="rekv"\} 1$/m,
        /^vigil_questions_total\{outcome="answered"\} 1$/m,
        /^vigil_http_requests_total\{method="POST",route="\/v1\/streams\/",status="201"\} 1$/m,
        /^vigil_process_resident_memory_bytes /m,
      ]) {
        assert.match(text, line);
      }
    } finally {
      await server.close();
    }
  });

  it('serves an OpenAPI 3 document generated from the request schemas', async () => {
    const { app } = createApp({ manager: new Promise(() => {}), auth: { disabled: true } });
    const doc = (await request(app).get('/openapi.json').expect(200)).body;
    assert.equal(doc.openapi, '3.0.3');
    for (const p of ['/v1/streams', '/v1/streams/{id}', '/v1/streams/{id}/stop', '/v1/streams/{id}/questions', '/v1/streams/{id}/frames/{chunk}.jpg', '/v1/chat/completions', '/healthz', '/readyz', '/metrics']) {
      assert.ok(doc.paths[p], p);
    }
    const create = doc.components.schemas.CreateStream;
    assert.deepEqual(create.required, ['source']);
    assert.equal(create.additionalProperties, false);
    assert.equal(create.properties.fps.maximum, 30);
    assert.match(JSON.stringify(create.properties.retention), /"\$ref":"#\/components\/schemas\/Retention"/);
    assert.deepEqual(doc.components.schemas.Question.required, ['question']);
    assert.deepEqual(doc.components.schemas.Error.required, ['error']);
    assert.equal(doc.components.securitySchemes.bearer.scheme, 'bearer');
    assert.equal(JSON.stringify(doc).includes('$id'), false);
  });
});

describe('config file', () => {
  it('validates the file with the API schemas, expands ${VAR}s, and keeps camera secrets out of the data folder', async () => {
    const clips = await makeClips();
    const dir = tempDir('vigil-config-');
    const file = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      file,
      [
        'data: ${TEST_VIGIL_DATA}',
        'auth:',
        '  tokens: ["${TEST_VIGIL_TOKEN}"]',
        'urlPolicy:',
        '  allowNetworks: ["192.168.1.0/24"]',
        'limits: { questionsPerStream: 2 }',
        'cameras:',
        '  - id: front',
        '    name: Front door',
        '    source: ${TEST_CLIPS}/a.mp4',
        '    window: 4',
        '    retention: { maxAgeSec: 86400 }',
        '',
      ].join('\n'),
    );
    const env = { TEST_VIGIL_DATA: path.join(dir, 'data'), TEST_VIGIL_TOKEN: 'config-token-0123456789', TEST_CLIPS: clips };
    const config = loadServiceConfig(file, env);
    assert.equal(config.data, env.TEST_VIGIL_DATA);
    assert.deepEqual(config.auth?.tokens, ['config-token-0123456789']);
    assert.equal(config.cameras?.[0]?.source, '${TEST_CLIPS}/a.mp4', 'camera sources keep their placeholders');

    // A config camera starts through the manager's declare(); its source is expanded only when it runs.
    process.env.TEST_CLIPS = clips;
    const server = await startTestServer({ dataDir: env.TEST_VIGIL_DATA, server: { cameras: config.cameras! } });
    try {
      const status = await waitEnded(server, 'front');
      assert.equal(status.name, 'Front door');
      assert.equal(status.origin, 'config');
      assert.deepEqual(status.settings.retention, { maxAgeSec: 86400 });
      const record = fs.readFileSync(path.join(env.TEST_VIGIL_DATA, 'streams', 'front', 'stream.json'), 'utf8');
      assert.ok(record.includes('${TEST_CLIPS}'), 'the stored record keeps the placeholder');
      assert.ok(!record.includes(clips), 'the expanded value is not stored');
      const answer = await request(server.url).post('/v1/streams/front/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
      assert.equal(answer.body.text, 'green');
    } finally {
      await server.close();
      delete process.env.TEST_CLIPS;
    }
  });

  it('rejects bad config files with one clear line', () => {
    const dir = tempDir('vigil-config-');
    const write = (text: string) => {
      const file = path.join(dir, `c${Math.random()}.yaml`);
      fs.writeFileSync(file, text);
      return file;
    };
    const fails = (text: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}) =>
      assert.throws(() => loadServiceConfig(write(text), env), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && pattern.test(e.message));
    fails('cameras:\n  - id: x\n', /cameras\.0\.source/);
    fails('cameras:\n  - id: x\n    source: rtsp://${CAM_PASS}@cam/s\n', /CAM_PASS/);
    fails('cameras:\n  - id: "../x"\n    source: rtsp://cam/s\n', /cameras\.0\.id/);
    fails('cameras:\n  - { id: x, source: "rtsp://a/s" }\n  - { id: x, source: "rtsp://b/s" }\n', /appears twice/);
    fails('cameras:\n  - { id: x, source: "rtsp://a/s", fps: 1000 }\n', /fps/);
    fails('auth:\n  tokens: ["short"]\n', /16 characters/);
    fails('urlPolicy:\n  allowNetworks: ["not-a-network"]\n', /not an IP address/);
    fails('colour: red\n', /colour|Unrecognized/);
    fails('port: [1\n', /not valid YAML/);
    assert.throws(() => loadServiceConfig(path.join(dir, 'missing.yaml')), (e: Error & { code?: string }) => e.code === 'FILE_NOT_FOUND');
  });
});

describe('model scheduler', () => {
  const tick = () => new Promise((r) => setImmediate(r));

  it('runs one job at a time: questions before frames, owners in turn, a frame after a burst of questions', async () => {
    const scheduler = new ModelScheduler(2);
    const order: string[] = [];
    let release!: () => void;
    const first = scheduler.run('x', 'frame', () => new Promise<void>((r) => (release = r)));
    const job = (owner: string, kind: 'frame' | 'question', name: string) => scheduler.run(owner, kind, async () => void order.push(name));
    const all = [
      job('a', 'frame', 'a-f1'),
      job('a', 'frame', 'a-f2'),
      job('b', 'frame', 'b-f1'),
      job('a', 'question', 'a-q1'),
      job('a', 'question', 'a-q2'),
      job('b', 'question', 'b-q1'),
      job('a', 'question', 'a-q3'),
    ];
    await tick();
    assert.deepEqual(scheduler.stats().running, { owner: 'x', kind: 'frame' });
    assert.equal(scheduler.stats().queuedQuestions, 4);
    release();
    await first;
    await Promise.all(all);
    // Questions first, alternating owners; after 2 questions in a row a waiting frame gets a turn.
    assert.deepEqual(order, ['a-q1', 'b-q1', 'a-f1', 'a-q2', 'a-q3', 'b-f1', 'a-f2']);
  });

  it('removes a job whose signal aborts before it runs (CANCELLED), and keeps running after a failing job (rejecting or throwing)', async () => {
    const scheduler = new ModelScheduler();
    let release!: () => void;
    const blocker = scheduler.run('x', 'frame', () => new Promise<void>((r) => (release = r)));
    const abort = new AbortController();
    const cancelled = scheduler.run('a', 'question', async () => 'ran', abort.signal);
    const failing = scheduler.run('a', 'question', async () => {
      throw new Error('boom');
    });
    // A task that throws before returning a promise must not leave the model marked busy.
    const throwing = scheduler.run('a', 'question', (): Promise<void> => {
      throw new Error('sync boom');
    });
    const after = scheduler.run('a', 'question', async () => 'after');
    abort.abort();
    await assert.rejects(cancelled, (e: Error & { code?: string }) => e.code === 'CANCELLED');
    release();
    await blocker;
    await assert.rejects(failing, /boom/);
    await assert.rejects(throwing, /sync boom/);
    assert.equal(await after, 'after');
    assert.deepEqual(scheduler.stats().completed, { question: 3, frame: 1 });
  });
});
