import type { ChunkMeta, ChunkStore } from '../../memory/store/index.js';

const PAGE = 512;

export interface StoredChunksOptions {
  /** Start after this id (only the rows committed above it are read). */
  afterId?: number;
  /** Rows per manifest query (each row carries its representatives: 5.7 KiB at smolvlm2-256m, int8; 22.5 KiB in float32 rows written before issue 15). */
  pageSize?: number;
}

/** Committed chunks' metadata (with representative vectors) in id order, one page per item. */
export function* storedChunkPages(store: ChunkStore, options: StoredChunksOptions = {}): Generator<ChunkMeta[]> {
  const limit = options.pageSize ?? PAGE;
  let afterId = options.afterId;
  for (;;) {
    const page = store.listChunks({ ...(afterId !== undefined ? { afterId } : {}), limit });
    if (page.length > 0) yield page;
    if (page.length < limit) return;
    afterId = page.at(-1)!.chunkId;
  }
}

/** Every committed chunk's metadata (with representative vectors), in id order, a page at a time. */
export function* storedChunks(store: ChunkStore, options: StoredChunksOptions = {}): Generator<ChunkMeta> {
  for (const page of storedChunkPages(store, options)) yield* page;
}
