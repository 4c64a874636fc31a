import fs from 'node:fs';
import path from 'node:path';
import type { Frame } from '../../../ingest/index.js';

/** sharp loads libvips (~0.13 s); it is imported on first use so that commands which never touch pixels start sooner. */
let sharpModule: Promise<typeof import('sharp')> | undefined;
async function loadSharp(): Promise<typeof import('sharp').default> {
  return (await (sharpModule ??= import('sharp'))).default;
}

/** Longest edge of a stored thumbnail (px): enough to recognise a scene in a list of evidence. */
export const THUMBNAIL_EDGE = 160;

/**
 * The evidence pictures of one stream: `<stream>/thumbs/<chunkId>.jpg`, one small JPEG per chunk,
 * made from the sampled frame when it is encoded (the KV cannot be turned back into pixels). They
 * follow the chunk store: retention's removal event (StreamMemory.onRemoved) calls remove(ids).
 * Nothing here lists the folder, which holds one file per chunk of history.
 */
export class ThumbnailStore {
  private newest: number | null = null;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** After a restart: the newest stored chunk's thumbnail is the latest one, if it was written. */
  resumeAt(lastChunkId: number | null): void {
    if (this.newest === null && lastChunkId !== null && fs.existsSync(this.file(lastChunkId))) this.newest = lastChunkId;
  }

  async write(chunkId: number, frame: Frame): Promise<void> {
    const sharp = await loadSharp();
    const jpeg = await sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } })
      .resize({ width: THUMBNAIL_EDGE, height: THUMBNAIL_EDGE, fit: 'inside', withoutEnlargement: true })
      .jpeg({ quality: 70 })
      .toBuffer();
    // Write then rename: a reader never sees half a picture.
    const file = this.file(chunkId);
    try {
      await fs.promises.writeFile(`${file}.tmp`, jpeg);
      await fs.promises.rename(`${file}.tmp`, file);
    } catch (error) {
      // A full disk (ENOSPC) must not leave half a picture behind; the caller decides what follows.
      await fs.promises.rm(`${file}.tmp`, { force: true });
      throw error;
    }
    this.newest = chunkId;
  }

  file(chunkId: number): string {
    return path.join(this.dir, `${chunkId}.jpg`);
  }

  /** The thumbnail of a chunk, if it has one. */
  find(chunkId: number): string | null {
    const file = this.file(chunkId);
    return fs.existsSync(file) ? file : null;
  }

  get newestChunkId(): number | null {
    return this.newest;
  }

  /** Deletes the thumbnails of these chunks (removed from the store by retention). */
  async remove(chunkIds: readonly number[]): Promise<void> {
    for (const id of chunkIds) await fs.promises.rm(this.file(id), { force: true });
    if (this.newest !== null && chunkIds.includes(this.newest)) this.newest = null;
  }
}
