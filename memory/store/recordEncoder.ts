// FrameChunk -> one complete record (header + payload + padding) in a reused scratch buffer, so
// an append is one allocation-free encode and one write.
import { VigilError } from '../../common/errors.js';
import type { FrameChunk, RecordDtype } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';
import { payloadCrc32 } from './checksum.js';
import { encodePayload, UnrepresentableValueError } from './payloadCodec.js';
import { encodeRecordHeader, payloadBytesWithStill, payloadLayout, RECORD_HEADER_BYTES, recordLength, writeStill } from './recordFormat.js';

export interface EncodedRecord {
  /** The record bytes; a view of the encoder's scratch, valid until the next encode(). */
  bytes: Buffer;
  payloadBytes: number;
  checksum: number;
  /** CRC-32 of each layer's section of the payload (numLayers x u32 LE): lets one layer be read alone. */
  layerChecksums: Buffer;
}

export class RecordEncoder {
  private scratch = Buffer.allocUnsafeSlow(0); // byteOffset 0: payload sections stay aligned

  /**
   * Throws BAD_INPUT for a value the dtype cannot hold. The chunk must be validated already. Its
   * still, when it has one, follows the KV ('archive': the still alone, the KV is not written).
   */
  encode(chunk: FrameChunk, dtype: RecordDtype, geometry: ChunkGeometry): EncodedRecord {
    const kvBytes = payloadLayout(dtype, geometry, chunk.tokenCount).totalBytes;
    const payloadBytes = payloadBytesWithStill(kvBytes, chunk.still);
    const length = recordLength(payloadBytes);
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafeSlow(length);
    const rec = this.scratch.subarray(0, length);
    try {
      if (dtype !== 'archive') encodePayload(chunk, dtype, rec, RECORD_HEADER_BYTES);
    } catch (e) {
      if (e instanceof UnrepresentableValueError) throw new VigilError('BAD_INPUT', `append: ${e.message}`);
      throw e;
    }
    if (chunk.still !== undefined) writeStill(rec, RECORD_HEADER_BYTES + kvBytes, chunk.still);
    rec.fill(0, RECORD_HEADER_BYTES + payloadBytes, length);
    const checksum = payloadCrc32(rec.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + payloadBytes));
    const { layerBytes } = payloadLayout(dtype, geometry, chunk.tokenCount);
    const layerChecksums = Buffer.alloc(4 * geometry.numLayers);
    for (let l = 0; l < geometry.numLayers; l++) {
      const from = RECORD_HEADER_BYTES + l * layerBytes;
      layerChecksums.writeUInt32LE(payloadCrc32(rec.subarray(from, from + layerBytes)), 4 * l);
    }
    encodeRecordHeader(
      {
        dtype,
        chunkId: chunk.chunkId,
        ...geometry,
        tokenCount: chunk.tokenCount,
        payloadBytes,
        tStart: chunk.tStart,
        tEnd: chunk.tEnd,
        wallTime: chunk.wallTime,
        payloadCrc: checksum,
      },
      rec,
    );
    return { bytes: rec, payloadBytes, checksum, layerChecksums };
  }
}
