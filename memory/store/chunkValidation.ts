// Checks a FrameChunk against the store's geometry before anything is written, so a bad chunk
// fails with a clear VigilError instead of a short read months later.
import { VigilError } from '../../common/errors.js';
import type { FrameChunk } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';

export function validateChunk(chunk: FrameChunk, geometry: ChunkGeometry, lastChunkId: number | null): void {
  if (typeof chunk !== 'object' || chunk === null) throw new VigilError('BAD_INPUT', 'append: chunk must be a FrameChunk');
  const id = chunk.chunkId;
  if (!Number.isSafeInteger(id) || id < 0) throw new VigilError('BAD_INPUT', `append: chunkId must be an integer >= 0, got ${id}`);
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
  const n = H * T * D;
  for (const [name, list, len] of [
    ['keys', chunk.keys, n],
    ['values', chunk.values, n],
    ['representatives', chunk.representatives, H * D],
  ] as const) {
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
}
