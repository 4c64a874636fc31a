// Real NATS servers for tests: the Debian `nats-server` binary with JetStream on 127.0.0.1, a free
// port and a temp store folder; alone or as a cluster of servers joined by routes on loopback. A
// server can be killed (SIGKILL) and started again on the same port with the same store, which is
// how tests take NATS away under a running node. Only processes started here are ever signalled.
// Tests that need it skip with `NATS_MISSING` as the reason when the binary is not installed.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './mosquitto.js';

export const NATS_SERVER = '/usr/sbin/nats-server';
/** Why NATS tests skip, or false when the server is installed. */
export const NATS_MISSING: string | false = fs.existsSync(NATS_SERVER) ? false : `${NATS_SERVER} is not installed (apt-get install nats-server): cluster tests skipped`;

export interface NatsServer {
  name: string;
  port: number;
  url: string;
  storeDir: string;
  running(): boolean;
  /** Everything the server wrote so far (all runs). */
  log(): string;
  /** SIGKILL (no goodbye to clients or routes), then waits for the exit. */
  kill(): Promise<void>;
  /** Starts it again: same port, same store, same routes. */
  restart(): Promise<void>;
  /** SIGTERM, waits for the exit, removes the store. */
  stop(): Promise<void>;
}

interface ServerPlan {
  name: string;
  port: number;
  storeDir: string;
  /** Default true; false plays a NATS server someone started without -js. */
  jetStream?: boolean;
  cluster?: { name: string; port: number; routes: number[] };
}

/** One JetStream server on 127.0.0.1; resolves once it accepts connections. */
export async function startNats(options: { port?: number; jetStream?: boolean } = {}): Promise<NatsServer> {
  const plan: ServerPlan = { name: 'solo', port: options.port ?? (await freePort()), storeDir: fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-nats-')), jetStream: options.jetStream ?? true };
  return launch(plan);
}

/** `size` JetStream servers clustered by routes on loopback (JetStream elects its meta leader once they meet). */
export async function startNatsCluster(size = 3): Promise<NatsServer[]> {
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    routePorts.push(await freePort());
  }
  const servers: NatsServer[] = [];
  try {
    for (let i = 0; i < size; i++) {
      const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), `vigil-nats-n${i + 1}-`));
      const cluster = { name: 'vigil-test', port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) };
      servers.push(await launch({ name: `n${i + 1}`, port: clientPorts[i]!, storeDir, cluster }));
    }
  } catch (error) {
    for (const s of servers) await s.stop();
    throw error;
  }
  return servers;
}

function argsFor(plan: ServerPlan): string[] {
  const args = [...(plan.jetStream === false ? [] : ['-js', '-sd', plan.storeDir]), '-a', '127.0.0.1', '-p', String(plan.port), '-n', plan.name];
  if (plan.cluster) {
    args.push('--cluster_name', plan.cluster.name, '--cluster', `nats://127.0.0.1:${plan.cluster.port}`);
    args.push('--routes', plan.cluster.routes.map((p) => `nats://127.0.0.1:${p}`).join(','));
  }
  return args;
}

async function launch(plan: ServerPlan): Promise<NatsServer> {
  if (NATS_MISSING) throw new Error(NATS_MISSING);
  let log = '';
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async (): Promise<void> => {
    const proc = spawn(NATS_SERVER, argsFor(plan), { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    exited.then(
      () => {
        if (child === proc) child = null;
      },
      () => {},
    );
    const deadline = Date.now() + 10_000;
    while (!(await accepts(plan.port))) {
      if (child !== proc || Date.now() > deadline) {
        proc.kill('SIGKILL');
        await exited;
        throw new Error(`nats-server ${plan.name} did not start on port ${plan.port}:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (proc) proc.kill(sig);
    await exited;
  };
  await start();
  return {
    name: plan.name,
    port: plan.port,
    url: `nats://127.0.0.1:${plan.port}`,
    storeDir: plan.storeDir,
    running: () => child !== null,
    log: () => log,
    kill: () => signal('SIGKILL'),
    restart: async () => {
      if (child) throw new Error(`nats-server ${plan.name} is still running`);
      await start();
    },
    stop: async () => {
      await signal('SIGTERM');
      fs.rmSync(plan.storeDir, { recursive: true, force: true });
    },
  };
}

/** Whether the port answers with the NATS greeting (INFO), not only accepts TCP. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('INFO')));
    socket.once('error', () => done(false));
  });
}

export interface Relay {
  port: number;
  url: string;
  /** A partition: every relayed connection is dropped and new ones are refused until restore(). */
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A loopback TCP relay to a NATS server: a node connected through it can be cut off alone (a
 * network partition) while the server and the other nodes carry on.
 */
export async function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  const port = await freePort();
  const listen = async (): Promise<void> => {
    const s = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
      for (const sock of [client, upstream]) {
        sockets.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => {
          sockets.delete(sock);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    server = s;
  };
  const stop = async (): Promise<void> => {
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return { port, url: `nats://127.0.0.1:${port}`, cut: stop, restore: listen, close: stop };
}
