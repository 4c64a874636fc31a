/**
 * The memory horizon through the real service (issue 15 item 6): a stream whose small disk budget
 * made retention forget its first seconds shows it in its status (`memory.horizon`), in /metrics and
 * in `vigil store stats`; a question about a forgotten time (JSON, SSE, OpenAI chat) gets the
 * statement with HTTP 200 and no decoder call; a partly forgotten range is answered by the model
 * and says what was missing; an outage written into the timeline shows inside the horizon after a
 * restart, and a question inside it gets its statement.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { AnswerSchema } from '../../api/schemas/questions.js';
import { StreamStatusSchema } from '../../api/schemas/streams.js';
import { ChatCompletionResponse } from '../../api/schemas/chat.js';
import { ChunkStore } from '../../memory/store/index.js';
import { streamDir, streamStoreDir } from '../../src/engine/dataLayout.js';
import { streamClock } from '../../src/engine/memoryHorizon.js';
import type { StreamStatus } from '../../src/engine/streamManager.js';
import { runVigil } from '../helpers/runVigil.js';
import { AUTH, disposeSharedModel, makeClips, parseSse, question, sharedModel, startTestServer, tempDir, type TestServer, waitEnded } from './helpers.js';

describe('memory horizon in the service', () => {
  let clips: string;
  const dataDir = tempDir('vigil-horizon-');
  const servers: TestServer[] = [];
  const start = async () => {
    const started = await startTestServer({ dataDir, filesDir: clips });
    servers.push(started);
    return started;
  };
  before(async () => {
    clips = await makeClips();
  });
  after(async () => {
    for (const s of servers) await s.close();
    await disposeSharedModel();
  });

  it('status, metrics, answers and store stats state the horizon; a forgotten time is stated without a model call', async (t) => {
    const s = await start();
    // 4 frames a second of a 40-s clip at ~9.5 kB a chunk: ~1.5 MB, far over a 400 kB budget. No
    // tiers (the whole budget may hold KV, no archive): the start is forgotten outright.
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'small', source: 'a.mp4', fps: 4, window: 2, budget: '400kB', tiers: { kvShare: 1, archive: false } }).expect(201);
    await request(s.url).post('/v1/streams').set(AUTH).send({ id: 'whole', source: 'b.mp4', window: 4 }).expect(201);
    await waitEnded(s, 'small', 60_000);
    await waitEnded(s, 'whole', 60_000);

    const small = (await request(s.url).get('/v1/streams/small').set(AUTH).expect(200)).body as StreamStatus;
    StreamStatusSchema.parse(small);
    const h = small.memory!.horizon;
    assert.ok(h.forgottenBefore !== null && h.forgottenChunks > 0, `retention forgot: ${JSON.stringify(h)}`);
    assert.ok(h.from! > 13, `the red screen (10-13 s) is forgotten: memory from ${h.from}`);
    assert.ok(h.forgottenBefore < h.from!);
    assert.equal(h.from, small.memory!.firstT);
    assert.equal(h.to, small.memory!.lastT);
    assert.deepEqual(h.spans.map((x) => x.tier), ['kv-float32']);
    assert.equal(h.spans[0]!.chunks, small.memory!.chunks);
    assert.deepEqual(h.gaps, []);
    const whole = s.ready.status('whole').memory!.horizon;
    assert.equal(whole.from, 0);
    assert.equal(whole.forgottenBefore, null);
    assert.equal(whole.forgottenChunks, 0);

    const metrics = (await request(s.url).get('/metrics').set(AUTH).expect(200)).text;
    const seconds = Number(/^vigil_memory_horizon_seconds\{stream="small"\} (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(Math.abs(seconds - (h.to! - h.from!)) < 1e-9, `vigil_memory_horizon_seconds ${seconds}`);
    assert.match(metrics, new RegExp(`^vigil_memory_forgotten_chunks_total\\{stream="small"\\} ${h.forgottenChunks}$`, 'm'));
    assert.match(metrics, /^vigil_memory_forgotten_chunks_total\{stream="whole"\} 0$/m);

    // A forgotten time: 200, the statement, no decoder call (ingest has ended: nothing else runs the model).
    const model = await sharedModel();
    const steps = model.decoder.stepsRun;
    const statement = `I no longer have memory of 0:10–0:13; my memory starts at ${streamClock(h.from!)}.`;
    const forgotten = (await request(s.url).post('/v1/streams/small/questions').set(AUTH).send({ question: question('red'), from: 10, to: 13 }).expect(200)).body;
    AnswerSchema.parse(forgotten);
    assert.equal(forgotten.text, statement);
    assert.equal(forgotten.outOfMemory, true);
    assert.deepEqual(forgotten.coverage.missing, [{ from: 10, to: 13, reason: 'before-horizon', detail: null }]);
    assert.deepEqual(forgotten.horizon, h);
    assert.equal(forgotten.tokens, 0);
    const sse = parseSse((await request(s.url).post('/v1/streams/small/questions').set(AUTH).send({ question: question('red'), from: 10, to: 13, stream: true }).expect(200)).text);
    assert.deepEqual(sse.filter((e) => e.event === 'token').map((e) => JSON.parse(e.data).text), [statement]);
    assert.equal(JSON.parse(sse.find((e) => e.event === 'evidence')!.data).outOfMemory, true);
    const chat = (await request(s.url).post('/v1/chat/completions').set(AUTH).send({ model: 'small', messages: [{ role: 'user', content: question('red') }], vigil: { from: 10, to: 13 } }).expect(200)).body;
    ChatCompletionResponse.parse(chat);
    assert.equal(chat.choices[0].message.content, statement);
    assert.equal(chat.vigil.outOfMemory, true);
    assert.equal(model.decoder.stepsRun, steps, 'no decoder call for any of the three');

    // Partly forgotten: the model answers over what is kept; the answer says what was not.
    const partial = (await request(s.url).post('/v1/streams/small/questions').set(AUTH).send({ question: question('red'), r: 4, from: 0, to: 39 }).expect(200)).body;
    AnswerSchema.parse(partial);
    assert.ok(model.decoder.stepsRun > steps, 'the model answered');
    assert.equal(partial.outOfMemory, false);
    assert.deepEqual(partial.coverage.missing, [{ from: 0, to: h.from, reason: 'before-horizon', detail: null }]);
    assert.match(partial.coverage.note, /^Not in memory: 0:00–\d+:\d\d \(forgotten: my memory starts at /);
    assert.ok(partial.evidence.every((e: { tStart?: number }) => e.tStart === undefined || e.tStart >= h.from!), 'evidence only from what is kept');
    // No range: the whole horizon, no coverage.
    const plain = (await request(s.url).post('/v1/streams/whole/questions').set(AUTH).send({ question: question('red'), r: 4 }).expect(200)).body;
    assert.equal(plain.text, 'blue');
    assert.equal(plain.coverage, null);
    assert.equal(plain.outOfMemory, false);
    assert.equal(plain.horizon.from, 0);
    await s.close();

    // vigil store stats: the same horizon, as JSON and as a line.
    const json = await runVigil(['store', 'stats', '--data', dataDir, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as Array<{ stream: string; horizon: typeof h }>;
    assert.deepEqual(rows.find((r) => r.stream === 'small')!.horizon, h);
    const text = await runVigil(['store', 'stats', '--data', dataDir, '--stream', 'small']);
    assert.equal(text.code, 0, text.stderr);
    t.diagnostic(`vigil store stats: ${text.stdout.trim()}`);
    assert.match(
      text.stdout,
      new RegExp(`^  horizon ${streamClock(h.from!)}–${streamClock(h.to!)}: kv-float32 ${streamClock(h.from!)}–${streamClock(h.to!)} \\(${h.spans[0]!.chunks} chunks\\); no gaps; forgotten before ${streamClock(h.forgottenBefore)} \\(${h.forgottenChunks} chunks\\)$`, 'm'),
      text.stdout,
    );
  });

  it('an outage inside the horizon, after a restart; a question inside it gets its statement', async () => {
    // Recorded while no server holds the stream (the store is one writer's).
    const store = ChunkStore.open({ dir: streamStoreDir(streamDir(dataDir, 'whole')), create: false });
    store.recordGap({ tStart: 20.5, tEnd: 24.5, reason: 'camera unreachable' });
    await store.dispose();
    const s = await start();
    const status = (await request(s.url).get('/v1/streams/whole').set(AUTH).expect(200)).body as StreamStatus;
    StreamStatusSchema.parse(status);
    assert.deepEqual(status.memory!.horizon.gaps, [{ from: 20.5, to: 24.5, reason: 'camera unreachable' }]);
    const model = await sharedModel();
    const steps = model.decoder.stepsRun;
    const inside = (await request(s.url).post('/v1/streams/whole/questions').set(AUTH).send({ question: question('red'), from: 21, to: 24 }).expect(200)).body;
    AnswerSchema.parse(inside);
    assert.equal(inside.text, 'I have no memory of 0:21–0:24: it was not recorded (camera unreachable).');
    assert.equal(inside.outOfMemory, true);
    assert.equal(model.decoder.stepsRun, steps);
    const text = await runVigil(['store', 'stats', '--data', dataDir, '--stream', 'whole']);
    assert.match(text.stdout, /^ {2}horizon 0:00–0:39: kv-float32 0:00–0:39 \(\d+ chunks\); 1 gaps \(0:20–0:24 camera unreachable\); nothing forgotten$/m, text.stdout);
  });
});
