// Input checks at the retrieval boundary: callers get a VigilError with a clear message instead of
// a RangeError from a kernel or a cryptic hnswlib exception.
import { VigilError } from '../common/errors.js';

/** hnswlib labels are uint32, so chunk ids must fit. */
export const MAX_CHUNK_ID = 0xffff_ffff;

export function checkChunkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > MAX_CHUNK_ID) {
    throw new VigilError('BAD_INPUT', `chunk id must be an integer in [0, 2^32), got ${id}`);
  }
}

/** A vector of the index dimension with finite entries (NaN would poison every ranking). */
export function checkVector(what: string, vector: Float32Array, dim: number): void {
  if (!(vector instanceof Float32Array)) throw new VigilError('BAD_INPUT', `${what} must be a Float32Array`);
  if (vector.length !== dim) throw new VigilError('SHAPE_MISMATCH', `${what} has ${vector.length} values, the index expects ${dim}`);
  for (let i = 0; i < vector.length; i++) {
    if (!Number.isFinite(vector[i])) throw new VigilError('BAD_INPUT', `${what}[${i}] is ${vector[i]}`);
  }
}

export function checkCount(what: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new VigilError('BAD_INPUT', `${what} must be an integer >= ${min}, got ${value}`);
}

export function checkConfigInt(what: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new VigilError('BAD_CONFIG', `${what} must be an integer >= ${min}, got ${value}`);
}

export function checkTime(what: string, value: number): void {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new VigilError('BAD_INPUT', `${what} must be a number, got ${value}`);
}
