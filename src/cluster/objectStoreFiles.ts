// Small helpers over a JetStream object store (npm `nats`, `js.views.os(...)`) for replicated
// memory: content-addressed pieces in and out, each checked against the SHA-256 the replication
// manifest recorded. The object store keeps its own digest per object ("SHA-256=" + base64url) and
// the client checks it on every get; both checks run, so an object that was replaced by other valid
// bytes is refused as well as one whose stored chunks were damaged.
import { createHash } from 'node:crypto';
import type { ObjectInfo, ObjectStore } from 'nats';
import { VigilError } from '../../common/errors.js';

/** Hex SHA-256 of the bytes. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The object store's digest string for a hex SHA-256 (base64url with padding, as the client writes it). */
export function natsDigest(hex: string): string {
  const b64 = Buffer.from(hex, 'hex').toString('base64url');
  return `SHA-256=${b64}${'='.repeat((4 - (b64.length % 4)) % 4)}`;
}

/** Puts `data` under `name`; the stored digest must be the one computed here. */
export async function putPiece(bucket: ObjectStore, name: string, data: Uint8Array, sha256: string): Promise<void> {
  const info = await bucket.putBlob({ name }, data);
  if (info.digest !== natsDigest(sha256) || info.size !== data.length) {
    throw new VigilError('STORE_IO', `object store: ${name} was stored as ${info.size} bytes ${info.digest}, expected ${data.length} bytes ${natsDigest(sha256)}`);
  }
}

/** What a caller knows an object must hold. */
export interface ExpectedPiece {
  object: string;
  size: number;
  sha256: string;
}

/**
 * The object's bytes, checked: present, the size and digest the manifest recorded (before reading),
 * the client's own digest check while reading, and SHA-256 of what arrived. `what` names the file
 * the piece belongs to, for the error. Any failure is STORE_CORRUPT, naming the object.
 */
export async function getPiece(bucket: ObjectStore, piece: ExpectedPiece, what: string, timeoutMs: number): Promise<Buffer> {
  const where = `object ${piece.object} (${what})`;
  let info: ObjectInfo | null;
  try {
    info = await bucket.info(piece.object);
  } catch (error) {
    throw new VigilError('STORE_IO', `reading ${where}: ${(error as Error).message}`, { cause: error });
  }
  if (info === null || info.deleted) throw new VigilError('STORE_CORRUPT', `${where} is missing from the object store`);
  if (info.size !== piece.size || info.digest !== natsDigest(piece.sha256)) {
    throw new VigilError('STORE_CORRUPT', `${where} is damaged: the store holds ${info.size} bytes ${info.digest}, the snapshot recorded ${piece.size} bytes ${natsDigest(piece.sha256)}`);
  }
  const data = await readWithTimeout(bucket, piece.object, where, timeoutMs);
  if (data.length !== piece.size || sha256Hex(data) !== piece.sha256) {
    throw new VigilError('STORE_CORRUPT', `${where} is damaged: ${data.length} bytes with SHA-256 ${sha256Hex(data)}, expected ${piece.size} bytes ${piece.sha256}`);
  }
  return data;
}

function readWithTimeout(bucket: ObjectStore, name: string, where: string, timeoutMs: number): Promise<Buffer> {
  return withTimeout(readObject(bucket, name, where), timeoutMs, `reading ${where}`);
}

/**
 * The promise, or STORE_IO after `ms`. The client's reads through consumers (get, list) have no
 * timeout of their own and wait forever when the server goes away mid-read; this bounds them.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new VigilError('STORE_IO', `${what}: no answer within ${ms} ms`)), ms);
  });
  // A late rejection of the abandoned promise must not go unhandled.
  promise.catch(() => {});
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function readObject(bucket: ObjectStore, name: string, where: string): Promise<Buffer> {
  const result = await bucket.get(name);
  if (result === null) throw new VigilError('STORE_CORRUPT', `${where} is missing from the object store`);
  // The client rejects `error` (and errors the stream) when its digest check fails; observe it at once.
  const failed = result.error.then((e) => e, (e: unknown) => e as Error);
  const chunks: Uint8Array[] = [];
  try {
    for await (const chunk of result.data) chunks.push(chunk);
  } catch (error) {
    throw new VigilError('STORE_CORRUPT', `${where} is damaged: ${(error as Error).message}`, { cause: error });
  }
  const error = await failed;
  if (error) throw new VigilError('STORE_CORRUPT', `${where} is damaged: ${error.message}`, { cause: error });
  return Buffer.concat(chunks);
}

/** Names of the live objects whose name starts with `prefix`. */
export async function listNames(bucket: ObjectStore, prefix: string, timeoutMs: number): Promise<string[]> {
  return (await withTimeout(bucket.list(), timeoutMs, 'listing the object store')).filter((i) => !i.deleted && i.name.startsWith(prefix)).map((i) => i.name);
}
