/**
 * Uploaded videos: spooled to a file under the cache folder (ffmpeg needs to seek in most
 * containers, e.g. MP4 with its index at the end), then read as a file source. The file is deleted
 * when the source stops.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { vigilCacheDir } from '../src/cacheDir.js';
import { VigilError } from '../common/errors.js';

export interface UploadInput {
  /** The uploaded bytes: a stream (e.g. an HTTP request body) or a buffer. */
  upload: Readable | Uint8Array;
  /** Original file name, for messages only (the container is sniffed from the content). */
  name?: string;
  /** Refuse uploads larger than this. Default 4 GiB. */
  maxBytes?: number;
}

export function isUploadInput(value: unknown): value is UploadInput {
  return typeof value === 'object' && value !== null && 'upload' in value;
}

export function uploadsDir(): string {
  return path.join(vigilCacheDir(), 'uploads');
}

/** Writes the upload to `uploadsDir()`; returns the path. Partial files are removed on failure. */
export async function spoolUpload(input: UploadInput): Promise<string> {
  const maxBytes = input.maxBytes ?? 4 * 1024 ** 3;
  fs.mkdirSync(uploadsDir(), { recursive: true });
  // No extension from the caller: the demuxer is chosen from the content (mediaGateway.ts), never the name.
  const file = path.join(uploadsDir(), `${randomUUID()}.upload`);
  try {
    if (input.upload instanceof Uint8Array) {
      if (input.upload.length > maxBytes) throw tooLarge(maxBytes);
      if (input.upload.length === 0) throw new VigilError('NOT_A_VIDEO', `The upload${input.name ? ` "${input.name}"` : ''} is empty (0 bytes).`);
      fs.writeFileSync(file, input.upload);
    } else {
      let total = 0;
      const limit = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          total += chunk.length;
          if (total > maxBytes) cb(tooLarge(maxBytes));
          else cb(null, chunk);
        },
      });
      await pipeline(input.upload, limit, fs.createWriteStream(file));
      if (total === 0) throw new VigilError('NOT_A_VIDEO', `The upload${input.name ? ` "${input.name}"` : ''} is empty (0 bytes).`);
    }
    return file;
  } catch (error) {
    fs.rmSync(file, { force: true });
    throw error;
  }
}

function tooLarge(maxBytes: number): VigilError {
  return new VigilError('BAD_INPUT', `The upload is larger than the limit of ${Math.round(maxBytes / 1024 ** 2)} MiB.`);
}
