// `vigil serve` as a real child process (node bin/vigil.js serve ...), listening and ready, for
// tests of the command line and config file; stop() sends SIGTERM and returns the exit code.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { waitFor } from '../api/helpers.js';

const BIN = path.resolve('bin/vigil.js');

export interface ServeProcess {
  url: string;
  /** Authorization header for the token the server was started with. */
  auth: { Authorization: string };
  /** Everything the server has written to stderr so far. */
  stderr(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  /** The child's pid (for SIGKILL / SIGSTOP / SIGCONT by the test that started it). */
  pid: number;
  /** Resolves with the exit code once the child has exited (however it was stopped). */
  exited: Promise<number | null>;
}

export async function startServe(args: readonly string[], token: string, env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], {
    env: { ...process.env, VIGIL_API_TOKENS: token, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      // A stopped child (SIGSTOP) must run again to act on SIGTERM.
      child.kill('SIGCONT');
      child.kill('SIGTERM');
    }
    return exited;
  };
  try {
    const url = await waitFor('the server to listen', () => /listening on (http:\/\/[^\s]+) /.exec(stderr)?.[1], 30_000);
    await waitFor('ready', async () => (await fetch(`${url}/readyz`)).ok, 30_000);
    return { url, auth: { Authorization: `Bearer ${token}` }, stderr: () => stderr, stop, pid: child.pid!, exited };
  } catch (error) {
    await stop();
    throw new Error(`vigil serve did not start: ${(error as Error).message}\n${stderr}`, { cause: error });
  }
}
