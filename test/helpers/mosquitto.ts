// A real MQTT broker for tests: the Debian `mosquitto` binary on 127.0.0.1, a free port, a temp
// config file (and, when asked, a password file and a persistence folder, so a stopped and
// restarted broker keeps retained messages and persistent sessions). Tests that need it skip with
// `MOSQUITTO_MISSING` as the reason when the binary is not installed.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';

export const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';
/** Why MQTT tests skip, or false when the broker is installed. */
export const MOSQUITTO_MISSING: string | false = fs.existsSync(MOSQUITTO) ? false : `${MOSQUITTO} is not installed (apt-get install mosquitto): MQTT tests skipped`;

export interface MosquittoOptions {
  /** A fixed port (a broker started again on the same port); default a free one. */
  port?: number;
  /** Require this user (password file made with mosquitto_passwd); default anonymous access. */
  user?: { name: string; password: string };
  /** Keep retained messages and sessions in this folder across stop/start. */
  persistDir?: string;
}

export interface Mosquitto {
  port: number;
  url: string;
  /** Everything the broker wrote so far. */
  log(): string;
  /** SIGTERM (mosquitto saves its persistence file), then waits for the exit. */
  stop(): Promise<void>;
}

import { freePort } from './freePort.js';

export { freePort };

/** Starts mosquitto on 127.0.0.1 and resolves once its port accepts connections. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  if (MOSQUITTO_MISSING) throw new Error(MOSQUITTO_MISSING);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-mosquitto-'));
  const port = options.port ?? (await freePort());
  // Run as whoever runs the tests: as root, mosquitto would otherwise switch to the `mosquitto` user, which cannot read the temp folder.
  const lines = [`listener ${port} 127.0.0.1`, `user ${os.userInfo().username}`, 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice'];
  if (options.user) {
    const passwords = path.join(dir, 'passwords');
    fs.writeFileSync(passwords, '');
    const made = spawnSync(MOSQUITTO_PASSWD, ['-b', passwords, options.user.name, options.user.password], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`mosquitto_passwd failed: ${made.stderr}`);
    lines.push('allow_anonymous false', `password_file ${passwords}`);
  } else lines.push('allow_anonymous true');
  if (options.persistDir) {
    fs.mkdirSync(options.persistDir, { recursive: true });
    lines.push('persistence true', `persistence_location ${options.persistDir}/`);
  }
  const config = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(config, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  let running = true;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running = false;
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (running) child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (!running || Date.now() > deadline) {
      await stop();
      throw new Error(`mosquitto did not start on port ${port}:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, url: `mqtt://127.0.0.1:${port}`, log: () => log, stop };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
  /** performance.now() when it arrived. */
  at: number;
}

export interface Subscriber {
  client: MqttClient;
  messages: Received[];
  /** The messages on one topic, oldest first. */
  on(topic: string): Received[];
  close(): Promise<void>;
}

/** A test subscriber (the mqtt client, connected directly) to `topics`, QoS 1; resolves once subscribed. */
export async function subscribe(url: string, topics: string | string[], options: mqtt.IClientOptions = {}): Promise<Subscriber> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options });
  const messages: Received[] = [];
  // Listening before the CONNACK: a persistent session's queued messages may follow it in the same read.
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, qos: packet.qos, at: performance.now() }));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(topics, { qos: 1 });
  return {
    client,
    messages,
    on: (topic) => messages.filter((m) => m.topic === topic),
    close: () => client.endAsync(true),
  };
}
