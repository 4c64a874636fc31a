// Shared test helpers: seeded vectors, a literal brute-force reference, temp folders.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { mulberry32 } from '../../kernels/sampling.js';
import { VigilError, type VigilErrorCode } from '../../common/errors.js';

export function randomVector(dim: number, random: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: dim }, () => (random() * 2 - 1) * scale);
}

export function randomVectors(count: number, dim: number, seed: number, scale = 1): Float32Array[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => randomVector(dim, random, scale));
}

/**
 * The definition, written independently of retrieval/: score every entry (dot, or cosine with norms
 * from a plain sum of squares), order by score descending then id ascending, keep r.
 */
export function bruteForce(
  query: Float32Array,
  entries: readonly { id: number; vector: Float32Array }[],
  r: number,
  space: 'ip' | 'cosine' = 'ip',
): { ids: number[]; scores: number[] } {
  const norm = (v: Float32Array): number => {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
    return Math.sqrt(s);
  };
  const qn = norm(query);
  const scored = entries.map(({ id, vector }) => {
    let s = 0;
    for (let i = 0; i < query.length; i++) s += query[i]! * vector[i]!;
    if (space === 'cosine') {
      const d = qn * norm(vector);
      s = d === 0 ? 0 : Math.min(1, Math.max(-1, s / d));
    }
    return { id, s };
  });
  scored.sort((a, b) => b.s - a.s || a.id - b.id);
  const top = scored.slice(0, r);
  return { ids: top.map((x) => x.id), scores: top.map((x) => x.s) };
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-retrieval-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Asserts a VigilError with this code (sync or async). */
export function isVigil(code: VigilErrorCode, message?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof VigilError, `expected a VigilError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  };
}

/**
 * Same ids in the same order, and scores equal up to float64 summation order (the index sums in
 * four lanes; the reference in one).
 */
export function assertSameHits(got: { ids: number[]; scores: number[] }, want: { ids: number[]; scores: number[] }, message?: string): void {
  assert.deepEqual(got.ids, want.ids, message);
  assert.equal(got.scores.length, want.scores.length, message);
  got.scores.forEach((s, i) => {
    const w = want.scores[i]!;
    assert.ok(Math.abs(s - w) <= 1e-12 * Math.max(1, Math.abs(w)), `${message ?? ''} score ${i}: ${s} vs ${w}`);
  });
  // Equal scores stay equal (ties are decided by id, so this is what makes the tie order testable).
  for (let i = 1; i < got.scores.length; i++) {
    if (want.scores[i] === want.scores[i - 1]) assert.equal(got.scores[i], got.scores[i - 1], `${message ?? ''} tie at ${i}`);
  }
}

/** Fraction of `want` found in `got`. */
export function overlap(got: readonly number[], want: readonly number[]): number {
  const set = new Set(got);
  return want.filter((id) => set.has(id)).length / want.length;
}
