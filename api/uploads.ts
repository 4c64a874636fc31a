import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { RequestHandler } from 'express';
import multer from 'multer';
import type { ServiceContext } from './context.js';

/**
 * Multipart uploads, streamed to disk under the data folder's `incoming/` (never held in memory),
 * one file (field "file") of at most `maxBytes`, plus a few short text fields. The stream manager
 * then moves the file into the stream's folder. A failed request removes what it wrote.
 */
export function uploadParser(ctx: ServiceContext, maxBytes: number): RequestHandler {
  const storage = multer.diskStorage({
    destination: (_req, _file, cb) => {
      try {
        const dir = ctx.manager().incomingDir;
        fs.mkdirSync(dir, { recursive: true });
        cb(null, dir);
      } catch (error) {
        cb(error as Error, '');
      }
    },
    // Never the client's name on disk: it may hold path tricks; the manager keeps a sanitized copy.
    filename: (_req, _file, cb) => cb(null, `${randomUUID()}.part`),
  });
  return multer({ storage, limits: { fileSize: maxBytes, files: 1, fields: 20, fieldSize: 16 * 1024, parts: 24, headerPairs: 100 } }).single('file');
}

/** Removes an uploaded file that no stream took over (bad fields, refused stream). */
export function discardUpload(file: Express.Multer.File | undefined): void {
  if (file?.path) fs.rmSync(file.path, { force: true });
}
