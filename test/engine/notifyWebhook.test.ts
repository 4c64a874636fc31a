/**
 * Webhook notifications (issue 17) against real loopback HTTP receivers: signature, retries with a
 * stable idempotency key, Retry-After, permanent failures, no redirects, a hung receiver that blocks
 * nobody, at-least-once across a close and across a SIGKILLed process, the outbound address policy
 * (refused addresses are never connected to), the outbox bound and compaction, and no secret in any
 * message.
 *
 * Receivers listen on 127.0.0.2, which the policy allows with allowNetworks ['127.0.0.2/32'] (as
 * test/api/outboundPolicy.test.ts does); 127.0.0.1 stays refused and plays the victim.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isVigilError } from '../../common/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { type Alert, type DeliveryEvent, Notifier, type NotifierOptions, type WebhookConfig, checkWebhookAddress, verifySignature } from '../../src/engine/notify/notifier.js';
import { parseRetryAfter } from '../../src/engine/notify/webhook.js';
import { OUTBOX_FILE, Outbox } from '../../src/engine/notify/outbox.js';
import type { Alert as WatchAlert } from '../../src/engine/watches/types.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { spawnTsxScript } from '../helpers/tsxChild.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECRET = 'whsec-0123456789-do-not-log';
const PATH_TOKEN = 'T0KEN-in-the-path-do-not-log';
const ALLOWED = '127.0.0.2';
const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.2/32'] });

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-notify-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(scratch, `outbox-${++dirs}`);

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Handler = (req: Received, n: number, res: http.ServerResponse) => void;

interface Receiver {
  url: string;
  port: number;
  requests: Received[];
  connections: number;
  handler: Handler;
  close(): Promise<void>;
}

const ok: Handler = (_req, _n, res) => res.end('ok');

/** A real HTTP receiver on a loopback address; `handler` may be swapped while it runs. */
function receiver(handler: Handler, address = ALLOWED): Promise<Receiver> {
  return receiverOn(0, handler, address);
}

async function receiverOn(port: number, handler: Handler, address = ALLOWED): Promise<Receiver> {
  const state: Receiver = { url: '', port: 0, requests: [], connections: 0, handler, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      state.requests.push(received);
      state.handler(received, state.requests.length, res);
    });
  });
  server.on('connection', () => state.connections++);
  const listening = await listenLoopback(server, address, port);
  state.close = listening.close;
  state.port = listening.port;
  state.url = `http://${address}:${state.port}/hooks/${PATH_TOKEN}?k=${PATH_TOKEN}`;
  return state;
}

function alert(id: string, answer = 'a person at the door'): Alert {
  return { id, watchId: 'w1', stream: 'door', t: 42.5, wallTime: '2026-12-05T07:00:00.000Z', answer, evidence: [{ t: 41, score: 0.9, thumbnail: '/v1/streams/door/frames/41.jpg' }], checkMs: 120 };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function options(dir: string, hooks: Array<Omit<WebhookConfig, 'secret'>>, extra: Partial<NotifierOptions> = {}): NotifierOptions {
  return {
    dir,
    policy,
    webhooks: hooks.map((h) => ({ secret: SECRET, ...h })),
    retry: { baseMs: 20, maxMs: 200 },
    timeoutMs: 2000,
    ...extra,
  };
}

const bodyOf = (r: Received) => JSON.parse(r.body) as { type: string; idempotencyKey: string; webhook: string; attempt: number; sentAt: number; alert: Alert };

describe('webhook notifications', () => {
  it('POSTs signed JSON: the signature verifies over the raw body, with timestamp and idempotency key', async () => {
    const rx = await receiver(ok);
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }]));
    try {
      const result = await notifier.enqueue(alert('a1'));
      assert.deepEqual(result, { targets: 1, dropped: [] });
      await waitFor('delivery', () => notifier.status().webhooks[0]!.delivered === 1);
      assert.equal(rx.requests.length, 1);
      const req = rx.requests[0]!;
      assert.equal(req.headers['content-type'], 'application/json');
      assert.ok(verifySignature(req.body, SECRET, req.headers['x-vigil-signature'] as string), 'signature verifies');
      assert.ok(!verifySignature(req.body, 'another-secret-0123456789', req.headers['x-vigil-signature'] as string), 'a wrong secret does not');
      assert.ok(!verifySignature(req.body.replace('door', 'hall'), SECRET, req.headers['x-vigil-signature'] as string), 'a changed body does not');
      assert.match(String(req.headers['x-vigil-signature']), /^sha256=[0-9a-f]{64}$/);
      assert.equal(req.headers['idempotency-key'], 'a1:home');
      const body = bodyOf(req);
      assert.equal(body.type, 'vigil.alert');
      assert.equal(String(body.sentAt), req.headers['x-vigil-timestamp'], 'the signed body carries the timestamp header');
      assert.ok(Math.abs(body.sentAt - Date.now() / 1000) < 60);
      assert.deepEqual(body.alert, alert('a1'));
      const status = notifier.status();
      assert.equal(status.queueDepth, 0);
      assert.equal(status.webhooks[0]!.lastSuccess?.alertId, 'a1');
      assert.equal(status.webhooks[0]!.lastFailure, null);
    } finally {
      await notifier.close();
      await rx.close();
    }
  });

  it('503, 503, then 200: delivered exactly once after retries, the idempotency key stable', async () => {
    const rx = await receiver((_req, n, res) => {
      res.statusCode = n <= 2 ? 503 : 200;
      res.end();
    });
    const events: DeliveryEvent[] = [];
    const dir = freshDir();
    const notifier = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }], { log: (e) => events.push(e) }));
    try {
      await notifier.enqueue(alert('a2'));
      await waitFor('delivery', () => notifier.status().webhooks[0]!.delivered === 1);
      await new Promise((r) => setTimeout(r, 100)); // nothing more arrives
      assert.equal(rx.requests.length, 3);
      assert.deepEqual(rx.requests.map((r) => r.headers['idempotency-key']), ['a2:home', 'a2:home', 'a2:home']);
      assert.deepEqual(rx.requests.map((r) => bodyOf(r).attempt), [1, 2, 3]);
      assert.deepEqual(events.map((e) => e.outcome), ['retry', 'retry', 'delivered']);
      const s = notifier.status().webhooks[0]!;
      assert.equal(s.retries, 2);
      assert.equal(s.lastFailure?.status, 503);
      assert.equal(s.lastFailure?.final, false);
      assert.equal(notifier.status().queueDepth, 0);
    } finally {
      await notifier.close();
      await rx.close();
    }
    // Delivered entries are gone from the outbox: a new notifier on the folder sends nothing.
    const again = await receiver(ok);
    const reopened = await Notifier.open(options(dir, [{ id: 'home', url: again.url }]));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(reopened.status().queueDepth, 0);
    assert.equal(again.requests.length, 0);
    await reopened.close();
    await again.close();
  });

  it('honours Retry-After (seconds) over a shorter backoff', async () => {
    const rx = await receiver((_req, n, res) => {
      if (n === 1) {
        res.statusCode = 429;
        res.setHeader('retry-after', '1');
      }
      res.end();
    });
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }], { retry: { baseMs: 10, maxMs: 20 } }));
    try {
      const start = Date.now();
      await notifier.enqueue(alert('a3'));
      await waitFor('delivery', () => notifier.status().webhooks[0]!.delivered === 1);
      assert.equal(rx.requests.length, 2);
      assert.ok(Date.now() - start >= 900, `waited ${Date.now() - start} ms, Retry-After asked 1000`);
    } finally {
      await notifier.close();
      await rx.close();
    }
  });

  it('network errors and timeouts are retried: nothing listening, then a receiver that hangs once, then answers', async () => {
    // A port with nothing on it (taken and released), where the receiver starts later.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, ALLOWED, () => resolve()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const events: DeliveryEvent[] = [];
    const notifier = await Notifier.open(
      options(freshDir(), [{ id: 'home', url: `http://${ALLOWED}:${port}/hook`, timeoutMs: 300 }], { log: (e) => events.push(e), retry: { baseMs: 50, maxMs: 100 } }),
    );
    let rx: Receiver | null = null;
    try {
      await notifier.enqueue(alert('n1'));
      await waitFor('a refused connection', () => events.some((e) => e.reason === 'connection refused'));
      // The same port, now with a receiver that holds the first request past the 300-ms timeout.
      rx = await receiverOn(port, (_req, n, res) => {
        if (n > 1) res.end('ok');
      });
      await waitFor('delivery', () => notifier.status().webhooks[0]!.delivered === 1);
      assert.ok(events.some((e) => e.outcome === 'retry' && e.reason === 'timed out'), JSON.stringify(events));
      assert.equal(events.at(-1)?.outcome, 'delivered');
      // The first request timed out; a loaded machine may time out one more before a 200 gets back.
      assert.ok(rx.requests.length >= 2);
      assert.ok(rx.requests.every((r) => r.headers['idempotency-key'] === 'n1:home'));
    } finally {
      await notifier.close();
      await rx?.close();
    }
  });

  it('gives up after maxAttempts retryable failures, recorded as failed', async () => {
    const rx = await receiver((_req, _n, res) => {
      res.statusCode = 502;
      res.end();
    });
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }], { retry: { baseMs: 10, maxMs: 20, maxAttempts: 3 } }));
    try {
      await notifier.enqueue(alert('g1'));
      await waitFor('giving up', () => notifier.status().webhooks[0]!.failed === 1);
      const s = notifier.status().webhooks[0]!;
      assert.equal(rx.requests.length, 3);
      assert.equal(s.retries, 2);
      assert.deepEqual({ ...s.lastFailure, at: undefined }, { at: undefined, alertId: 'g1', reason: 'HTTP 502; gave up after 3 attempts', status: 502, final: true });
      assert.equal(notifier.status().queueDepth, 0);
    } finally {
      await notifier.close();
      await rx.close();
    }
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-12-05T07:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter('Sat, 05 Dec 2026 07:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Sat, 05 Dec 2026 06:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });

  it('one notifier per outbox folder: a second one is refused while the first is open', async () => {
    const dir = freshDir();
    const rx = await receiver(ok);
    const first = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }]));
    await assert.rejects(Notifier.open(options(dir, [{ id: 'home', url: rx.url }])), (e) => isVigilError(e) && e.code === 'STORE_LOCKED' && /notification outbox/.test(e.message));
    await first.close();
    const second = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }]));
    await second.close();
    await rx.close();
  });

  it('https: TLS to the checked address with SNI and certificate checked against the host name', async (t) => {
    const certDir = path.join(scratch, 'tls');
    fs.mkdirSync(certDir, { recursive: true });
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', path.join(certDir, 'key.pem'), '-out', path.join(certDir, 'cert.pem'), '-subj', '/CN=hooks.test', '-addext', 'subjectAltName=DNS:hooks.test'], { encoding: 'utf8' });
    if (made.error || made.status !== 0) return t.skip('openssl is not available to make a test certificate');
    const cert = fs.readFileSync(path.join(certDir, 'cert.pem'), 'utf8');
    const received: Received[] = [];
    const server = https.createServer({ key: fs.readFileSync(path.join(certDir, 'key.pem')), cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, ALLOWED, () => resolve()));
    const port = (server.address() as net.AddressInfo).port;
    // Both names resolve to the receiver's (allowed) address; only hooks.test is on the certificate.
    const named = new OutboundPolicy({ allowNetworks: ['127.0.0.2/32'], lookup: () => Promise.resolve([ALLOWED]) });
    const notifier = await Notifier.open(
      options(freshDir(), [
        { id: 'good', url: `https://hooks.test:${port}/hook`, ca: cert },
        { id: 'wrong-name', url: `https://other.test:${port}/hook`, ca: cert },
        { id: 'untrusted', url: `https://hooks.test:${port}/hook` },
      ], { policy: named, retry: { baseMs: 10, maxMs: 20, maxAttempts: 2 } }),
    );
    try {
      await notifier.enqueue(alert('tls1'));
      await waitFor('outcomes', () => {
        const [good, wrong, untrusted] = notifier.status().webhooks;
        return good!.delivered === 1 && wrong!.failed === 1 && untrusted!.failed === 1;
      });
      assert.equal(received.length, 1, 'only the trusted, matching name was delivered');
      assert.ok(verifySignature(received[0]!.body, SECRET, received[0]!.headers['x-vigil-signature'] as string));
      const [, wrong, untrusted] = notifier.status().webhooks;
      assert.match(wrong!.lastFailure!.reason, /TLS certificate not accepted/);
      assert.match(untrusted!.lastFailure!.reason, /TLS certificate not accepted/);
    } finally {
      await notifier.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a 4xx is a recorded permanent failure; a redirect is not followed', async () => {
    const target = await receiver(ok);
    const rx = await receiver((req, _n, res) => {
      if (bodyOf(req).alert.id === 'bad') res.statusCode = 400;
      else {
        res.statusCode = 302;
        res.setHeader('location', target.url);
      }
      res.end();
    });
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }]));
    try {
      await notifier.enqueue(alert('bad'));
      await waitFor('failure', () => notifier.status().webhooks[0]!.failed === 1);
      assert.equal(notifier.status().webhooks[0]!.lastFailure?.status, 400);
      assert.equal(notifier.status().webhooks[0]!.lastFailure?.final, true);
      await notifier.enqueue(alert('moved'));
      await waitFor('failure', () => notifier.status().webhooks[0]!.failed === 2);
      assert.match(notifier.status().webhooks[0]!.lastFailure!.reason, /302.*redirects are not followed/);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(rx.requests.length, 2, 'no retry of a permanent failure');
      assert.equal(target.connections, 0, 'the redirect target was never contacted');
      assert.equal(notifier.status().queueDepth, 0);
    } finally {
      await notifier.close();
      await rx.close();
      await target.close();
    }
  });

  it('a hung receiver blocks neither enqueue nor the other webhooks, and close() does not wait for it', async () => {
    const hung = await receiver(() => {}); // never answers
    const good = await receiver(ok);
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'hung', url: hung.url, timeoutMs: 20_000 }, { id: 'good', url: good.url }]));
    const start = Date.now();
    for (let i = 0; i < 20; i++) await notifier.enqueue(alert(`h${i}`));
    const enqueueMs = Date.now() - start;
    assert.ok(enqueueMs < 5000, `20 enqueues took ${enqueueMs} ms`);
    await waitFor('the good webhook', () => notifier.status().webhooks[1]!.delivered === 20);
    await waitFor('the hung receiver holding requests', () => hung.requests.length >= 1);
    const s = notifier.status();
    assert.equal(s.webhooks[0]!.pending, 20);
    assert.ok(s.webhooks[0]!.inFlight >= 1 && s.webhooks[0]!.inFlight <= 4, 'bounded in-flight per webhook');
    assert.equal(s.queueDepth, 20, 'owed to the hung webhook only');
    const closing = Date.now();
    await notifier.close();
    assert.ok(Date.now() - closing < 5000, 'close aborts the hung request');
    await hung.close();
    await good.close();
  });

  it('restart: an alert whose delivery was cut off by close() is sent again by the next notifier', async () => {
    const dir = freshDir();
    const rx = await receiver(() => {}); // takes the request and holds it: delivery in progress
    const first = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }]));
    await first.enqueue(alert('r1'));
    await waitFor('the request to arrive', () => rx.requests.length === 1);
    await first.close();
    rx.handler = ok;
    const second = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }]));
    try {
      await waitFor('redelivery', () => second.status().webhooks[0]!.delivered === 1);
      assert.equal(rx.requests.length, 2);
      assert.equal(rx.requests[1]!.headers['idempotency-key'], 'r1:home');
      assert.equal(second.status().queueDepth, 0);
    } finally {
      await second.close();
      await rx.close();
    }
  });

  it('restart: a process SIGKILLed mid-delivery leaves the alert on disk; the next notifier sends it', async () => {
    const dir = freshDir();
    const rx = await receiver(() => {});
    const script = path.join(scratch, 'child.mjs');
    const moduleUrl = pathToFileURL(path.join(ROOT, 'src/engine/notify/notifier.ts')).href;
    const policyUrl = pathToFileURL(path.join(ROOT, 'ingest/net/outboundPolicy.ts')).href;
    fs.writeFileSync(
      script,
      `import { Notifier } from ${JSON.stringify(moduleUrl)};
import { OutboundPolicy } from ${JSON.stringify(policyUrl)};
const n = await Notifier.open({ dir: ${JSON.stringify(dir)}, policy: new OutboundPolicy({ allowNetworks: ['127.0.0.2/32'] }),
  webhooks: [{ id: 'home', url: ${JSON.stringify(rx.url)}, secret: ${JSON.stringify(SECRET)} }] });
await n.enqueue(${JSON.stringify(alert('k1'))});
process.stdout.write('queued\\n');
setInterval(() => {}, 1000);
`,
    );
    const { child, stdout, stderr, exited } = spawnTsxScript(script, ROOT);
    try {
      await waitFor(`the child to enqueue (stderr: ${stderr()})`, () => stdout().includes('queued') && rx.requests.length === 1, 20_000);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    rx.handler = ok;
    const next = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }]));
    try {
      await waitFor('redelivery', () => next.status().webhooks[0]!.delivered === 1);
      assert.equal(rx.requests.length, 2);
      assert.deepEqual(bodyOf(rx.requests[1]!).alert, alert('k1'));
      assert.equal(rx.requests[1]!.headers['idempotency-key'], 'k1:home');
    } finally {
      await next.close();
      await rx.close();
    }
  });

  it('refused addresses are never connected to and are recorded as refused', async () => {
    const victim = await receiver(ok, '127.0.0.1'); // loopback, not allowed by the policy
    const decoy = await receiver(ok); // allowed, but the name below also resolves to the victim
    const rebinding = new OutboundPolicy({ allowNetworks: ['127.0.0.2/32'], lookup: () => Promise.resolve([ALLOWED, '127.0.0.1']) });
    const notifier = await Notifier.open(
      options(freshDir(), [
        { id: 'victim', url: victim.url },
        { id: 'metadata', url: 'http://169.254.169.254/latest/meta-data/' },
        { id: 'mixed', url: `http://hooks.example:${decoy.port}/x` },
      ], { policy: rebinding }),
    );
    try {
      await notifier.enqueue(alert('x1'));
      await waitFor('refusals', () => notifier.status().webhooks.every((w) => w.refused === 1));
      for (const w of notifier.status().webhooks) {
        assert.equal(w.lastFailure?.final, true);
        assert.match(w.lastFailure!.reason, /policy refused/);
        assert.equal(w.delivered, 0);
        assert.equal(w.retries, 0, 'a refusal is not retried');
      }
      assert.equal(victim.connections, 0);
      assert.equal(decoy.connections, 0);
      assert.equal(notifier.status().queueDepth, 0);
      // The up-front check (for a 4xx when a webhook is configured) refuses the same addresses.
      for (const url of [victim.url, 'http://169.254.169.254/', 'http://[::ffff:127.0.0.1]:80/']) {
        await assert.rejects(checkWebhookAddress(url, policy), (e) => isVigilError(e) && e.code === 'SOURCE_FORBIDDEN');
      }
      await checkWebhookAddress(decoy.url, policy);
      for (const url of ['not a url', 'ftp://127.0.0.2/']) {
        await assert.rejects(checkWebhookAddress(url, policy), (e) => isVigilError(e) && e.code === 'BAD_INPUT');
      }
    } finally {
      await notifier.close();
      await victim.close();
      await decoy.close();
    }
  });

  it('the outbox keeps at most maxEntries alerts: the oldest are dropped and counted, across restarts', async () => {
    const dir = freshDir();
    const rx = await receiver((_req, _n, res) => {
      res.statusCode = 503;
      res.setHeader('retry-after', '3600');
      res.end();
    });
    const first = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }], { maxEntries: 3 }));
    const dropped: string[] = [];
    for (let i = 1; i <= 5; i++) dropped.push(...(await first.enqueue(alert(`o${i}`))).dropped);
    assert.deepEqual(dropped, ['o1', 'o2']);
    assert.equal(first.status().queueDepth, 3);
    assert.equal(first.status().dropped, 2);
    assert.equal(first.status().maxEntries, 3);
    await first.close();
    rx.handler = ok;
    const before = rx.requests.length;
    const second = await Notifier.open(options(dir, [{ id: 'home', url: rx.url }], { maxEntries: 3 }));
    try {
      assert.equal(second.status().dropped, 2, 'the count survives the restart');
      await waitFor('redelivery', () => second.status().webhooks[0]!.delivered === 3);
      assert.deepEqual(rx.requests.slice(before).map((r) => bodyOf(r).alert.id).sort(), ['o3', 'o4', 'o5']);
    } finally {
      await second.close();
      await rx.close();
    }
  });

  it('no secret or URL path reaches a log event, the status or an error message', async () => {
    const rx = await receiver((_req, n, res) => {
      res.statusCode = n === 1 ? 500 : 404;
      res.end();
    });
    const events: DeliveryEvent[] = [];
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }, { id: 'off', url: `http://127.0.0.1:9/${PATH_TOKEN}` }], { log: (e) => events.push(e) }));
    await notifier.enqueue(alert('s1'));
    await waitFor('outcomes', () => notifier.status().webhooks[0]!.failed === 1 && notifier.status().webhooks[1]!.refused === 1);
    const text = JSON.stringify(events) + JSON.stringify(notifier.status());
    await notifier.close();
    const errors: string[] = [];
    for (const bad of [
      { id: 'x', url: `ftp://h/${PATH_TOKEN}`, secret: SECRET },
      { id: 'x', url: `http://user:${SECRET}@h/`, secret: SECRET },
      { id: 'x', url: `http://h/${PATH_TOKEN}`, secret: 'short' },
    ]) {
      await assert.rejects(Notifier.open({ dir: freshDir(), policy, webhooks: [bad] }), (e) => (errors.push(String((e as Error).message)), isVigilError(e) && e.code === 'BAD_CONFIG'));
    }
    for (const t of [text, ...errors]) {
      assert.ok(!t.includes(SECRET), `secret in ${t}`);
      assert.ok(!t.includes(PATH_TOKEN), `URL path in ${t}`);
    }
    assert.match(text, /127\.0\.0\.2/, 'the target (scheme, host, port) is shown');
    await rx.close();
  });

  it("takes the watch engine's alert records as they are (extra fields travel in the body)", async () => {
    const rx = await receiver(ok);
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }]));
    try {
      const fired: WatchAlert = {
        id: 'wa-1', watchId: 'w-7', stream: 'door', t: 12, wallTime: 1796454000123, answer: 'yes',
        evidence: [{ chunkId: 11, t: 11, tEnd: 12, score: 3.5, change: 4.2 }], checkMs: 35, previousAnswer: 'no',
      };
      await notifier.enqueue(fired); // compiles: WatchAlert is assignable to the notifier's Alert
      await waitFor('delivery', () => notifier.status().webhooks[0]!.delivered === 1);
      assert.deepEqual(bodyOf(rx.requests[0]!).alert, fired);
    } finally {
      await notifier.close();
      await rx.close();
    }
  });

  it('refuses malformed alerts and alerts over the size limit (BAD_INPUT), storing nothing', async () => {
    const rx = await receiver(ok);
    const notifier = await Notifier.open(options(freshDir(), [{ id: 'home', url: rx.url }], { maxEntryBytes: 2048 }));
    try {
      await assert.rejects(notifier.enqueue(alert('bad id with spaces')), (e) => isVigilError(e) && e.code === 'BAD_INPUT');
      await assert.rejects(notifier.enqueue(alert('big', 'x'.repeat(4096))), (e) => isVigilError(e) && e.code === 'BAD_INPUT');
      await assert.rejects(notifier.enqueue(alert('a'), { webhooks: ['nope'] }), (e) => isVigilError(e) && e.code === 'BAD_INPUT');
      assert.equal(notifier.status().queueDepth, 0);
    } finally {
      await notifier.close();
      await rx.close();
    }
  });
});

describe('notification outbox journal', () => {
  it('compacts settled records away: the file stays bounded by the live entries', async () => {
    const dir = freshDir();
    const box = await Outbox.open<{ id: string; pad: string }>(dir, { maxEntries: 50 });
    const pad = 'p'.repeat(200);
    let maxSize = 0;
    // Ten adds at a time, then their settles at a time: concurrent calls share one write and fsync.
    for (let round = 0; round < 100; round++) {
      const added = await Promise.all(Array.from({ length: 10 }, (_, j) => box.add({ id: `e${round * 10 + j}`, pad }, ['a', 'b'])));
      await Promise.all(added.slice(0, 9).flatMap(({ entry }) => [box.settle(entry.seq, 'a'), box.settle(entry.seq, 'b')]));
      maxSize = Math.max(maxSize, fs.statSync(path.join(dir, OUTBOX_FILE)).size);
    }
    // 100 never settled (e9, e19, ...), at most 50 kept (the oldest dropped, counted); each record is ~260 bytes.
    assert.ok(box.depth > 0 && box.depth <= 50, `depth ${box.depth}`);
    assert.ok(box.entries().every((e) => e.item.id.endsWith('9')), 'only unsettled entries are left');
    assert.ok(box.dropped >= 50, `dropped ${box.dropped}`);
    assert.equal(box.entries().at(-1)?.item.id, 'e999');
    // Bounded: live entries plus at most ~max(256, live) settled records between compactions.
    assert.ok(maxSize < 50 * 300 + 2 * 300 * 60, `journal reached ${maxSize} bytes`);
    await box.close();
    const reopened = await Outbox.open<{ id: string; pad: string }>(dir, { maxEntries: 50 });
    assert.deepEqual(reopened.entries().map((e) => e.item.id), box.entries().map((e) => e.item.id));
    assert.equal(reopened.dropped, box.dropped);
    await reopened.close();
  });

  it('a torn last line (a crash mid-write) is skipped; everything before it replays', async () => {
    const dir = freshDir();
    const box = await Outbox.open<{ id: string }>(dir);
    await box.add({ id: 'one' }, ['a']);
    const { entry } = await box.add({ id: 'two' }, ['a', 'b']);
    await box.settle(entry.seq, 'a');
    await box.close();
    fs.appendFileSync(path.join(dir, OUTBOX_FILE), '{"op":"add","seq":9,"alert":{"id":"thr');
    const reopened = await Outbox.open<{ id: string }>(dir);
    assert.equal(reopened.skippedLines, 1);
    assert.deepEqual(reopened.entries().map((e) => [e.item.id, [...e.targets]]), [['one', ['a']], ['two', ['b']]]);
    const { entry: three } = await reopened.add({ id: 'three' }, ['a']);
    assert.ok(three.seq > entry.seq);
    await reopened.close();
  });
});
