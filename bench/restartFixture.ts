/**
 * The stream folder bench/restart.ts reopens: N committed frame chunks at a model's KV geometry,
 * written once through the public path (StreamSession.addEncodedChunk, group commit), closed
 * cleanly (index saved by StreamSession.dispose), and marked complete by a fixture file so --keep
 * can reuse it. A folder without the mark (a build that was interrupted) is wiped and rebuilt: the
 * build never reopens a partial stream, because reopening large streams is what is being measured.
 *
 * The index seals older chunks into block files as it goes (retrieval/chunkSealer.ts), exactly as
 * a live stream's does, so the build needs no shortcut.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { meanOverTokens } from '../kernels/pool.js';
import { mulberry32 } from '../kernels/sampling.js';
import type { FrameChunk } from '../memory/frameChunk.js';
import { stageProgress } from '../src/cli/progress.js';
import { streamIndexBlocksDir } from '../src/engine/dataLayout.js';
import { StreamSession } from '../src/engine/streamSession.js';
import type { VisionLanguageModel } from '../src/model/visionLanguageModel.js';

export const FIXTURE_FILE = 'restart-fixture.json';

export interface FixtureSpec {
  chunks: number;
  /** Probe model whose geometry the chunks have (and that the restart opens them with). */
  model: string;
  tokensPerChunk: number;
  seed: number;
}

export interface FixtureInfo extends FixtureSpec {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  buildS: number;
  /** Commit of the code that wrote the folder (formats may change between commits). */
  builtBy: string;
  diskBytes: number;
  /** Sealed index blocks after the build. */
  indexBlocks: number;
}

/** The stream folder inside a fixture folder (the mark sits beside it, not in it). */
export function fixtureStreamDir(root: string): string {
  return path.join(root, 'stream');
}

/** The fixture mark of `root` if it holds a complete build of `spec`, else undefined. */
export function readFixture(root: string, spec: FixtureSpec): FixtureInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(root, FIXTURE_FILE), 'utf8')) as FixtureInfo;
    const same = info.chunks === spec.chunks && info.model === spec.model && info.tokensPerChunk === spec.tokensPerChunk && info.seed === spec.seed;
    return same ? info : undefined;
  } catch {
    return undefined;
  }
}

export function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Deterministic chunks: keys and values uniform in [-1, 1) from one seeded generator,
 * representatives the mean key over the chunk's tokens (as the encoder computes them), frame i at
 * stream time i s (1 frame/s) and wall time base + i s.
 */
export function fixtureChunks(g: { numLayers: number; numKvHeads: number; headDim: number }, tokensPerChunk: number, seed: number): (i: number) => Omit<FrameChunk, 'chunkId'> {
  const random = mulberry32(seed);
  const perLayer = g.numKvHeads * tokensPerChunk * g.headDim;
  const fill = () => {
    const a = new Float32Array(perLayer);
    for (let j = 0; j < perLayer; j++) a[j] = random() * 2 - 1;
    return a;
  };
  const wallBase = Date.UTC(2025, 0, 1);
  return (i) => {
    const keys = Array.from({ length: g.numLayers }, fill);
    return {
      tStart: i,
      tEnd: i,
      wallTime: wallBase + i * 1000,
      tokenCount: tokensPerChunk,
      numLayers: g.numLayers,
      numKvHeads: g.numKvHeads,
      headDim: g.headDim,
      keys,
      values: Array.from({ length: g.numLayers }, fill),
      representatives: keys.map((k) => meanOverTokens(k, g.numKvHeads, tokensPerChunk, g.headDim)),
    };
  };
}

/**
 * Writes `spec.chunks` chunks into a new stream folder under `root` (removed first) with `model`'s KV
 * geometry, through StreamSession.addEncodedChunk, the same window -> store -> index path as
 * encoded frames (no model call). Group commit (one fdatasync per group of ~4 MiB of records)
 * keeps a million chunks to minutes; the rows, payloads and index are what any fsync policy writes.
 */
export async function buildFixture(root: string, model: VisionLanguageModel, spec: FixtureSpec): Promise<FixtureInfo> {
  // Only ever wipes what a fixture build writes: a folder holding anything else is refused.
  const foreign = fs.existsSync(root) ? fs.readdirSync(root).filter((name) => name !== 'stream' && name !== FIXTURE_FILE) : [];
  if (foreign.length > 0) throw new Error(`${root} holds ${foreign.slice(0, 3).join(', ')}: not a restart fixture folder, refusing to overwrite it`);
  const dir = fixtureStreamDir(root);
  fs.rmSync(path.join(root, FIXTURE_FILE), { force: true });
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  const { numLayers, numKvHeads, headDim } = model.decoder.info;
  const g = { numLayers, numKvHeads, headDim };
  const recordBytes = 2 * numLayers * numKvHeads * spec.tokensPerChunk * headDim * 4 + numLayers * numKvHeads * headDim * 4;
  const everyChunks = Math.max(16, Math.min(4096, Math.floor((4 << 20) / recordBytes)));
  const started = performance.now();
  const session = await StreamSession.open(model, { dir, fsync: { everyChunks } });
  const progress = stageProgress(`building ${spec.chunks} chunks (${spec.model} geometry)`);
  const next = fixtureChunks(g, spec.tokensPerChunk, spec.seed);
  try {
    for (let i = 0; i < spec.chunks; i++) {
      await session.addEncodedChunk(next(i));
      if ((i + 1) % everyChunks === 0 || i + 1 === spec.chunks) {
        // Lets the group's commit (and its index adds) run before more records pile up.
        await session.flush();
        const s = (performance.now() - started) / 1000;
        progress.update(i + 1, spec.chunks, `${i + 1} chunks, ${s.toFixed(0)} s, ${((i + 1) / s).toFixed(0)}/s`);
      }
    }
    await session.flush();
  } finally {
    progress.stop();
    // Commits what is pending and saves the index: the clean close a restart starts from.
    await session.dispose();
  }
  const info: FixtureInfo = {
    ...spec,
    ...g,
    buildS: Math.round((performance.now() - started) / 100) / 10,
    builtBy: gitHead(),
    diskBytes: folderBytes(dir),
    indexBlocks: fs.existsSync(streamIndexBlocksDir(dir)) ? fs.readdirSync(streamIndexBlocksDir(dir)).length : 0,
  };
  fs.writeFileSync(path.join(root, FIXTURE_FILE), `${JSON.stringify(info, null, 2)}\n`);
  return info;
}
