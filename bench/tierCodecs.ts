// The KV memory tiers measured by bench/tier-fidelity.ts (issue 15): what a frame chunk becomes in
// each tier (its float32 KV after a round trip through the tier's bytes) and how many bytes it takes.
// float32 / float16 / int8 go through the store's own codec (memory/store/payloadCodec.ts), so the
// figures are the store's; 4-bit KIVI and token pruning use kernels/kivi.ts and kernels/tokenPruning.ts.
import { dequantizeKivi4, kivi4Bytes, quantizeKivi4 } from '../kernels/kivi.js';
import { gatherTokens, keepTopTokens, tokenNorms } from '../kernels/tokenPruning.js';
import type { FrameChunk, KvStorageDtype } from '../memory/frameChunk.js';
import { decodePayload, encodePayload } from '../memory/store/payloadCodec.js';
import { alignUp, payloadLayout, RECORD_HEADER_BYTES, recordLength } from '../memory/store/recordFormat.js';

/** How the kept image tokens are chosen; 'uniform' (evenly spaced, a spatial subsampling) is the baseline a measured criterion must beat. */
export type PruneCriterion = 'key-norm' | 'value-norm' | 'attention' | 'uniform';

export interface KvTier {
  name: string;
  quant: KvStorageDtype | 'kivi4';
  /** KIVI group size (tokens per key group, dims per value group). */
  groupSize?: number;
  /** Keep this fraction of the frame's image tokens (the frame prompt's text tokens are always kept). */
  prune?: { keepFraction: number; criterion: PruneCriterion };
}

/** What the tier hands back to assembly: pre-RoPE float32 KV per layer, possibly fewer tokens. */
export interface TierChunk {
  tokenCount: number;
  keys: Float32Array[];
  values: Float32Array[];
  /** Bytes of one chunk in this tier (a store record: 72-byte header, payload, padding to 8). */
  bytes: number;
}

/** What pruning needs besides the chunk: which tokens are image tokens, and the prefill attention per layer. */
export interface PruneInputs {
  imageTokens: readonly boolean[];
  /** Per layer, the attention each token received at the frame's prefill (kernels/tokenPruning attentionReceived). */
  attention?: readonly Float64Array[];
}

/** Image tokens kept by a pruned tier (at least 1). */
export function keptImageTokens(tier: KvTier, imageTokens: number): number {
  return tier.prune ? Math.max(1, Math.round(tier.prune.keepFraction * imageTokens)) : imageTokens;
}

/** The chunk's tokens each layer keeps, ascending (all of them without pruning). */
export function keptTokens(chunk: FrameChunk, tier: KvTier, inputs: PruneInputs): Int32Array[] {
  const { numKvHeads: H, headDim: D, tokenCount: T } = chunk;
  if (!tier.prune) return chunk.keys.map(() => Int32Array.from({ length: T }, (_, t) => t));
  const { criterion } = tier.prune;
  const k = keptImageTokens(tier, inputs.imageTokens.filter(Boolean).length);
  return chunk.keys.map((key, layer) => {
    let scores: ArrayLike<number>;
    if (criterion === 'key-norm') scores = tokenNorms(key, H, T, D);
    else if (criterion === 'value-norm') scores = tokenNorms(chunk.values[layer]!, H, T, D);
    else if (criterion === 'uniform') {
      const candidates = inputs.imageTokens.flatMap((c, t) => (c ? [t] : []));
      const chosen = new Set(Array.from({ length: k }, (_, i) => candidates[Math.floor((i * candidates.length) / k)]!));
      scores = Array.from({ length: T }, (_, t) => (chosen.has(t) ? 1 : 0));
    } else {
      const attention = inputs.attention?.[layer];
      if (!attention) throw new Error(`tier ${tier.name}: no prefill attention for chunk ${chunk.chunkId} layer ${layer}`);
      scores = attention;
    }
    return keepTopTokens(scores, inputs.imageTokens, k);
  });
}

/** A chunk in its tier's stored form: its size, and how to read it back to float32 KV. */
export interface EncodedTier {
  tokenCount: number;
  /** Bytes of one chunk in this tier (a store record: 72-byte header, payload, padding to 8). */
  bytes: number;
  decode(): { keys: Float32Array[]; values: Float32Array[] };
}

/** Demotion: prunes (when the tier does) and quantizes the chunk into the tier's stored form. */
export function encodeKvTier(chunk: FrameChunk, tier: KvTier, inputs: PruneInputs): EncodedTier {
  const { numLayers: L, numKvHeads: H, headDim: D } = chunk;
  let source = chunk;
  if (tier.prune) {
    const kept = keptTokens(chunk, tier, inputs);
    const tokens = kept[0]!.length;
    source = {
      ...chunk,
      tokenCount: tokens,
      keys: chunk.keys.map((k, l) => gatherTokens(k, H, chunk.tokenCount, D, kept[l]!)),
      values: chunk.values.map((v, l) => gatherTokens(v, H, chunk.tokenCount, D, kept[l]!)),
    };
  }
  const T = source.tokenCount;
  if (tier.quant === 'kivi4') {
    const G = tier.groupSize ?? 32;
    const layers = source.keys.map((k, l) => [quantizeKivi4(k, 'keys', H, T, D, G), quantizeKivi4(source.values[l]!, 'values', H, T, D, G)] as const);
    // Each section padded to 4, as the store pads its sections.
    const payload = L * (alignUp(kivi4Bytes('keys', H, T, D, G), 4) + alignUp(kivi4Bytes('values', H, T, D, G), 4));
    return {
      tokenCount: T,
      bytes: alignUp(RECORD_HEADER_BYTES + payload, 8),
      decode: () => ({ keys: layers.map(([k]) => dequantizeKivi4(k)), values: layers.map(([, v]) => dequantizeKivi4(v)) }),
    };
  }
  const dtype = tier.quant;
  const layout = payloadLayout(dtype, chunk, T);
  const buffer = Buffer.alloc(layout.totalBytes);
  encodePayload(source, dtype, buffer, 0);
  return { tokenCount: T, bytes: recordLength(layout.totalBytes), decode: () => decodePayload(buffer, dtype, chunk, T) };
}

/** The chunk as its tier stores it and gives it back. */
export function applyKvTier(chunk: FrameChunk, tier: KvTier, inputs: PruneInputs): TierChunk {
  const encoded = encodeKvTier(chunk, tier, inputs);
  return { tokenCount: encoded.tokenCount, bytes: encoded.bytes, ...encoded.decode() };
}

/** Bytes per chunk of a tier, from the geometry alone (no data needed). */
export function tierBytes(tier: KvTier, geometry: { numLayers: number; numKvHeads: number; headDim: number }, tokens: number, imageTokens: number): number {
  const T = tokens - imageTokens + keptImageTokens(tier, imageTokens);
  const { numLayers: L, numKvHeads: H, headDim: D } = geometry;
  if (tier.quant === 'kivi4') {
    const G = tier.groupSize ?? 32;
    return alignUp(RECORD_HEADER_BYTES + L * (alignUp(kivi4Bytes('keys', H, T, D, G), 4) + alignUp(kivi4Bytes('values', H, T, D, G), 4)), 8);
  }
  return recordLength(payloadLayout(tier.quant, geometry, T).totalBytes);
}
