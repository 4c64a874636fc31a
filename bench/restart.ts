/**
 * Restart time and resident memory vs history length (issue 14, item 2): how long a stream with N
 * committed chunks takes to reopen and answer a first question, and how much RAM the reopened
 * stream holds, measured in a fresh process.
 *
 *   node --import tsx bench/restart.ts --chunks N [--geometry tiny|smolvlm2-256m] [--keep DIR]
 *                                      [--tokens 1] [--seed 1]
 *                                      [--timeout-s 600] [--build-only]
 *
 * 1. Builds a stream folder of N chunks at the geometry of the matching probe model
 *    (probe-random-tiny: 2 layers x 2 KV heads x 16; probe-random-smolvlm2-256m: 30 x 3 x 64),
 *    `--tokens` tokens a chunk (1 by default: the count is what matters, not the payload), keys
 *    and values seeded random, representatives their mean key, frame i at stream time i s. The
 *    chunks go through the public path, StreamSession.addEncodedChunk (window -> store -> index,
 *    no model call) with group commit, and the session is closed with dispose(), which saves the
 *    index as a running server's shutdown does (bench/restartFixture.ts). Older chunks are sealed into
 *    index blocks on the way, as in a live stream (retrieval/chunkSealer.ts). With --keep DIR the
 *    folder is DIR/stream and a mark DIR/restart-fixture.json; a later run with the same
 *    --chunks/--geometry/--tokens/--seed reuses it instead of building (a folder without the
 *    mark is rebuilt). Without --keep it is built in a temporary folder and deleted at the end.
 * 2. In a fresh child process (node --expose-gc, so its RSS is its own): loads the model; opens
 *    an EMPTY stream (a new temporary folder) and asks one question; measures RSS after a GC with
 *    it open, then disposes it; then opens the N-chunk stream with StreamSession.open(model, {dir})
 *    (default options, as `vigil serve` opens a stream) and asks the same question
 *    (`ask({ question, retrieve: 4, maxNewTokens: 1 })`: ReKV pass 1, retrieval over all N chunks,
 *    chunk loading, pass 2 and one token); measures RSS after a GC again; disposes it (timed too).
 *
 * Prints one JSON line on stdout (progress goes to stderr):
 *   restartMs  from the start of StreamSession.open to the first answer of the N-chunk stream
 *              (openMs + askMs); the model is already loaded and warm (the empty stream's question
 *              ran first), so this is the part of a restart that history length can change.
 *   rssMiB     the child's RSS with the N-chunk stream open minus with the empty stream open.
 *   extra      openMs (until the session is ready to append and answer), askMs, peakRssMiB (the
 *              child's peak RSS minus the empty stream's RSS: what the open needed at its worst),
 *              heapMiB / arrayBuffersMiB (the same difference by V8 category), disposeMs, the
 *              empty stream's figures, modelLoadMs, the fixture's disk size and build time.
 * On a failure (an exception, or no result within --timeout-s, default 600) the line carries
 * `error` (and `stage`, the first stack frames) and the exit code is 1.
 *
 * The page cache is warm (the fixture was just written or read); a cold restart after a reboot
 * also pays reading the index and manifest from disk.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { StreamSession } from '../src/engine/streamSession.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { buildFixture, type FixtureInfo, type FixtureSpec, fixtureStreamDir, readFixture } from './restartFixture.js';

const GEOMETRIES: Record<string, string> = { tiny: 'probe-random-tiny', 'smolvlm2-256m': 'probe-random-smolvlm2-256m' };
const QUESTION = 'What happened in the video?';
const MiB = 2 ** 20;
const round1 = (x: number) => Math.round(x * 10) / 10;
const log = (line: string) => process.stderr.write(`${line}\n`);

const { values } = parseArgs({
  options: {
    chunks: { type: 'string' },
    geometry: { type: 'string', default: 'tiny' },
    keep: { type: 'string' },
    tokens: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    'timeout-s': { type: 'string', default: '600' },
    'build-only': { type: 'boolean', default: false },
    // Internal: the measuring child.
    child: { type: 'boolean', default: false },
    stream: { type: 'string' },
    model: { type: 'string' },
  },
});

if (values.child) await child(values.stream!, values.model!);
else await parent();

async function parent(): Promise<void> {
  const chunks = Number(values.chunks);
  const tokensPerChunk = Number(values.tokens);
  const seed = Number(values.seed);
  const timeoutS = Number(values['timeout-s']);
  const modelName = GEOMETRIES[values.geometry!];
  if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`--chunks must be a positive integer, got '${values.chunks}'`);
  if (!modelName) throw new Error(`--geometry must be one of ${Object.keys(GEOMETRIES).join(', ')}, got '${values.geometry}'`);
  if (!Number.isInteger(tokensPerChunk) || tokensPerChunk < 1) throw new Error(`--tokens must be a positive integer, got '${values.tokens}'`);
  if (!(timeoutS > 0)) throw new Error(`--timeout-s must be > 0, got '${values['timeout-s']}'`);
  const modelDir = resolveModelDir(modelName);
  const spec: FixtureSpec = { chunks, model: modelName, tokensPerChunk, seed };
  const root = values.keep ? path.resolve(values.keep) : fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-restart-'));

  let fixture: FixtureInfo | undefined = readFixture(root, spec);
  const reused = fixture !== undefined;
  if (fixture) {
    log(`reusing ${root}: ${chunks} chunks built by ${fixture.builtBy} in ${fixture.buildS} s, ${(fixture.diskBytes / MiB).toFixed(0)} MiB`);
  } else {
    log(`building ${chunks} chunks at ${modelName} geometry, ${tokensPerChunk} token(s) each, into ${root}`);
    const model = await VisionLanguageModel.load(modelDir);
    try {
      fixture = await buildFixture(root, model, spec);
    } finally {
      await model.dispose();
    }
    log(`built in ${fixture.buildS} s: ${(fixture.diskBytes / MiB).toFixed(0)} MiB on disk`);
  }
  const base = {
    chunks,
    geometry: values.geometry,
    layers: fixture.numLayers,
    repBytesPerChunk: fixture.numLayers * fixture.numKvHeads * fixture.headDim * 4,
    tokensPerChunk,
    diskMiB: round1(fixture.diskBytes / MiB),
    buildS: fixture.buildS,
    builtBy: fixture.builtBy,
    reusedFixture: reused,
  };
  if (values['build-only']) {
    process.stdout.write(`${JSON.stringify({ ...base, restartMs: null, rssMiB: null, note: 'build only' })}\n`);
    return;
  }

  log(`measuring in a fresh process (timeout ${timeoutS} s)...`);
  const result = await runChild(fixtureStreamDir(root), modelDir, timeoutS);
  process.stdout.write(`${JSON.stringify({ ...base, ...result, node: process.version })}\n`);
  if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
  if (result.error !== undefined) process.exitCode = 1;
}

interface ChildResult {
  restartMs: number | null;
  rssMiB: number | null;
  error?: string;
  [field: string]: unknown;
}

function runChild(streamDir: string, modelDir: string, timeoutS: number): Promise<ChildResult> {
  const self = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, '--expose-gc', self, '--child', '--stream', streamDir, '--model', modelDir];
  const started = performance.now();
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => {
      process.stderr.write(d);
      stderrTail = (stderrTail + d.toString()).slice(-4000);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutS * 1000);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const wallS = round1((performance.now() - started) / 1000);
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
      if (timedOut) {
        resolve({ restartMs: null, rssMiB: null, error: `timeout: no result after ${timeoutS} s (child killed)`, childWallS: wallS, ...(line ? { partial: JSON.parse(line) } : {}) });
      } else if (line) {
        resolve({ ...(JSON.parse(line) as ChildResult), childWallS: wallS });
      } else {
        resolve({ restartMs: null, rssMiB: null, error: `child exited with ${signal ?? code} and no result`, stderrTail: stderrTail.split('\n').slice(-8).join('\n'), childWallS: wallS });
      }
    });
  });
}

function gcRss(): { rss: number; heap: number; arrayBuffers: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

/** Where an error was thrown: its first stack frames, paths relative to the repository. */
function whereThrown(error: unknown): string[] {
  const stack = error instanceof Error && error.stack ? error.stack.split('\n').slice(1) : [];
  const root = `${path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')}/`;
  return stack.slice(0, 6).map((l) => l.trim().replace(`file://${root}`, '').replace(root, ''));
}

async function child(streamDir: string, modelDir: string): Promise<void> {
  const out: Record<string, unknown> = { restartMs: null, rssMiB: null };
  const emit = () => process.stdout.write(`${JSON.stringify(out)}\n`);
  let stage = 'model load';
  try {
    let t = performance.now();
    const model = await VisionLanguageModel.load(modelDir);
    out.modelLoadMs = round1(performance.now() - t);

    stage = 'empty stream';
    const emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-restart-empty-'));
    try {
      t = performance.now();
      const empty = await StreamSession.open(model, { dir: emptyDir });
      out.emptyOpenMs = round1(performance.now() - t);
      t = performance.now();
      await empty.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 1 });
      out.emptyAskMs = round1(performance.now() - t);
      const before = gcRss();
      out.rssEmptyMiB = round1(before.rss / MiB);
      await empty.dispose();

      stage = 'open';
      log(`opening ${streamDir}...`);
      t = performance.now();
      const session = await StreamSession.open(model, { dir: streamDir });
      const opened = performance.now();
      out.openMs = round1(opened - t);
      log(`open: ${out.openMs} ms; asking...`);
      stage = 'ask';
      const answer = await session.ask({ question: QUESTION, retrieve: 4, maxNewTokens: 1 });
      const answered = performance.now();
      out.restartMs = round1(answered - t);
      out.askMs = round1(answered - opened);
      out.ready = 'answered';
      out.evidence = answer.evidence.length;
      const after = gcRss();
      const peak = process.resourceUsage().maxRSS * 1024;
      out.rssMiB = round1((after.rss - before.rss) / MiB);
      out.rssStreamMiB = round1(after.rss / MiB);
      out.peakRssMiB = round1((peak - before.rss) / MiB);
      out.heapMiB = round1((after.heap - before.heap) / MiB);
      out.arrayBuffersMiB = round1((after.arrayBuffers - before.arrayBuffers) / MiB);
      const stats = session.stats();
      out.storedChunks = stats.storedChunks;
      out.indexedChunks = stats.indexedChunks;
      const index = session.index.stats();
      out.sealedBlocks = index.sealed?.blocks ?? 0;
      out.recentChunks = index.layers[0]?.size ?? 0;
      // The index's own accounting: sealed blocks' RAM plus the recent tier's rows (vector + id + norm).
      out.indexRamMiB = round1(((index.sealed?.ramBytes ?? 0) + (index.layers[0]?.size ?? 0) * index.layers.length * (session.index.dim * 4 + 12)) / MiB);
      stage = 'dispose';
      t = performance.now();
      await session.dispose();
      out.disposeMs = round1(performance.now() - t);
    } finally {
      fs.rmSync(emptyDir, { recursive: true, force: true });
    }
    await model.dispose();
    emit();
  } catch (error) {
    out.error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    out.stage = stage;
    out.thrownAt = whereThrown(error);
    // Absolute here: the empty stream's RSS may not have been measured.
    out.peakRssAbsMiB = round1((process.resourceUsage().maxRSS * 1024) / MiB);
    emit();
    process.exitCode = 1;
    // The model's native sessions and a half-open store would keep the process alive.
    process.exit(1);
  }
}
