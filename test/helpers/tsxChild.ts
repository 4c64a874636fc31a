// A TypeScript script run as a separate Node process (through tsx), for tests that must kill a real
// process (SIGKILL mid-delivery, a Last Will): its output collected, its exit signal awaited.
import { type ChildProcess, spawn } from 'node:child_process';

export interface TsxChild {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the signal that ended it (null for a normal exit). */
  exited: Promise<NodeJS.Signals | null>;
}

export function spawnTsxScript(script: string, cwd: string): TsxChild {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  return { child, stdout: () => out, stderr: () => err, exited };
}
