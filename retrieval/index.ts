// Public surface of retrieval/ (explicit names, no export *).
export { StreamIndex } from './streamIndex.js';
export type { StreamIndexOptions, StreamIndexLoadOptions, StreamIndexStats, IndexedChunk, RetrieveOptions, Retrieval, SealingOptions } from './streamIndex.js';
export { DEFAULT_BLOCK_CHUNKS, DEFAULT_LIST_CHUNKS, DEFAULT_PROBE_LISTS } from './chunkSealer.js';
export { LayerIndex } from './layerIndex.js';
export type { LayerMode, LayerStats } from './layerIndex.js';
export { DEFAULT_HNSW_THRESHOLD } from './layerOptions.js';
export type { LayerIndexOptions } from './layerOptions.js';
export type { LayerTuning } from './layerFiles.js';
export { DEFAULT_HNSW_PARAMS } from './hnswStore.js';
export type { HnswParams } from './hnswStore.js';
export type { Hits } from './hits.js';
export type { ChunkFilter, TimeRange } from './chunkCatalog.js';
export { parseSpace, SIMILARITY_SPACES } from './space.js';
export type { SimilaritySpace } from './space.js';
export { retrievalQueries } from './queryVectors.js';
export type { QueryHeadGeometry } from './queryVectors.js';
export { uniform, windowOnly, oracle, recall } from './baselines.js';
export type { ChunkTimes } from './baselines.js';
