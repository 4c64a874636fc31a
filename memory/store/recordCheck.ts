// Is the record a manifest row points at intact? Shared by reads, verify() and recovery, so all
// three judge a record by the same rules.
import type { ChunkLocation } from './manifest.js';
import type { ChunkFailure, ChunkGeometry } from './types.js';
import { payloadCrc32 } from './checksum.js';
import { decodeRecordHeader, payloadLayout, RECORD_HEADER_BYTES, recordLength, stillOf } from './recordFormat.js';

/**
 * Checks the record of `loc` held in `buf` at `at` (the record's first byte): header, identity,
 * geometry, sizes and payload checksum. Returns null when intact, else why not.
 */
export function checkRecord(buf: Buffer, at: number, loc: ChunkLocation, geometry: ChunkGeometry): ChunkFailure | null {
  const fail = (reason: ChunkFailure['reason'], message: string): ChunkFailure => ({
    chunkId: loc.chunkId,
    reason,
    message: `chunk ${loc.chunkId} (segment ${loc.segment} @${loc.offset}): ${message}`,
  });
  if (buf.length - at < loc.length) return fail('truncated', `record cut short (${buf.length - at} of ${loc.length} bytes)`);
  const h = decodeRecordHeader(buf, at);
  if (!h.ok) return fail('bad-header', h.message);
  const r = h.header;
  if (r.chunkId !== loc.chunkId) return fail('bad-header', `record holds chunk ${r.chunkId}`);
  if (r.numLayers !== geometry.numLayers || r.numKvHeads !== geometry.numKvHeads || r.headDim !== geometry.headDim) {
    return fail('bad-header', `record geometry ${r.numLayers}x${r.numKvHeads}x${r.headDim} differs from the store's`);
  }
  if (r.dtype !== loc.dtype || r.tokenCount !== loc.tokenCount || r.payloadBytes !== loc.payloadBytes) {
    return fail('bad-header', 'record header disagrees with its manifest row');
  }
  const kvBytes = payloadLayout(r.dtype, geometry, r.tokenCount).totalBytes;
  if (r.payloadBytes < kvBytes || recordLength(r.payloadBytes) !== loc.length) {
    return fail('bad-header', 'record sizes are inconsistent');
  }
  const payload = buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + r.payloadBytes);
  // Bytes after the KV are a still whose own length must account for them exactly.
  if (stillOf(payload, kvBytes) === undefined) return fail('bad-header', 'record sizes are inconsistent (still)');
  const crc = payloadCrc32(payload);
  if (crc !== loc.checksum || r.payloadCrc !== loc.checksum) {
    return fail('checksum', `payload checksum ${crc.toString(16)}, expected ${loc.checksum.toString(16)}`);
  }
  return null;
}

/** The manifest's per-layer checksums against an intact payload (verify: single-layer reads would trust them). */
export function checkLayerChecksums(buf: Buffer, at: number, loc: ChunkLocation, geometry: ChunkGeometry): ChunkFailure | null {
  if (!loc.layerChecksums) return null;
  const { layerBytes } = payloadLayout(loc.dtype, geometry, loc.tokenCount);
  for (let l = 0; l < geometry.numLayers; l++) {
    const from = at + RECORD_HEADER_BYTES + l * layerBytes;
    if (payloadCrc32(buf.subarray(from, from + layerBytes)) !== loc.layerChecksums.readUInt32LE(4 * l)) {
      return { chunkId: loc.chunkId, reason: 'checksum', message: `chunk ${loc.chunkId} (segment ${loc.segment} @${loc.offset}): layer ${l} checksum in the manifest disagrees with the intact payload` };
    }
  }
  return null;
}
