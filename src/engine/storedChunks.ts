import type { ChunkMeta, ChunkStore } from '../../memory/store/index.js';

const PAGE = 512;

/** Every committed chunk's metadata (with representative vectors), in id order, a page at a time. */
export function* storedChunks(store: ChunkStore): Generator<ChunkMeta> {
  let afterId: number | undefined;
  for (;;) {
    const page = store.listChunks({ ...(afterId !== undefined ? { afterId } : {}), limit: PAGE });
    yield* page;
    if (page.length < PAGE) return;
    afterId = page.at(-1)!.chunkId;
  }
}
