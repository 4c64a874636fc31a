import { spawn } from 'node:child_process';
import path from 'node:path';

export interface VigilRun {
  code: number;
  stdout: string;
  stderr: string;
}

const BIN = path.resolve('bin/vigil.js');

/** Runs bin/vigil.js as a child process (the real CLI, through tsx) and collects its output. */
export function runVigil(args: string[], env: Record<string, string> = {}): Promise<VigilRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
