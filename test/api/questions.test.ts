/**
 * Questions over HTTP: JSON answers with evidence and timing, Server-Sent Events (tokens, then the
 * evidence event), the OpenAI-compatible chat completions (plain and streamed), bounded queues
 * (429 with Retry-After), cancellation when a streaming client leaves, and every error.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { AUTH, disposeSharedModel, makeClips, parseSse, question, startTestServer, type TestServer, waitEnded, waitFor, wholeText } from './helpers.js';

describe('questions API', () => {
  let server: TestServer;
  let api: () => ReturnType<typeof request>;

  before(async () => {
    const clips = await makeClips();
    server = await startTestServer({ filesDir: clips, manager: { limits: { questionsPerStream: 2, questionsTotal: 3 } } });
    api = () => request(server.url);
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await api().post('/v1/streams').set(AUTH).send({ id: 'b', source: 'b.mp4', window: 4 }).expect(201);
    await waitEnded(server, 'a');
    await waitEnded(server, 'b');
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
  });

  /** Holds the model (as a long frame encode would) until the returned function is called (and awaited). */
  function holdModel(): () => Promise<void> {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held = server.ready.scheduler.run('test-hold', 'frame', () => gate);
    return () => {
      release();
      return held;
    };
  }

  it('answers with JSON: text, evidence with thumbnails and times, timing by phase', async () => {
    const res = await api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), r: 4, maxTokens: 8 }).expect(200);
    assert.equal(res.body.text, 'green');
    assert.equal(res.body.mode, 'rekv');
    assert.equal(res.body.stopReason, 'eos');
    const needle = res.body.evidence.find((e: { tStart: number }) => e.tStart >= 10 && e.tStart <= 12);
    assert.ok(needle, `the needle frame is in the evidence: ${JSON.stringify(res.body.evidence)}`);
    assert.ok(needle.score > 0);
    assert.equal(needle.thumbnail, `/v1/streams/a/frames/${needle.chunkId}.jpg`);
    await api().get(needle.thumbnail).set(AUTH).expect(200).expect('Content-Type', 'image/jpeg');
    for (const key of ['queueMs', 'retrievalMs', 'loadMs', 'prefillMs', 'ttftMs', 'decodeMs', 'totalMs']) assert.equal(typeof res.body.timing[key], 'number', key);
    assert.ok(res.body.contextTokens > 0);
  });

  it('modes and time ranges: window-only misses the evicted needle, a range without it gives unknown, oracle finds it', async () => {
    const ask = (body: object) => api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), maxTokens: 8, ...body }).expect(200);
    assert.equal((await ask({ mode: 'window' })).body.text, 'unknown');
    assert.equal((await ask({ r: 4, from: 20, to: 39 })).body.text, 'unknown');
    assert.equal((await ask({ r: 4, from: 5, to: 15 })).body.text, 'green');
    assert.equal((await ask({ mode: 'oracle', from: 10, to: 12 })).body.text, 'green');
    assert.equal((await ask({ mode: 'full' })).body.text, 'green');
  });

  it('streams the answer as Server-Sent Events: token events, then one evidence event', async () => {
    const res = await api()
      .post('/v1/streams/a/questions')
      .set(AUTH)
      .send({ question: question('red'), r: 4, stream: true })
      .buffer(true)
      .parse(wholeText);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    const events = parseSse(res.body as string);
    const tokens = events.filter((e) => e.event === 'token');
    assert.ok(tokens.length >= 1);
    assert.equal(tokens.map((e) => (JSON.parse(e.data) as { text: string }).text).join('').trim(), 'green');
    const last = events.at(-1)!;
    assert.equal(last.event, 'evidence');
    const answer = JSON.parse(last.data);
    assert.equal(answer.text, 'green');
    assert.ok(answer.evidence.some((e: { tStart: number; score: number }) => e.tStart >= 10 && e.tStart <= 12 && e.score > 0));
  });

  it('validates questions: 400 for empty, unknown fields, bad mode, from > to, oracle without a range; 404 unknown stream', async () => {
    const bad = async (body: unknown, status = 400, code = 'BAD_INPUT', stream = 'a') => {
      const res = await api().post(`/v1/streams/${stream}/questions`).set(AUTH).send(body as object);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.error.code, code);
    };
    await bad({ question: '   ' });
    await bad({});
    await bad({ question: 'x', temperature: 'hot' });
    await bad({ question: 'x', mode: 'magic' });
    await bad({ question: 'x', from: 10, to: 5 });
    await bad({ question: 'x', r: -1 });
    await bad({ question: 'x', maxTokens: 100000 });
    await bad({ question: 'x', extra: true });
    await bad({ question: 'x', mode: 'oracle' });
    await bad({ question: 'x' }, 404, 'STREAM_NOT_FOUND', 'missing');
  });

  it('answers through the OpenAI-compatible chat completions API, with evidence in the extra field', async () => {
    const res = await api()
      .post('/v1/chat/completions')
      .set(AUTH)
      .send({ model: 'b', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: question('yellow') }] }], max_tokens: 8, user: 'x', vigil: { r: 4 } })
      .expect(200);
    assert.equal(res.body.object, 'chat.completion');
    assert.equal(res.body.model, 'b');
    assert.deepEqual(res.body.choices[0].message, { role: 'assistant', content: 'magenta' });
    assert.equal(res.body.choices[0].finish_reason, 'stop');
    assert.ok(res.body.usage.completion_tokens >= 1);
    assert.ok(res.body.vigil.evidence.some((e: { tStart: number; score: number }) => e.tStart >= 26 && e.tStart <= 28 && e.score > 0));

    const models = await api().get('/v1/models').set(AUTH).expect(200);
    assert.deepEqual(models.body.data.map((m: { id: string }) => m.id).sort(), ['a', 'b']);

    const badModel = await api().post('/v1/chat/completions').set(AUTH).send({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(badModel.status, 404);
    assert.equal(badModel.body.error.code, 'STREAM_NOT_FOUND');
    const noUser = await api().post('/v1/chat/completions').set(AUTH).send({ model: 'a', messages: [{ role: 'system', content: 'hi' }] });
    assert.equal(noUser.status, 400);
    const noMessages = await api().post('/v1/chat/completions').set(AUTH).send({ model: 'a', messages: [] });
    assert.equal(noMessages.status, 400);
  });

  it('streams chat completion chunks and ends with [DONE]', async () => {
    const res = await api()
      .post('/v1/chat/completions')
      .set(AUTH)
      .send({ model: 'a', stream: true, messages: [{ role: 'user', content: question('red') }], vigil: { r: 4 } })
      .buffer(true)
      .parse(wholeText);
    assert.equal(res.status, 200);
    const events = parseSse(res.body as string);
    assert.equal(events.at(-1)!.data, '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'a'));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const content = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.equal(content.trim(), 'green');
    const final = chunks.at(-1);
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.ok(Array.isArray(final.vigil.evidence) && final.vigil.evidence.length > 0);
  });

  it('refuses questions with 429 and Retry-After when the per-stream or global queue is full', async () => {
    const release = holdModel();
    try {
      const ask = (stream: string) => api().post(`/v1/streams/${stream}/questions`).set(AUTH).send({ question: question('red'), r: 4 });
      const queued = [ask('a').then((r) => r), ask('a').then((r) => r)];
      await waitFor('two questions queued', () => server.ready.status('a').questions.queued === 2);
      const perStream = await ask('a');
      assert.equal(perStream.status, 429);
      assert.equal(perStream.body.error.code, 'OVERLOADED');
      assert.match(perStream.headers['retry-after'] ?? '', /^\d+$/);
      const third = ask('b').then((r) => r);
      await waitFor('third question queued', () => server.ready.status('b').questions.queued === 1);
      const global = await ask('b');
      assert.equal(global.status, 429, 'the global limit (3) applies across streams');
      assert.match(global.body.error.message, /server/);
      await release();
      const answers = await Promise.all([...queued, third]);
      assert.deepEqual(answers.map((r) => r.status), [200, 200, 200], 'queued questions are answered once the model is free');
      assert.deepEqual(answers.map((r) => r.body.text), ['green', 'green', 'blue']);
      assert.ok(answers[0]!.body.timing.queueMs > 0);
    } finally {
      await release();
    }
  });

  it('a streaming client that leaves cancels its queued question', async () => {
    const release = holdModel();
    try {
      const body = JSON.stringify({ question: question('red'), r: 4, stream: true });
      const url = new URL('/v1/streams/a/questions', server.url);
      const req = http.request(url, { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } });
      req.on('error', () => {});
      req.end(body);
      await waitFor('queued', () => server.ready.status('a').questions.queued === 1);
      req.destroy();
      await waitFor('cancelled and removed from the queue', () => server.ready.status('a').questions.queued === 0);
      assert.equal(server.ready.scheduler.stats().queuedQuestions, 0);
    } finally {
      await release();
    }
    const ok = await api().post('/v1/streams/a/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200);
    assert.equal(ok.body.text, 'green');
  });
});
