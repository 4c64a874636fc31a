// Public surface of the disk tier (explicit names, no export *).
export { ChunkStore } from './ChunkStore.js';
export type { ChunkMeta, ReadLayersResult } from './ChunkStore.js';
export type { ChunkLayers, LayerData, ScratchBuffers } from './layerReader.js';
export { chunkLayers } from './layerReader.js';
export type {
  AppendReceipt,
  ChunkFailure,
  ChunkFailureReason,
  ChunkGeometry,
  ChunkStoreOptions,
  ChunkTimes,
  FsyncPolicy,
  GapRange,
  ReadChunksResult,
  RecoveryReport,
  RetentionPolicy,
  RetentionResult,
  SegmentStats,
  StoreIoOp,
  StoreStats,
  StreamGap,
  VerifyReport,
} from './types.js';
export { DEFAULT_CACHE_BYTES, DEFAULT_SEGMENT_BYTES } from './options.js';
export { checksumImplementation } from './checksum.js';
export { MAX_CHUNK_ID, validateChunk } from './chunkValidation.js';
