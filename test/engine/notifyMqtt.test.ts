/**
 * MQTT notifications (issue 17, docs/notifications.md "MQTT") against a real mosquitto on
 * 127.0.0.1 (test/helpers/mosquitto.ts): an alert published to `vigil/<stream>/alerts` as its JSON
 * (QoS 1, not retained) with the credentials read by the caller; the retained availability topics
 * (`online` on connect, per stream following its state, `offline` on a clean close, the Last Will
 * `offline` when the process is SIGKILLed); alerts owed while the broker is down published once it
 * starts, across a notifier restart, and never twice; the outbound address policy (a refused broker
 * is never connected to).
 *
 * The policy allows 127.0.0.1 here with allowNetworks ['127.0.0.1/32']; a listener on 127.0.0.3
 * plays the refused broker.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isVigilError } from '../../common/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { type Alert, Notifier, type NotifierOptions, type StreamStateView, checkMqttAddress } from '../../src/engine/notify/notifier.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { spawnTsxScript } from '../helpers/tsxChild.js';
import { MOSQUITTO_MISSING, freePort, startMosquitto, subscribe } from '../helpers/mosquitto.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PASSWORD = 'mqtt-pass-0123456789-do-not-log';
const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-notify-mqtt-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(scratch, `outbox-${++dirs}`);

function alert(id: string, stream = 'door'): Alert {
  return { id, watchId: 'w1', stream, t: 42.5, wallTime: 1_796_453_998_000, answer: 'yes', evidence: [{ t: 41, score: 3.5 }], checkMs: 12 };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const open = (options: Partial<NotifierOptions> & { mqtt: NotifierOptions['mqtt'] }) =>
  Notifier.open({ dir: freshDir(), policy, mqttReconnectMs: 100, availabilityPollMs: 50, timeoutMs: 2000, ...options });

describe('MQTT notifications', { skip: MOSQUITTO_MISSING }, () => {
  it('an alert arrives on vigil/<stream>/alerts as its JSON (QoS 1, not retained); availability is retained: online on connect, per stream following its state, offline on close', async () => {
    const broker = await startMosquitto({ user: { name: 'vigil', password: PASSWORD } });
    const sub = await subscribe(broker.url, 'vigil/#', { username: 'vigil', password: PASSWORD });
    const states: StreamStateView[] = [{ id: 'door', state: 'live' }, { id: 'yard', state: 'backing-off' }];
    const lines: string[] = [];
    const notifier = await open({ mqtt: [{ id: 'ha', url: broker.url, username: 'vigil', password: PASSWORD }], streams: () => states, logConnection: (l) => lines.push(l) });
    try {
      await waitFor('the connection', () => notifier.status().mqtt[0]!.connected);
      await waitFor('online', () => sub.on('vigil/availability').at(-1)?.payload === 'online');
      await waitFor('the streams', () => sub.on('vigil/door/availability').length > 0 && sub.on('vigil/yard/availability').length > 0);
      assert.equal(sub.on('vigil/door/availability').at(-1)!.payload, 'online');
      assert.equal(sub.on('vigil/yard/availability').at(-1)!.payload, 'offline');

      const a = alert('alert-0001');
      assert.deepEqual(await notifier.enqueue(a, { targets: ['ha'] }), { targets: 1, dropped: [] });
      const got = await waitFor('the alert', () => sub.on('vigil/door/alerts')[0]);
      assert.deepEqual(JSON.parse(got.payload), a);
      assert.equal(got.retain, false);
      assert.equal(got.qos, 1);
      const status = await waitFor('delivered', () => (notifier.status().mqtt[0]!.delivered === 1 ? notifier.status() : undefined));
      assert.equal(status.queueDepth, 0);
      assert.deepEqual(
        { ...status.mqtt[0], lastConnected: typeof status.mqtt[0]!.lastConnected, lastSuccess: status.mqtt[0]!.lastSuccess?.alertId },
        { id: 'ha', target: broker.url, topicPrefix: 'vigil', qos: 1, connected: true, lastConnected: 'string', connectionError: null, pending: 0, inFlight: 0, delivered: 1, failed: 0, retries: 0, lastSuccess: 'alert-0001', lastFailure: null },
      );
      assert.deepEqual(status.webhooks, []);

      // The stream's state changes: its retained availability follows; a new subscriber sees the retained values.
      states[0] = { id: 'door', state: 'failed' };
      states[1] = { id: 'yard', state: 'live' };
      await waitFor('door offline, yard online', () => sub.on('vigil/door/availability').at(-1)?.payload === 'offline' && sub.on('vigil/yard/availability').at(-1)?.payload === 'online');
      const late = await subscribe(broker.url, 'vigil/+/availability', { username: 'vigil', password: PASSWORD });
      const lateServer = await subscribe(broker.url, 'vigil/availability', { username: 'vigil', password: PASSWORD });
      try {
        await waitFor('the retained values', () => late.messages.length >= 2 && lateServer.messages.length >= 1);
        assert.deepEqual(late.messages.map((m) => [m.topic, m.payload, m.retain]).sort(), [['vigil/door/availability', 'offline', true], ['vigil/yard/availability', 'online', true]]);
        assert.deepEqual(lateServer.messages.map((m) => [m.payload, m.retain]), [['online', true]]);
      } finally {
        await late.close();
        await lateServer.close();
      }

      // A clean close says goodbye: offline for the server and for each stream it published.
      const before = sub.messages.length;
      await notifier.close();
      await waitFor('the goodbye', () => sub.on('vigil/availability').at(-1)?.payload === 'offline' && sub.on('vigil/yard/availability').at(-1)?.payload === 'offline');
      assert.deepEqual(sub.messages.slice(before).map((m) => `${m.topic}=${m.payload}`).sort(), ['vigil/availability=offline', 'vigil/yard/availability=offline']);
      assert.ok(lines.some((l) => /^mqtt ha \(mqtt:\/\/127\.0\.0\.1:\d+\): connected$/.test(l)), lines.join('\n'));
      assert.ok(!lines.join('\n').includes(PASSWORD) && !JSON.stringify(notifier.status()).includes(PASSWORD));
    } finally {
      await notifier.close();
      await sub.close();
      await broker.stop();
    }
  });

  it('wrong credentials: not connected, the reason in the status (never the password), the alert still owed', async () => {
    const broker = await startMosquitto({ user: { name: 'vigil', password: PASSWORD } });
    const notifier = await open({ mqtt: [{ id: 'ha', url: broker.url, username: 'vigil', password: `${PASSWORD}-wrong` }] });
    try {
      await notifier.enqueue(alert('alert-0002'));
      const s = await waitFor('the refusal', () => notifier.status().mqtt[0]!.connectionError ?? undefined);
      assert.match(s, /Not authorized|Bad username or password/i);
      assert.ok(!s.includes(PASSWORD));
      assert.deepEqual({ connected: notifier.status().mqtt[0]!.connected, pending: notifier.status().mqtt[0]!.pending, depth: notifier.status().queueDepth }, { connected: false, pending: 1, depth: 1 });
    } finally {
      await notifier.close();
      await broker.stop();
    }
  });

  it('the Last Will: a process SIGKILLed while connected leaves vigil/availability offline (retained)', async () => {
    const broker = await startMosquitto();
    const sub = await subscribe(broker.url, 'vigil/availability');
    const script = path.join(scratch, 'will-child.mjs');
    const moduleUrl = pathToFileURL(path.join(ROOT, 'src/engine/notify/notifier.ts')).href;
    const policyUrl = pathToFileURL(path.join(ROOT, 'ingest/net/outboundPolicy.ts')).href;
    fs.writeFileSync(
      script,
      `import { Notifier } from ${JSON.stringify(moduleUrl)};
import { OutboundPolicy } from ${JSON.stringify(policyUrl)};
const n = await Notifier.open({ dir: ${JSON.stringify(freshDir())}, policy: new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] }),
  mqtt: [{ id: 'ha', url: ${JSON.stringify(broker.url)} }] });
const timer = setInterval(() => { if (n.status().mqtt[0].connected) { process.stdout.write('connected\\n'); clearInterval(timer); } }, 20);
setInterval(() => {}, 1000);
`,
    );
    const { child, stdout, stderr, exited } = spawnTsxScript(script, ROOT);
    try {
      await waitFor(`the child to connect (stderr: ${stderr()})`, () => stdout().includes('connected') && sub.messages.at(-1)?.payload === 'online', 20_000);
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      const will = await waitFor('the Last Will', () => (sub.messages.at(-1)?.payload === 'offline' ? sub.messages.at(-1) : undefined));
      assert.equal(will.topic, 'vigil/availability');
      const late = await subscribe(broker.url, 'vigil/availability');
      try {
        const retained = await waitFor('the retained value', () => late.messages[0]);
        assert.deepEqual([retained.payload, retained.retain], ['offline', true]);
      } finally {
        await late.close();
      }
    } finally {
      child.kill('SIGKILL');
      await sub.close();
      await broker.stop();
    }
  });

  it('broker down at alert time: the alert waits in the outbox (across a notifier restart) and is published once the broker starts, once', async () => {
    const port = await freePort();
    const persistDir = path.join(scratch, 'mosquitto-persist');
    const url = `mqtt://127.0.0.1:${port}`;
    // A persistent session (clean: false, QoS 1) so the broker keeps what arrives while the test's subscriber is away.
    const session = { clientId: 'vigil-test-sub', clean: false } as const;
    let broker = await startMosquitto({ port, persistDir });
    await (await subscribe(broker.url, 'vigil/+/alerts', session)).client.endAsync();
    await broker.stop();

    const dir = freshDir();
    let notifier = await Notifier.open({ dir, policy, mqtt: [{ id: 'ha', url }], mqttReconnectMs: 100, timeoutMs: 2000 });
    let sub: Awaited<ReturnType<typeof subscribe>> | null = null;
    try {
      await notifier.enqueue(alert('alert-0003'));
      const down = await waitFor('the failed connection', () => (notifier.status().mqtt[0]!.connectionError ? notifier.status().mqtt[0] : undefined));
      assert.deepEqual({ connected: down.connected, pending: down.pending, error: down.connectionError }, { connected: false, pending: 1, error: 'connection refused' });
      // A restart while the broker is still down: the alert is read back from the outbox.
      await notifier.close();
      notifier = await Notifier.open({ dir, policy, mqtt: [{ id: 'ha', url }], mqttReconnectMs: 100, timeoutMs: 2000 });
      await notifier.enqueue(alert('alert-0004', 'yard'));
      assert.equal(notifier.status().queueDepth, 2);

      broker = await startMosquitto({ port, persistDir });
      await waitFor('both delivered', () => notifier.status().mqtt[0]!.delivered === 2 && notifier.status().queueDepth === 0);
      sub = await subscribe(broker.url, 'vigil/+/alerts', session);
      await waitFor('both alerts at the subscriber', () => sub!.messages.length >= 2);
      assert.deepEqual(sub.messages.map((m) => JSON.parse(m.payload).id).sort(), ['alert-0003', 'alert-0004']);
      assert.deepEqual(sub.messages.map((m) => m.topic).sort(), ['vigil/door/alerts', 'vigil/yard/alerts']);
      assert.equal(notifier.status().mqtt[0]!.retries, 0, 'no attempt is made (or counted) while the broker is down');

      // Delivered ones are not sent again by the next notifier.
      await notifier.close();
      notifier = await Notifier.open({ dir, policy, mqtt: [{ id: 'ha', url }], mqttReconnectMs: 100, timeoutMs: 2000 });
      await waitFor('the reconnection', () => notifier.status().mqtt[0]!.connected);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sub.messages.length, 2);
      assert.equal(notifier.status().queueDepth, 0);
    } finally {
      await notifier.close();
      await sub?.close();
      await broker.stop();
    }
  });

  it('the outbound address policy: a refused broker is never connected to (at check time nor at connect time)', async () => {
    const victim = net.createServer();
    let connections = 0;
    victim.on('connection', (s) => {
      connections++;
      s.destroy();
    });
    const listening = await listenLoopback(victim, '127.0.0.3');
    const url = `mqtt://127.0.0.3:${listening.port}`;
    const notifier = await open({ mqtt: [{ id: 'lan', url }] });
    try {
      await assert.rejects(checkMqttAddress(url, policy), (e) => isVigilError(e) && e.code === 'SOURCE_FORBIDDEN');
      await notifier.enqueue(alert('alert-0005'));
      const s = await waitFor('the refusal', () => notifier.status().mqtt[0]!.connectionError ?? undefined);
      assert.match(s, /private, loopback or reserved address \(127\.0\.0\.3\)/);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(connections, 0);
      assert.equal(notifier.status().mqtt[0]!.pending, 1);
    } finally {
      await notifier.close();
      await listening.close();
    }
  });

  it('configuration: ids unique across webhooks and brokers, mqtt(s) URLs only, no user:password in the URL, a topic prefix without wildcards', async () => {
    const bad: Array<[Partial<NotifierOptions>, RegExp]> = [
      [{ webhooks: [{ id: 'x', url: 'https://hooks.example/h', secret: 'whsec-0123456789abcdef' }], mqtt: [{ id: 'x', url: 'mqtt://broker.example' }] }, /two notification targets .* "x"/],
      [{ mqtt: [{ id: 'ha', url: 'http://broker.example' }] }, /only mqtt:\/\/ and mqtts:\/\//],
      [{ mqtt: [{ id: 'ha', url: `mqtt://vigil:${PASSWORD}@broker.example` }] }, /may not carry user:password/],
      [{ mqtt: [{ id: 'ha', url: 'mqtt://broker.example', topicPrefix: 'vigil/#' }] }, /topicPrefix/],
      [{ mqtt: [{ id: 'ha', url: 'mqtt://broker.example', qos: 2 as 1 }] }, /qos must be 0 or 1/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(open({ mqtt: [], ...options }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'BAD_CONFIG');
        assert.match(e.message, message);
        assert.ok(!e.message.includes(PASSWORD));
        return true;
      });
    }
  });
});
