// File helpers for index folders. Indices are derived data (rebuildable from the manifest and the
// stored representatives, design.md section 3), so the aim is narrow: a load either returns exactly
// what was saved or fails with a clear VigilError, never a silently wrong index. A folder is written
// beside its final place and swapped in by rename, so a crash leaves the old folder or none.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { VigilError } from '../common/errors.js';

function isErrno(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Parsed JSON object; FILE_NOT_FOUND when missing, INDEX_CORRUPT when not a JSON object. */
export async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new VigilError('FILE_NOT_FOUND', `index file ${file} does not exist`, { cause: error });
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new VigilError('INDEX_CORRUPT', `${file} is not valid JSON`, { cause: error });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new VigilError('INDEX_CORRUPT', `${file} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** The file's bytes, which must be exactly `bytes` long (INDEX_CORRUPT otherwise). */
export async function readExact(file: string, bytes: number): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new VigilError('INDEX_CORRUPT', `index file ${file} is missing`, { cause: error });
    throw error;
  }
  if (data.length !== bytes) throw new VigilError('INDEX_CORRUPT', `${file} has ${data.length} bytes, its meta says ${bytes}`);
  return data;
}

export async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new VigilError('INDEX_CORRUPT', `index file ${file} is missing`, { cause: error });
    throw error;
  }
}

/** Writes and fsyncs a file. */
export async function writeDurable(file: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs a folder, so a file just created in it survives a crash. */
export async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs a file written by someone else (hnswlib's writeIndex). */
export async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A fresh sibling folder to write into before swapping it in with replaceFolder. */
export async function stagingFolder(dir: string): Promise<string> {
  const staging = `${dir}.saving-${process.pid}-${randomBytes(4).toString('hex')}`;
  await mkdir(staging, { recursive: true });
  return staging;
}

/**
 * Puts `staging` at `dir`. Linux cannot rename over a non-empty folder, so the old one moves aside
 * first; a crash between the two renames leaves no folder at `dir`, which loads as FILE_NOT_FOUND
 * and is rebuilt like any lost index.
 */
export async function replaceFolder(staging: string, dir: string): Promise<void> {
  const aside = `${dir}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
  const had = await exists(dir);
  if (had) await rename(dir, aside);
  await rename(staging, dir);
  if (had) await rm(aside, { recursive: true, force: true });
}

/** Bytes of a typed array, without copying. */
export function bytesOf(array: Uint32Array | Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** A typed array over a copy of `length` elements at byte `offset` (copy: Buffer offsets need not be aligned). */
export function uint32At(data: Buffer, offset: number, length: number): Uint32Array {
  const out = new Uint32Array(length);
  bytesOf(out).set(data.subarray(offset, offset + length * 4));
  return out;
}

export function float32At(data: Buffer, offset: number, length: number): Float32Array {
  const out = new Float32Array(length);
  bytesOf(out).set(data.subarray(offset, offset + length * 4));
  return out;
}

export function float64At(data: Buffer, offset: number, length: number): Float64Array {
  const out = new Float64Array(length);
  bytesOf(out).set(data.subarray(offset, offset + length * 8));
  return out;
}
