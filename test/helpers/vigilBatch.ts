// Many CLI invocations in one child process: each case goes through the CLI's real main() (the
// function bin/vigil.js calls) with its own argv and env, its stdout, stderr and exit code captured
// apart. For tests of argument errors, where starting node + tsx per case costs seconds and the
// parse takes milliseconds; keep at least one real runVigil() spawn per command beside it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runVigil, type VigilRun } from './runVigil.js';

export interface VigilBatchCase {
  args: string[];
  /** Set in process.env for this case only. */
  env?: Record<string, string>;
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'vigilBatchChild.ts');

/** Runs the cases one after another in one child process; the results in the same order. */
export async function runVigilBatch(cases: ReadonlyArray<VigilBatchCase | string[]>): Promise<VigilRun[]> {
  const list = cases.map((c) => (Array.isArray(c) ? { args: c } : c));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-batch-'));
  const resultsFile = path.join(dir, 'results.json');
  try {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, resultsFile], { stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('error', reject);
      child.on('close', (exitCode) => resolve({ code: exitCode, output }));
      child.stdin.end(JSON.stringify(list));
    });
    if (code !== 0 || !fs.existsSync(resultsFile)) throw new Error(`the CLI batch failed (exit ${code}): ${output}`);
    const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8')) as VigilRun[];
    if (results.length !== list.length) throw new Error(`the CLI batch returned ${results.length} results for ${list.length} cases`);
    return results;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The cases in order: those at `spawned` (default the first) through the real binary (runVigil),
 * each in its own process, the rest through runVigilBatch, all at once.
 */
export async function runVigilCases(cases: ReadonlyArray<VigilBatchCase | string[]>, spawned: readonly number[] = [0]): Promise<VigilRun[]> {
  const list = cases.map((c) => (Array.isArray(c) ? { args: c } : c));
  const batched = list.filter((_, i) => !spawned.includes(i));
  const [real, batch] = await Promise.all([
    Promise.all(spawned.map((i) => runVigil(list[i]!.args, list[i]!.env))),
    batched.length > 0 ? runVigilBatch(batched) : Promise.resolve([]),
  ]);
  let next = 0;
  return list.map((_, i) => (spawned.includes(i) ? real[spawned.indexOf(i)]! : batch[next++]!));
}
