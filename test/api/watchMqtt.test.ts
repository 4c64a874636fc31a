/**
 * Watch alerts published to MQTT (issue 17, docs/notifications.md "MQTT") through a real server
 * with probe-needle and a generated needle clip (a.mp4: a green square on a red screen at 10-13 s)
 * and a real mosquitto on 127.0.0.1 (allowed by the URL policy's allowNetworks): the alert of a
 * watch with `notify: ['ha']` arrives on `vigil/a/alerts` as the stored alert record; the retained
 * availability topics (server `online`, the stream's following its ingest, `offline` on a clean
 * stop); the status at GET /v1/notifications and /metrics. `vigil serve --config` as a child
 * process reads the broker's credentials from the environment and, SIGKILLed, leaves its Last Will
 * `offline`. A broker the URL policy refuses fails the start (BAD_CONFIG) before any connection;
 * inline passwords are refused.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { loadServiceConfig, mqttFromConfig } from '../../api/config.js';
import { startServer } from '../../api/server.js';
import { VigilError } from '../../common/errors.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { MOSQUITTO_MISSING, type Mosquitto, type Subscriber, startMosquitto, subscribe } from '../helpers/mosquitto.js';
import { AUTH, disposeSharedModel, makeClips, openApiValidator, question, sharedModel, startTestServer, tempDir, TOKEN, type TestServer, waitEnded, waitFor } from './helpers.js';

after(() => disposeSharedModel());

const PASSWORD = 'mqtt-api-0123456789-do-not-log';
const BIN = path.resolve('bin/vigil.js');

describe('watch alerts to MQTT', { skip: MOSQUITTO_MISSING }, () => {
  let clips: string;
  let broker: Mosquitto;
  let sub: Subscriber;
  let server: TestServer;
  /** While true, the stream's first frame fails its ingest before anything is stored (the watch first). */
  let holdFrames = true;
  const api = () => request(server.url);

  before(async () => {
    clips = await makeClips(30);
    broker = await startMosquitto();
    sub = await subscribe(broker.url, 'vigil/#');
    server = await startTestServer({
      filesDir: clips,
      manager: {
        policy: { filesDir: clips, allowNetworks: ['127.0.0.1/32'] },
        mqtt: [{ id: 'ha', url: broker.url }],
        notifier: { availabilityPollMs: 100, mqttReconnectMs: 200 },
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });
  });
  after(async () => {
    await server?.close();
    await sub?.close();
    await broker?.stop();
  });

  it('the alert arrives on vigil/a/alerts; availability online/offline follows the server and the stream; status and metrics', async () => {
    const valid = await openApiValidator(server.url);
    await waitFor('vigil/availability online', () => sub.on('vigil/availability').at(-1)?.payload === 'online');
    await api().post('/v1/streams').set(AUTH).send({ id: 'a', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('a').state === 'failed');
    await waitFor('vigil/a/availability offline', () => sub.on('vigil/a/availability').at(-1)?.payload === 'offline');

    const unknown = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'yes', notify: ['ha', 'pager'] });
    assert.equal(unknown.status, 400, unknown.text);
    assert.match(unknown.body.error.message, /notify: no webhook or MQTT broker has the id "pager" \(configured: ha\)/);
    const watch = await api().post('/v1/streams/a/watches').set(AUTH).send({ question: question('red'), trigger: 'answer-matches', pattern: 'green', cooldownSec: 0, notify: ['ha'] });
    assert.equal(watch.status, 201, watch.text);
    assert.deepEqual(watch.body.notify, ['ha']);

    holdFrames = false;
    await api().post('/v1/streams/a/start').set(AUTH).expect(200);
    await waitEnded(server, 'a');
    const [stored] = await waitFor('the alert', () => {
      const { alerts } = server.ready.alerts({ stream: 'a', limit: 10 });
      return alerts.length > 0 ? alerts : undefined;
    });
    const got = await waitFor('the MQTT alert', () => sub.on('vigil/a/alerts')[0]);
    assert.deepEqual(JSON.parse(got.payload), JSON.parse(JSON.stringify(stored)));
    assert.match(JSON.parse(got.payload).answer, /green/i);
    assert.deepEqual([got.retain, got.qos], [false, 1]);
    assert.equal(sub.on('vigil/a/alerts').length, 1);
    // The stream's availability: offline while held, online while its file was read, offline once ended.
    const states = sub.on('vigil/a/availability').map((m) => m.payload);
    assert.ok(states.includes('online'), states.join(','));
    await waitFor('vigil/a/availability offline after the end', () => sub.on('vigil/a/availability').at(-1)?.payload === 'offline');

    const status = await waitFor('the delivery to be counted', async () => {
      const res = await api().get('/v1/notifications').set(AUTH).expect(200);
      return res.body.mqtt[0]?.delivered === 1 && res.body.queueDepth === 0 ? res.body : undefined;
    });
    valid('Notifications', status);
    assert.equal(status.enabled, true);
    assert.deepEqual(status.webhooks, []);
    assert.deepEqual(
      { id: status.mqtt[0].id, target: status.mqtt[0].target, connected: status.mqtt[0].connected, alertId: status.mqtt[0].lastSuccess.alertId },
      { id: 'ha', target: broker.url, connected: true, alertId: stored!.id },
    );
    const metrics = (await api().get('/metrics').set(AUTH).expect(200)).text;
    assert.match(metrics, /^vigil_notify_mqtt_connected\{mqtt="ha"\} 1$/m);
    assert.match(metrics, /^vigil_notify_mqtt_delivered_total\{mqtt="ha"\} 1$/m);
    assert.match(metrics, /^vigil_notify_mqtt_pending\{mqtt="ha"\} 0$/m);
    assert.match(metrics, /^vigil_notify_queue_depth 0$/m);
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    if (!promtool.error) assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    // A clean stop: the server's availability goes offline (retained), before the Will would.
    await server.close();
    await waitFor('vigil/availability offline', () => sub.on('vigil/availability').at(-1)?.payload === 'offline');
    const late = await subscribe(broker.url, ['vigil/availability', 'vigil/a/availability']);
    try {
      await waitFor('the retained values', () => late.messages.length >= 2);
      assert.deepEqual(late.messages.map((m) => [m.topic, m.payload, m.retain]).sort(), [['vigil/a/availability', 'offline', true], ['vigil/availability', 'offline', true]]);
    } finally {
      await late.close();
    }
  });
});

describe('MQTT in vigil serve --config', { skip: MOSQUITTO_MISSING }, () => {
  it('credentials come from the variables usernameEnv/passwordEnv name; SIGKILLed, the server leaves its Last Will offline', async () => {
    const broker = await startMosquitto({ user: { name: 'vigil', password: PASSWORD } });
    const sub = await subscribe(broker.url, 'home/vigil/availability', { username: 'vigil', password: PASSWORD });
    const dir = tempDir('vigil-mqtt-serve-');
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      config,
      [
        `data: ${path.join(dir, 'data')}`,
        'port: 0',
        'urlPolicy:',
        '  allowNetworks: [127.0.0.1/32]',
        'mqtt:',
        '  - id: ha',
        `    url: ${broker.url}`,
        '    topicPrefix: home/vigil',
        '    usernameEnv: VIGIL_TEST_MQTT_USER',
        '    passwordEnv: VIGIL_TEST_MQTT_PASS',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [BIN, 'serve', '--config', config, '--model', 'probe-needle'], {
      env: { ...process.env, VIGIL_API_TOKENS: TOKEN, VIGIL_TEST_MQTT_USER: 'vigil', VIGIL_TEST_MQTT_PASS: PASSWORD },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      await waitFor('the server online at home/vigil/availability', () => sub.messages.at(-1)?.payload === 'online', 60_000).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n${stderr}`, { cause: error });
      });
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      const will = await waitFor('the Last Will', () => (sub.messages.at(-1)?.payload === 'offline' ? sub.messages.at(-1) : undefined));
      assert.equal(will.topic, 'home/vigil/availability');
      assert.ok(!stderr.includes(PASSWORD), 'no password in the log');
    } finally {
      child.kill('SIGKILL');
      await sub.close();
      await broker.stop();
    }
  });
});

describe('MQTT configuration', () => {
  it('a broker whose address the URL policy refuses fails the start (BAD_CONFIG), with nothing connected to', async () => {
    const victim = net.createServer();
    let connections = 0;
    victim.on('connection', (s) => {
      connections++;
      s.destroy();
    });
    const listening = await listenLoopback(victim, '127.0.0.3');
    const running = await startServer({
      host: '127.0.0.1',
      port: 0,
      auth: { tokens: [TOKEN] },
      manager: {
        dataDir: tempDir('vigil-mqtt-refused-'),
        model: await sharedModel(),
        policy: { allowNetworks: ['127.0.0.1/32'] },
        mqtt: [{ id: 'lan', url: `mqtt://127.0.0.3:${listening.port}`, username: 'vigil', password: PASSWORD }],
      },
    });
    try {
      await assert.rejects(running.manager, (e: Error & { code?: string }) => {
        assert.equal(e.code, 'BAD_CONFIG');
        assert.match(e.message, /MQTT broker "lan" \(mqtt:\/\/127\.0\.0\.3:\d+\) is refused by the URL policy/);
        assert.ok(!e.message.includes(PASSWORD), e.message);
        return true;
      });
      assert.equal((await request(running.url).get('/readyz')).status, 503);
      assert.equal(connections, 0);
    } finally {
      await running.close();
      await listening.close();
    }
  });

  it('vigil.yaml mqtt: credentials only from environment variables (an inline password or user:password@ is refused); ids unique across webhooks and brokers', () => {
    const dir = tempDir('vigil-mqtt-config-');
    const file = path.join(dir, 'vigil.yaml');
    const write = (...lines: string[]) => fs.writeFileSync(file, `${lines.join('\n')}\n`);
    const refused = (env: NodeJS.ProcessEnv, message: RegExp) =>
      assert.throws(() => loadServiceConfig(file, env), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'BAD_CONFIG');
        assert.match(e.message, message);
        assert.ok(!e.message.includes(PASSWORD), e.message);
        return true;
      });
    const env = { VIGIL_TEST_MQTT_USER: 'vigil', VIGIL_TEST_MQTT_PASS: PASSWORD, VIGIL_TEST_HOOK_SECRET: 'whsec-0123456789abcdef' };

    write('mqtt:', '  - id: ha', '    url: mqtts://broker.example', '    topicPrefix: home/vigil', '    qos: 0', '    usernameEnv: VIGIL_TEST_MQTT_USER', '    passwordEnv: VIGIL_TEST_MQTT_PASS');
    assert.deepEqual(mqttFromConfig(loadServiceConfig(file, env), env, dir), [{ id: 'ha', url: 'mqtts://broker.example', topicPrefix: 'home/vigil', qos: 0, username: 'vigil', password: PASSWORD }]);
    refused({ VIGIL_TEST_MQTT_USER: 'vigil' }, /MQTT broker 'ha': the environment variable VIGIL_TEST_MQTT_PASS \(its passwordEnv\) is not set/);

    write('mqtt:', '  - id: ha', '    url: mqtt://broker.example', '    usernameEnv: VIGIL_TEST_MQTT_USER', `    password: ${PASSWORD}`);
    refused(env, /mqtt\.0\.password: inline secrets are refused: put the password in an environment variable and name it with passwordEnv/);
    write('mqtt:', '  - id: ha', `    url: mqtt://vigil:${PASSWORD}@broker.example`);
    refused(env, /MQTT broker 'ha': inline secrets are refused: no user:password in the URL/);
    write('mqtt:', '  - id: ha', '    url: mqtt://broker.example', '    topicPrefix: vigil/#');
    refused(env, /mqtt\.0\.topicPrefix/);
    write('mqtt:', '  - id: ha', '    url: https://broker.example');
    refused(env, /only mqtt:\/\/ and mqtts:\/\//);
    write('webhooks:', '  - id: ha', '    url: https://hooks.example/vigil', '    secretEnv: VIGIL_TEST_HOOK_SECRET', 'mqtt:', '  - id: ha', '    url: mqtt://broker.example');
    refused(env, /notification id 'ha' appears twice/);
  });
});
