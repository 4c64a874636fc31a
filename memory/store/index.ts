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
  DemotionResult,
  DemotionStep,
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
  TierSpan,
  VerifyReport,
} from './types.js';
export { DEFAULT_CACHE_BYTES, DEFAULT_KEEP_FULL_SEC, DEFAULT_SEGMENT_BYTES } from './options.js';
export { checksumImplementation } from './checksum.js';
export { MAX_CHUNK_ID, validateChunk } from './chunkValidation.js';
