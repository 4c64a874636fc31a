// FrameChunk -> one complete record (header + payload + padding) in a reused scratch buffer, so
// an append is one allocation-free encode and one write.
import { VigilError } from '../../src/errors.js';
import type { FrameChunk, KvStorageDtype } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';
import { payloadCrc32 } from './checksum.js';
import { encodePayload, UnrepresentableValueError } from './payloadCodec.js';
import { encodeRecordHeader, payloadLayout, RECORD_HEADER_BYTES, recordLength } from './recordFormat.js';

export interface EncodedRecord {
  /** The record bytes; a view of the encoder's scratch, valid until the next encode(). */
  bytes: Buffer;
  payloadBytes: number;
  checksum: number;
}

export class RecordEncoder {
  private scratch = Buffer.allocUnsafeSlow(0); // byteOffset 0: payload sections stay aligned

  /** Throws BAD_INPUT for a value the dtype cannot hold. The chunk must be validated already. */
  encode(chunk: FrameChunk, dtype: KvStorageDtype, geometry: ChunkGeometry): EncodedRecord {
    const payloadBytes = payloadLayout(dtype, geometry, chunk.tokenCount).totalBytes;
    const length = recordLength(payloadBytes);
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafeSlow(length);
    const rec = this.scratch.subarray(0, length);
    try {
      encodePayload(chunk, dtype, rec, RECORD_HEADER_BYTES);
    } catch (e) {
      if (e instanceof UnrepresentableValueError) throw new VigilError('BAD_INPUT', `append: ${e.message}`);
      throw e;
    }
    rec.fill(0, RECORD_HEADER_BYTES + payloadBytes, length);
    const checksum = payloadCrc32(rec.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + payloadBytes));
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
    return { bytes: rec, payloadBytes, checksum };
  }
}
