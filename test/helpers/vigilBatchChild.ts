// The child process of runVigilBatch (vigilBatch.ts): runs each case through the CLI's real main()
// in this one process, one after another, capturing what each case writes to stdout and stderr.
// Cases come as JSON on stdin; the results go to the file named by argv[2], then the process exits
// (a failed command may leave a handle open that would otherwise keep it alive).
import fs from 'node:fs';
import { main } from '../../src/cli.js';
import type { VigilBatchCase } from './vigilBatch.js';
import type { VigilRun } from './runVigil.js';

type Write = typeof process.stdout.write;

/** Sends everything written to `stream` to `sink` until the returned function is called. */
function capture(stream: NodeJS.WriteStream, sink: (text: string) => void): () => void {
  const original = stream.write;
  stream.write = ((chunk: string | Uint8Array, encodingOrCallback?: unknown, callback?: unknown): boolean => {
    sink(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    const done = typeof encodingOrCallback === 'function' ? encodingOrCallback : callback;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  }) as Write;
  return () => {
    stream.write = original;
  };
}

async function runCase({ args, env = {} }: VigilBatchCase): Promise<VigilRun> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  let stdout = '';
  let stderr = '';
  const restoreOut = capture(process.stdout, (s) => (stdout += s));
  const restoreErr = capture(process.stderr, (s) => (stderr += s));
  try {
    // argv as bin/vigil.js passes it: node, the script, then the user's arguments.
    const code = await main([process.execPath, 'vigil', ...args]);
    return { code, stdout, stderr };
  } finally {
    restoreOut();
    restoreErr();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const cases = JSON.parse(fs.readFileSync(0, 'utf8')) as VigilBatchCase[];
const results: VigilRun[] = [];
for (const c of cases) results.push(await runCase(c));
fs.writeFileSync(process.argv[2]!, JSON.stringify(results));
process.exit(0);
