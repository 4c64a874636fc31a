/**
 * One evictable unit of streaming memory: the KV of one sampled frame's tokens (its timestamp
 * prompt + image tokens), for every decoder layer. Keys are stored pre-RoPE so a chunk can be placed
 * at any compact position later (design.md section 3).
 */
export interface FrameChunk {
  /** Monotonic per stream, starting at 0. */
  chunkId: number;
  /** Stream time of the frame(s) in seconds (pts-based). */
  tStart: number;
  tEnd: number;
  /** Wall-clock time the frame was captured, ms since the epoch. */
  wallTime: number;
  /** Tokens in the chunk; the same for every chunk of a stream with a fixed frame prompt. */
  tokenCount: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Per layer, float32 [numKvHeads, tokenCount, headDim], pre-RoPE. */
  keys: Float32Array[];
  /** Per layer, float32 [numKvHeads, tokenCount, headDim]. */
  values: Float32Array[];
  /** Per layer, float32 [numKvHeads * headDim]: mean pre-RoPE key over the chunk's tokens, heads concatenated. */
  representatives: Float32Array[];
  /**
   * The frame as the vision encoder saw it, compactly encoded (WebP), kept so the archive tier can
   * drop the KV and re-encode the frame when a question needs it; absent when the stream keeps no
   * archive. Opaque bytes to the store.
   */
  still?: Uint8Array;
}

/** How chunk payloads are stored on disk ('kivi4': 4-bit KIVI G32, the compressed tier; docs/memory-store.md). */
export type KvStorageDtype = 'float32' | 'float16' | 'int8' | 'kivi4';

/**
 * What a stored record holds: KV in one of the storage dtypes, or 'archive': no KV at all, only the
 * frame's still (re-encoded through the model when a question needs it; docs/memory-store.md).
 */
export type RecordDtype = KvStorageDtype | 'archive';

export function chunkPayloadFloats(chunk: Pick<FrameChunk, 'numLayers' | 'numKvHeads' | 'tokenCount' | 'headDim'>): number {
  return 2 * chunk.numLayers * chunk.numKvHeads * chunk.tokenCount * chunk.headDim;
}

/** A chunk before its stream's memory has numbered it (the encoder's output, an import). */
export type UnnumberedChunk = Omit<FrameChunk, 'chunkId'>;
