// Checks a FrameChunk against the store's geometry before anything is written, so a bad chunk
// fails with a clear VigilError instead of a short read months later, or a NaN in a retrieval
// index that then refuses every rebuild. Pure: callers (the engine) run it once before they
// mutate anything, and ChunkStore.append runs it again before it writes.
import { VigilError } from '../../common/errors.js';
import type { FrameChunk } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';

/** Largest chunk id: ids travel as Uint32Array (ChunkStore.chunkIds), 136 years at one chunk a second. */
export const MAX_CHUNK_ID = 0xffffffff;

/**
 * Index of the first NaN or ±Infinity in `a`, or -1. x * 0 is ±0 for every finite x and NaN
 * otherwise, so four independent sums (no branch per element, no serial dependency on one adder)
 * find out whether there is one at ~0.5 ns an element; only then a second loop finds where.
 */
export function firstNonFinite(a: Float32Array): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = a.length;
  const n4 = n - (n % 4);
  let i = 0;
  for (; i < n4; i += 4) {
    s0 += a[i]! * 0;
    s1 += a[i + 1]! * 0;
    s2 += a[i + 2]! * 0;
    s3 += a[i + 3]! * 0;
  }
  for (; i < n; i++) s0 += a[i]! * 0;
  if (s0 + s1 + s2 + s3 === 0) return -1;
  for (let j = 0; j < n; j++) if (!Number.isFinite(a[j]!)) return j;
  return -1;
}

/**
 * Throws SHAPE_MISMATCH (geometry, array shapes) or BAD_INPUT (id not above lastChunkId, times,
 * token count, a non-finite value in keys, values or representatives, named by layer and index,
 * a still that is not bytes). `withKv` false (a chunk going straight to the archive): keys and
 * values are not written, so not checked, and a still is required.
 */
export function validateChunk(chunk: FrameChunk, geometry: ChunkGeometry, lastChunkId: number | null, withKv = true): void {
  if (typeof chunk !== 'object' || chunk === null) throw new VigilError('BAD_INPUT', 'append: chunk must be a FrameChunk');
  const id = chunk.chunkId;
  if (!Number.isInteger(id) || id < 0 || id > MAX_CHUNK_ID) {
    throw new VigilError('BAD_INPUT', `append: chunkId must be an integer in 0..${MAX_CHUNK_ID}, got ${id}`);
  }
  // Chunk ids are monotonic per stream (design.md section 3): the manifest's order is time order.
  if (lastChunkId !== null && id <= lastChunkId) {
    throw new VigilError('BAD_INPUT', `append: chunkId ${id} is not above the last appended id ${lastChunkId}`);
  }
  for (const k of ['tStart', 'tEnd', 'wallTime'] as const) {
    if (typeof chunk[k] !== 'number' || !Number.isFinite(chunk[k])) {
      throw new VigilError('BAD_INPUT', `append: chunk ${id} ${k} must be a finite number, got ${chunk[k]}`);
    }
  }
  if (chunk.tEnd < chunk.tStart) throw new VigilError('BAD_INPUT', `append: chunk ${id} tEnd ${chunk.tEnd} < tStart ${chunk.tStart}`);
  const { numLayers: L, numKvHeads: H, headDim: D } = geometry;
  if (chunk.numLayers !== L || chunk.numKvHeads !== H || chunk.headDim !== D) {
    throw new VigilError(
      'SHAPE_MISMATCH',
      `append: chunk ${id} geometry ${chunk.numLayers} layers x ${chunk.numKvHeads} KV heads x head_dim ${chunk.headDim}, ` +
        `the store holds ${L} x ${H} x ${D}`,
    );
  }
  const T = chunk.tokenCount;
  if (!Number.isInteger(T) || T < 1 || T > 0xffffffff) {
    throw new VigilError('BAD_INPUT', `append: chunk ${id} tokenCount must be a positive integer, got ${T}`);
  }
  if (chunk.still !== undefined && !(chunk.still instanceof Uint8Array)) throw new VigilError('BAD_INPUT', `append: chunk ${id} still must be bytes (Uint8Array)`);
  if (!withKv && (chunk.still === undefined || chunk.still.length === 0)) throw new VigilError('BAD_INPUT', `append: chunk ${id} goes to the archive and needs its still`);
  const n = H * T * D;
  const arrays = [
    ['keys', chunk.keys, n],
    ['values', chunk.values, n],
    ['representatives', chunk.representatives, H * D],
  ] as const;
  for (const [name, list, len] of withKv ? arrays : arrays.slice(2)) {
    if (!Array.isArray(list) || list.length !== L) {
      throw new VigilError('SHAPE_MISMATCH', `append: chunk ${id} ${name} must hold ${L} layers, got ${Array.isArray(list) ? list.length : typeof list}`);
    }
    list.forEach((a: unknown, l: number) => {
      if (!(a instanceof Float32Array) || a.length !== len) {
        const got = a instanceof Float32Array ? `length ${a.length}` : 'not a Float32Array';
        throw new VigilError('SHAPE_MISMATCH', `append: chunk ${id} ${name}[${l}] must be a Float32Array of length ${len}, got ${got}`);
      }
    });
  }
  // After every shape check, so a shape error is reported as one even when values are also bad.
  for (const [name, list] of withKv ? arrays : arrays.slice(2)) {
    for (let l = 0; l < L; l++) {
      const a = list[l]!;
      const i = firstNonFinite(a);
      if (i >= 0) {
        throw new VigilError(
          'BAD_INPUT',
          `append: chunk ${id} ${name} layer ${l} index ${i} is non-finite (${a[i]}); keys, values and representatives must be finite`,
        );
      }
    }
  }
}
