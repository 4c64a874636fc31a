/**
 * Watch alerts delivered to webhooks (issue 17, docs/notifications.md) through a real server on
 * 127.0.0.1 with probe-needle and a generated needle clip (a.mp4: a green square on a red screen at
 * 10-13 s), and a real HTTP receiver on 127.0.0.2 (allowed by the URL policy's allowNetworks).
 * Two watches alert on the same needle: the one with `notify: ['home']` reaches the receiver with a
 * valid HMAC signature, the one without notify sends nothing. Also: an unknown webhook id is a 400
 * naming it, the status at GET /v1/notifications and /metrics, secrets and URL paths never in the
 * log, and a webhook whose address the URL policy refuses fails the start (BAD_CONFIG), before any
 * connection; the config file's `webhooks` read their secrets from the environment.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { loadServiceConfig, webhooksFromConfig } from '../../api/config.js';
import { startServer } from '../../api/server.js';
import { VigilError } from '../../common/errors.js';
import { verifySignature } from '../../src/engine/notify/webhook.js';
import { AUTH, disposeSharedModel, makeClips, openApiValidator, question, sharedModel, startTestServer, tempDir, TOKEN, type TestServer, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());

const SECRET = 'whsec-api-0123456789-do-not-log';
const PATH_TOKEN = 'T0KEN-in-the-hook-path-do-not-log';
const ALLOWED = '127.0.0.2';

interface Received {
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
}

/** An HTTP receiver on a loopback address that answers 204 and records every request. */
async function receiver(address: string): Promise<{ port: number; requests: Received[]; connections: () => number; close(): Promise<void> }> {
  const requests: Received[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, raw: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  server.on('connection', (s: net.Socket) => {
    connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('watch alerts to webhooks', () => {
  let clips: string;
  let server: TestServer;
  let hook: Awaited<ReturnType<typeof receiver>>;
  let valid: (schema: string, value: unknown) => void;
  /** While true, the stream's first frame fails its ingest before anything is stored (watches first). */
  let holdFrames = true;
  const api = () => request(server.url);

  const start = (dataDir?: string) =>
    startTestServer({
      ...(dataDir !== undefined ? { dataDir } : {}),
      filesDir: clips,
      manager: {
        policy: { filesDir: clips, allowNetworks: [`${ALLOWED}/32`] },
        webhooks: [{ id: 'home', url: `http://${ALLOWED}:${hook.port}/hooks/${PATH_TOKEN}?k=${PATH_TOKEN}`, secret: SECRET }],
        notifier: { retry: { baseMs: 50, maxMs: 200 } },
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watches exist');
          },
        },
      },
    });

  before(async () => {
    clips = await makeClips(30);
    hook = await receiver(ALLOWED);
    server = await start();
    valid = await openApiValidator(server.url);
  });
  after(async () => {
    await server?.close();
    await hook?.close();
  });

  it('the alert of a watch with notify arrives signed; a watch without notify sends nothing; an unknown webhook id is a 400', async () => {
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('a').state === 'failed');

    const unknown = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'yes', notify: ['home', 'pager'] });
    assert.equal(unknown.status, 400, unknown.text);
    assert.equal(unknown.body.error.code, 'BAD_INPUT');
    assert.match(unknown.body.error.message, /notify: no webhook has the id "pager" \(configured: home\)/);
    const badId = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'yes', notify: ['no spaces'] });
    assert.equal(badId.status, 400, badId.text);
    assert.match(badId.body.error.message, /notify/);
    assert.equal(server.ready.listWatches('a').length, 0);

    const spec = { question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0 };
    const notified = await api().post('/v1/streams/a/watches').set(AUTH).send({ ...spec, notify: ['home'] });
    assert.equal(notified.status, 201, notified.text);
    valid('Watch', notified.body);
    assert.deepEqual(notified.body.notify, ['home']);
    const silent = await api().post('/v1/streams/a/watches').set(AUTH).send(spec).expect(201);
    assert.equal(silent.body.notify, undefined);
    assert.deepEqual((await api().get(`/v1/streams/a/watches/${notified.body.id}`).set(AUTH).expect(200)).body.notify, ['home']);

    holdFrames = false;
    await api().post('/v1/streams/a/start').set(AUTH).expect(200);
    await waitEnded(server, 'a');
    // Both watches alerted on the needle (the silent one's alert is listed, not sent).
    const alerts = await waitFor('both alerts at GET /v1/alerts', async () => {
      const res = await api().get('/v1/alerts').set(AUTH).expect(200);
      return res.body.alerts.length >= 2 ? (res.body.alerts as Array<{ id: string; watchId: string; t: number }>) : undefined;
    });
    assert.equal(alerts.length, 2, JSON.stringify(alerts));
    const mine = alerts.find((a) => a.watchId === notified.body.id);
    const theirs = alerts.find((a) => a.watchId === silent.body.id);
    assert.ok(mine && theirs, JSON.stringify(alerts));

    await waitFor('the webhook delivery', () => hook.requests.length >= 1);
    const [got] = hook.requests;
    // The signature: HMAC-SHA256 of the raw body with the webhook's secret (computed here too, not only by the module under test).
    const expected = `sha256=${crypto.createHmac('sha256', SECRET).update(got!.raw).digest('hex')}`;
    assert.equal(got!.headers['x-vigil-signature'], expected);
    assert.ok(verifySignature(got!.raw, SECRET, got!.headers['x-vigil-signature'] as string));
    assert.ok(!verifySignature(got!.raw, 'another-secret-0123456789', got!.headers['x-vigil-signature'] as string));
    const body = JSON.parse(got!.raw.toString('utf8'));
    assert.equal(body.type, 'vigil.alert');
    assert.equal(body.webhook, 'home');
    assert.equal(String(body.sentAt), got!.headers['x-vigil-timestamp']);
    assert.equal(got!.headers['idempotency-key'], `${mine.id}:home`);
    // The stored alert: the API's listing adds each evidence frame's thumbnail URL, the webhook body does not.
    const listed = alerts.find((a) => a.id === mine.id) as unknown as { evidence: Array<{ thumbnail?: string | null }> };
    assert.deepEqual(body.alert, { ...listed, evidence: listed.evidence.map(({ thumbnail: _, ...e }) => e) });
    assert.match(body.alert.answer, /green/i);

    // The status: delivered, nothing owed; on /v1/notifications (schema-checked) and /metrics.
    const status = await waitFor('the delivery to be counted', async () => {
      const res = await api().get('/v1/notifications').set(AUTH).expect(200);
      return res.body.webhooks[0]?.delivered === 1 && res.body.queueDepth === 0 ? res.body : undefined;
    });
    valid('Notifications', status);
    assert.equal(status.enabled, true);
    assert.equal(status.webhooks[0].id, 'home');
    assert.equal(status.webhooks[0].target, `http://${ALLOWED}:${hook.port}`);
    assert.equal(status.webhooks[0].lastSuccess.alertId, mine.id);
    assert.equal(status.webhooks[0].failed + status.webhooks[0].refused, 0);
    const metrics = (await api().get('/metrics').set(AUTH).expect(200)).text;
    assert.match(metrics, /^vigil_notify_delivered_total\{webhook="home"\} 1$/m);
    assert.match(metrics, /^vigil_notify_queue_depth 0$/m);
    assert.match(metrics, /^vigil_notify_last_success_timestamp_seconds\{webhook="home"\} \d/m);
    // The new series pass promtool too, where it is installed (test/api/consistency.test.ts requires it in CI).
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    if (!promtool.error) assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    // The silent watch's alert is never sent: still one request a while later.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(hook.requests.length, 1, hook.requests.map((r) => r.raw.toString()).join('\n'));
    const log = server.logs.join('\n');
    assert.ok(!log.includes(SECRET) && !log.includes(PATH_TOKEN), 'no secret or URL path in the log');
  });

  it('after a restart the watch keeps its notify, and a delivered alert is not sent again', async () => {
    const watches = server.ready.listWatches('a');
    await server.close();
    server = await start(server.dataDir);
    assert.deepEqual(server.ready.listWatches('a').map((w) => w.notify ?? null), watches.map((w) => w.notify ?? null));
    assert.ok(watches.some((w) => w.notify?.[0] === 'home'));
    const status = (await api().get('/v1/notifications').set(AUTH).expect(200)).body;
    assert.deepEqual({ queueDepth: status.queueDepth, pending: status.webhooks[0].pending }, { queueDepth: 0, pending: 0 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hook.requests.length, 1);
  });
});

describe('webhook configuration', () => {
  it('a webhook whose address the URL policy refuses fails the start (BAD_CONFIG), with nothing connected to', async () => {
    const victim = await receiver('127.0.0.3');
    const running = await startServer({
      host: '127.0.0.1',
      port: 0,
      auth: { tokens: [TOKEN] },
      manager: {
        dataDir: tempDir('vigil-notify-refused-'),
        model: await sharedModel(),
        policy: { allowNetworks: [`${ALLOWED}/32`] },
        webhooks: [{ id: 'lan', url: `http://127.0.0.3:${victim.port}/hooks/${PATH_TOKEN}`, secret: SECRET }],
      },
    });
    try {
      await assert.rejects(running.manager, (e: Error & { code?: string }) => {
        assert.equal(e.code, 'BAD_CONFIG');
        assert.match(e.message, /webhook "lan" \(http:\/\/127\.0\.0\.3:\d+\) is refused by the URL policy/);
        assert.ok(!e.message.includes(PATH_TOKEN) && !e.message.includes(SECRET), e.message);
        return true;
      });
      assert.equal((await request(running.url).get('/readyz')).status, 503);
      assert.equal(victim.connections(), 0);
    } finally {
      await running.close();
      await victim.close();
    }
  });

  it('vigil.yaml webhooks: the secret comes from the variable secretEnv names, never the file', () => {
    const dir = tempDir('vigil-notify-config-');
    const file = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(file, 'webhooks:\n  - id: home\n    url: https://hooks.example/vigil\n    secretEnv: VIGIL_TEST_HOOK_SECRET\n');
    assert.throws(() => loadServiceConfig(file, {}), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && /webhook 'home': the environment variable VIGIL_TEST_HOOK_SECRET \(its secretEnv\) is not set/.test(e.message));
    assert.throws(() => loadServiceConfig(file, { VIGIL_TEST_HOOK_SECRET: 'short' }), (e: Error) => /at least 16 characters/.test(e.message) && !e.message.includes('short'));
    const env = { VIGIL_TEST_HOOK_SECRET: SECRET };
    const config = loadServiceConfig(file, env);
    assert.deepEqual(webhooksFromConfig(config, env, dir), [{ id: 'home', url: 'https://hooks.example/vigil', secret: SECRET }]);
    fs.writeFileSync(file, `webhooks:\n  - id: home\n    url: https://hooks.example/vigil\n    secret: ${SECRET}\n`);
    assert.throws(() => loadServiceConfig(file, env), (e: Error & { code?: string }) => e.code === 'BAD_CONFIG' && /secret/.test(e.message));
  });
});
