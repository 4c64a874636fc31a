// Shared fixtures for the memory store tests: seeded chunks, temp folders, bit-exact comparison.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { type ChunkGeometry, ChunkStore, type DemotionStep } from '../../memory/store/index.js';
import { asStoredRepresentatives } from '../../memory/store/representatives.js';
import { meanOverTokens } from '../../kernels/pool.js';
import { mulberry32 } from '../../kernels/sampling.js';

export const TINY: ChunkGeometry = { numLayers: 3, numKvHeads: 2, headDim: 8 };

/**
 * A deterministic chunk: K/V uniform in [-scale, scale) from a PRNG seeded by (seed, chunkId),
 * representatives = mean pre-RoPE key per layer (as the engine computes them).
 * tStart = 2 * id s, tEnd = tStart + 2, wall time 1.7e12 + 2000 * id.
 */
export function makeChunk(
  chunkId: number,
  geometry: ChunkGeometry = TINY,
  tokenCount = 5,
  options: { seed?: number; scale?: number } = {},
): FrameChunk {
  const { numLayers: L, numKvHeads: H, headDim: D } = geometry;
  const rand = mulberry32(((options.seed ?? 1) * 1_000_003 + chunkId) >>> 0);
  const scale = options.scale ?? 1;
  const n = H * tokenCount * D;
  const fill = (): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
    return a;
  };
  const keys = Array.from({ length: L }, fill);
  const values = Array.from({ length: L }, fill);
  return {
    chunkId,
    tStart: 2 * chunkId,
    tEnd: 2 * chunkId + 2,
    wallTime: 1.7e12 + 2000 * chunkId,
    tokenCount,
    numLayers: L,
    numKvHeads: H,
    headDim: D,
    keys,
    values,
    representatives: keys.map((k) => meanOverTokens(k, H, tokenCount, D)),
  };
}

/** A fresh folder under the OS temp dir, removed after the test. */
export function tempDir(t: TestContext, prefix = 'vigil-store-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/**
 * Same metadata and bit-identical tensors (NaN payloads and -0 included); representatives
 * bit-identical to their manifest round trip (int8, memory/store/representatives.ts), which is
 * what every store read returns for them.
 */
export function assertChunkBitExact(got: FrameChunk | undefined, want: FrameChunk): void {
  assert.ok(got !== undefined, `chunk ${want.chunkId} missing`);
  const meta = (c: FrameChunk) => [c.chunkId, c.tStart, c.tEnd, c.wallTime, c.tokenCount, c.numLayers, c.numKvHeads, c.headDim];
  assert.deepEqual(meta(got), meta(want));
  const expected = { keys: want.keys, values: want.values, representatives: asStoredRepresentatives(want.representatives) };
  for (const k of ['keys', 'values', 'representatives'] as const) {
    assert.equal(got[k].length, expected[k].length);
    for (let l = 0; l < expected[k].length; l++) {
      assert.deepEqual(bits(got[k][l]!), bits(expected[k][l]!), `chunk ${want.chunkId} ${k}[${l}] differs`);
    }
  }
}

/** Path of a segment file (the store's naming: seg-000001.kvseg). */
export function segmentFile(dir: string, segment: number): string {
  return path.join(dir, `seg-${String(segment).padStart(6, '0')}.kvseg`);
}

export async function rejectsWithCode(p: Promise<unknown> | (() => unknown), code: string, pattern?: RegExp): Promise<void> {
  const check = (e: unknown): boolean => {
    assert.equal((e as { name?: string }).name, 'VigilError', `expected a VigilError, got ${String(e)}`);
    assert.equal((e as { code?: string }).code, code, `expected ${code}: ${(e as Error).message}`);
    if (pattern !== undefined) assert.match((e as Error).message, pattern);
    return true;
  };
  if (typeof p === 'function') {
    let threw = false;
    try {
      await p();
    } catch (e) {
      threw = check(e);
    }
    assert.ok(threw, `expected ${code}, nothing was thrown`);
  } else {
    await assert.rejects(p, check);
  }
}

/**
 * Runs `check` on a writer's store, again after it is closed and reopened, and on a read-only
 * reader beside the reopened writer; returns the reopened writer (the caller disposes it).
 */
export async function checkAcrossReopen(store: ChunkStore, dir: string, check: (s: ChunkStore) => void): Promise<ChunkStore> {
  check(store);
  await store.dispose();
  const reopened = ChunkStore.open({ dir });
  check(reopened);
  const reader = ChunkStore.open({ dir, readOnly: true });
  try {
    check(reader);
  } finally {
    await reader.dispose();
  }
  return reopened;
}

/** A deterministic stand-in for a chunk's still (opaque bytes to the store), of a length that varies with the id. */
export function stillFor(id: number): Uint8Array {
  const out = new Uint8Array(100 + ((id * 37) % 61));
  for (let i = 0; i < out.length; i++) out[i] = (id * 131 + i * 7) & 0xff;
  return out;
}

/**
 * Runs test/memory/fixtures/demoteStep.ts in a real child process: it builds a store, demotes its
 * oldest segment to `target` and SIGKILLs itself at `step`. Resolves with how it ended.
 */
export async function runDemoteStepChild(dir: string, step: DemotionStep, target: 'kivi4' | 'archive' = 'kivi4'): Promise<{ signal: NodeJS.Signals | null; out: string; err: string }> {
  const fixture = fileURLToPath(new URL('./fixtures/demoteStep.ts', import.meta.url));
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, step, target], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  return { signal, out, err };
}
