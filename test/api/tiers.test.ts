/**
 * Memory tiers as a stream setting (issue 15): `tiers: { keepFullSec, kvShare, archive }` on
 * `POST /v1/streams` (JSON and upload form) round-trips into the stream's status (valid against the
 * served OpenAPI document), reaches the chunk store's retention policy, is persisted in stream.json
 * and survives a restart; the server's default tiers apply field by field; bad values are 400s
 * naming the limit (kvShare outside 0..1, negative keepFullSec, a KV share too small for one
 * segment plus the window, unknown fields).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { LIMITS } from '../../common/settings.js';
import { DEFAULT_KEEP_FULL_SEC, DEFAULT_KV_SHARE } from '../../memory/store/options.js';
import { planBudget } from '../../memory/store/budget.js';
import type { RetentionPolicy } from '../../memory/store/types.js';
import { budgetShape } from '../../src/engine/manager/streamBudget.js';
import type { StreamManager } from '../../src/engine/streamManager.js';
import { AUTH, disposeSharedModel, makeClips, openApiValidator, sharedModel, startTestServer, tempDir, type TestServer, waitEnded } from './helpers.js';

const WINDOW = 4;
const BUDGET = 2_000_000;

/** The store's retention policy of a stream (the manager keeps its sessions private: read for the test only). */
function storeRetention(manager: StreamManager, id: string): RetentionPolicy | undefined {
  const m = manager as unknown as { get(id: string): { session: { store: { retention: RetentionPolicy | undefined } } | null } };
  return m.get(id).session?.store.retention;
}


describe('memory tiers (stream setting)', () => {
  let clips: string;
  let server: TestServer | undefined;

  before(async () => {
    clips = await makeClips();
  });
  after(async () => {
    await server?.close();
    await disposeSharedModel();
  });

  it('the setting defaults agree with the store defaults', () => {
    assert.equal(LIMITS.keepFullSec.default, DEFAULT_KEEP_FULL_SEC);
    assert.equal(LIMITS.kvShare.default, DEFAULT_KV_SHARE);
  });

  it('round-trips through the API, reaches the store retention, and survives a restart', async () => {
    const dataDir = tempDir('vigil-tiers-data-');
    server = await startTestServer({ dataDir, filesDir: clips });
    const validate = await openApiValidator(server.url);
    const valid = (value: unknown) => validate('StreamStatus', value);
    const tiers = { keepFullSec: 600, kvShare: 0.5, archive: false };
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source: 'a.mp4', window: WINDOW, budget: '2MB', tiers }).expect(201);
    assert.deepEqual(created.body.settings.tiers, tiers);
    valid(created.body);
    assert.deepEqual(storeRetention(server.ready, 'cam'), { ...storeRetention(server.ready, 'cam'), budgetBytes: BUDGET, ...tiers });
    // Partly given: the rest at their defaults in the status; the store gets only what was asked.
    const partial = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'part', source: 'b.mp4', window: WINDOW, budget: '2MB', tiers: { keepFullSec: 60 } }).expect(201);
    assert.deepEqual(partial.body.settings.tiers, { keepFullSec: 60, kvShare: LIMITS.kvShare.default, archive: true });
    const partRetention = storeRetention(server.ready, 'part')!;
    assert.equal(partRetention.keepFullSec, 60);
    assert.equal(partRetention.kvShare, undefined);
    assert.equal(partRetention.archive, undefined);
    // None given: the defaults, and the store's own defaults apply.
    const plain = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'plain', source: 'b.mp4', window: WINDOW }).expect(201);
    assert.deepEqual(plain.body.settings.tiers, { keepFullSec: LIMITS.keepFullSec.default, kvShare: LIMITS.kvShare.default, archive: true });
    valid(plain.body);
    const plainRetention = storeRetention(server.ready, 'plain')!;
    assert.deepEqual([plainRetention.keepFullSec, plainRetention.kvShare, plainRetention.archive], [undefined, undefined, undefined]);
    await Promise.all(['cam', 'part', 'plain'].map((id) => waitEnded(server!, id, 60_000)));
    // Persisted with the stream.
    const record = JSON.parse(fs.readFileSync(path.join(dataDir, 'streams', 'cam', 'stream.json'), 'utf8')) as { settings: { tiers?: unknown } };
    assert.deepEqual(record.settings.tiers, tiers);
    const listed = (await request(server.url).get('/v1/streams').set(AUTH).expect(200)).body as { streams: Array<{ id: string; settings: { tiers: unknown } }> };
    assert.deepEqual(listed.streams.find((s) => s.id === 'cam')?.settings.tiers, tiers);
    // Restart: the same tiers in the status and in the reopened store's retention.
    await server.close();
    server = await startTestServer({ dataDir, filesDir: clips });
    const after = (await request(server.url).get('/v1/streams/cam').set(AUTH).expect(200)).body as { settings: { tiers: unknown } };
    assert.deepEqual(after.settings.tiers, tiers);
    const reopened = storeRetention(server.ready, 'cam')!;
    assert.deepEqual([reopened.keepFullSec, reopened.kvShare, reopened.archive, reopened.budgetBytes], [600, 0.5, false, BUDGET]);
    assert.equal(storeRetention(server.ready, 'part')!.keepFullSec, 60);
    await server.close();
    server = undefined;
  });

  it("the server's default tiers apply field by field under a stream's own", async () => {
    server = await startTestServer({ filesDir: clips, manager: { defaults: { gate: 'off', tiers: { keepFullSec: 120, archive: false } } } });
    const own = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'own', source: 'a.mp4', window: WINDOW, budget: '2MB', tiers: { keepFullSec: 30, kvShare: 0.7 } }).expect(201);
    assert.deepEqual(own.body.settings.tiers, { keepFullSec: 30, kvShare: 0.7, archive: false });
    const retention = storeRetention(server.ready, 'own')!;
    assert.deepEqual([retention.keepFullSec, retention.kvShare, retention.archive], [30, 0.7, false]);
    const none = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'none', source: 'b.mp4', window: WINDOW, budget: '2MB' }).expect(201);
    assert.deepEqual(none.body.settings.tiers, { keepFullSec: 120, kvShare: LIMITS.kvShare.default, archive: false });
    await server.close();
    server = undefined;
  });

  it('an upload takes tiers as a JSON form field', async () => {
    server = await startTestServer({ filesDir: clips });
    const res = await request(server.url)
      .post('/v1/streams')
      .set(AUTH)
      .field('id', 'up')
      .field('window', String(WINDOW))
      .field('budget', '2MB')
      .field('tiers', JSON.stringify({ kvShare: 0.25, archive: true }))
      .attach('file', path.join(clips, 'a.mp4'))
      .expect(201);
    assert.deepEqual(res.body.settings.tiers, { keepFullSec: LIMITS.keepFullSec.default, kvShare: 0.25, archive: true });
    assert.equal(storeRetention(server.ready, 'up')!.kvShare, 0.25);
    const bad = await request(server.url).post('/v1/streams').set(AUTH).field('id', 'up2').field('tiers', '{"kvShare": 2}').attach('file', path.join(clips, 'a.mp4')).expect(400);
    assert.match(bad.body.error.message, /tiers\.kvShare: .*<=1/);
    await server.close();
    server = undefined;
  });

  it('bad tiers are 400s naming the limit, and nothing is created', async () => {
    server = await startTestServer({ filesDir: clips });
    const model = await sharedModel();
    const post = (body: object) => request(server!.url).post('/v1/streams').set(AUTH).send({ source: 'a.mp4', window: WINDOW, budget: '2MB', ...body });
    const cases: Array<[object, RegExp]> = [
      [{ tiers: { kvShare: 1.5 } }, /tiers\.kvShare: .*<=1/],
      [{ tiers: { kvShare: -0.1 } }, /tiers\.kvShare: .*>=0/],
      [{ tiers: { keepFullSec: -5 } }, /tiers\.keepFullSec: .*>=0/],
      [{ tiers: { keepFullSec: '30m' } }, /tiers\.keepFullSec: .*number/],
      [{ tiers: { archive: 'no' } }, /tiers\.archive: .*boolean/],
      [{ tiers: { demote: false } }, /tiers: .*demote/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body).expect(400);
      assert.equal(res.body.error.code, 'BAD_INPUT');
      assert.match(res.body.error.message, message, JSON.stringify(body));
    }
    // kvShare x budget must hold one segment plus the window's frames: both numbers are named.
    const plan = planBudget(BUDGET, budgetShape(model, 'float32', WINDOW));
    const needed = plan.segmentBytes + WINDOW * plan.recordBytes;
    const small = await post({ id: 'small', tiers: { kvShare: 0.05 } }).expect(400);
    assert.equal(small.body.error.code, 'BAD_INPUT');
    const message = small.body.error.message as string;
    assert.match(message, /tiers\.kvShare 0\.05 is too small for budget 2000000 bytes/);
    assert.ok(message.includes(`one store segment (${plan.segmentBytes} bytes`), message);
    assert.ok(message.includes(`the window's ${WINDOW} frames (${WINDOW} x ${plan.recordBytes} bytes)`), message);
    assert.ok(message.includes(`${needed} bytes`), message);
    assert.ok(message.includes(`kvShare ${Math.ceil((1000 * needed) / BUDGET) / 1000} or more`), message);
    // The same share without the archive is not used, so it is accepted.
    await post({ id: 'noarchive', tiers: { kvShare: 0.05, archive: false } }).expect(201);
    assert.equal((await request(server.url).get('/v1/streams').set(AUTH).expect(200)).body.streams.length, 1);
    assert.ok(!fs.existsSync(path.join(server.dataDir, 'streams', 'small', 'stream.json')));
    await server.close();
    server = undefined;
  });
});
