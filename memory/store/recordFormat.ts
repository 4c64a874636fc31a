// Byte layout of segment files and of the chunk records inside them (docs/memory-store.md).
// Everything is little-endian. Records start at multiples of 8 so the payload's
// float32/uint16 sections can be viewed in place after a read.
import type { KvStorageDtype, RecordDtype } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';
import { payloadCrc32 } from './checksum.js';
import { kivi4Groups } from '../../kernels/kivi.js';

export const FORMAT_VERSION = 1;

/** 'VIGILSEG': first 8 bytes of every segment file. */
const SEGMENT_MAGIC = Buffer.from('VIGILSEG', 'latin1');
export const SEGMENT_HEADER_BYTES = 32;

/** 'VKVR' as a little-endian u32: first 4 bytes of every record. */
export const RECORD_MAGIC = 0x52564b56;
export const RECORD_HEADER_BYTES = 72;
export const RECORD_ALIGN = 8;

const DTYPE_CODES: Record<RecordDtype, number> = { float32: 1, float16: 2, int8: 3, kivi4: 4, archive: 5 };

/** KIVI group size of dtype 'kivi4' (G32: the tier docs/PERFORMANCE.md measured). */
export const KIVI4_GROUP = 32;
const CODE_DTYPES = new Map<number, RecordDtype>(
  Object.entries(DTYPE_CODES).map(([k, v]) => [v, k as RecordDtype]),
);

/** A dtype new KV can be written in (a stream's storage dtype); 'archive' is a record dtype only. */
export function isStorageDtype(x: unknown): x is KvStorageDtype {
  return x === 'float32' || x === 'float16' || x === 'int8' || x === 'kivi4';
}

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Segment file header: magic, format version, header size, segment id, CRC-32 of bytes 0..28. */
export function encodeSegmentHeader(segmentId: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(SEGMENT_HEADER_BYTES, 12);
  b.writeUInt32LE(segmentId, 16);
  b.writeUInt32LE(payloadCrc32(b.subarray(0, 28)), 28);
  return b;
}

export type SegmentHeaderCheck =
  | { ok: true; segmentId: number }
  | { ok: false; newerVersion: boolean; message: string };

export function decodeSegmentHeader(b: Uint8Array): SegmentHeaderCheck {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < SEGMENT_HEADER_BYTES) return { ok: false, newerVersion: false, message: 'segment header truncated' };
  if (!buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return { ok: false, newerVersion: false, message: 'not a segment file (bad magic)' };
  if (buf.readUInt32LE(28) !== payloadCrc32(buf.subarray(0, 28))) {
    return { ok: false, newerVersion: false, message: 'segment header checksum mismatch' };
  }
  const version = buf.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    return { ok: false, newerVersion: version > FORMAT_VERSION, message: `segment format version ${version}, expected ${FORMAT_VERSION}` };
  }
  return { ok: true, segmentId: buf.readUInt32LE(16) };
}

/** Per-layer section sizes of a payload; the payload is numLayers x (K section, V section). */
export interface PayloadLayout {
  /** Elements per K (or V) tensor of one layer: numKvHeads * tokens * headDim. */
  elements: number;
  keyBytes: number;
  valueBytes: number;
  layerBytes: number;
  totalBytes: number;
}

export function payloadLayout(dtype: RecordDtype, geometry: ChunkGeometry, tokens: number): PayloadLayout {
  const { numLayers: L, numKvHeads: H, headDim: D } = geometry;
  if (dtype === 'archive') return { elements: 0, keyBytes: 0, valueBytes: 0, layerBytes: 0, totalBytes: 0 };
  const elements = H * tokens * D;
  let keyBytes: number;
  let valueBytes: number;
  if (dtype === 'float32') {
    keyBytes = valueBytes = elements * 4;
  } else if (dtype === 'float16') {
    // Padded to 4 so every section (and so every layer) starts 4-aligned.
    keyBytes = valueBytes = alignUp(elements * 2, 4);
  } else if (dtype === 'kivi4') {
    // kivi4: fp16 scales, fp16 zeros (one per group), then the codes two per byte, padded to 4.
    const codes = alignUp(Math.ceil(elements / 2), 4);
    keyBytes = 4 * kivi4Groups('keys', H, tokens, D, KIVI4_GROUP) + codes;
    valueBytes = 4 * kivi4Groups('values', H, tokens, D, KIVI4_GROUP) + codes;
  } else {
    // int8: float32 scales and zeros for each group, then the codes padded to 4.
    const codes = alignUp(elements, 4);
    keyBytes = 2 * 4 * H * D + codes; // per channel: (head, dim)
    valueBytes = 2 * 4 * H * tokens + codes; // per token: (head, token)
  }
  const layerBytes = keyBytes + valueBytes;
  return { elements, keyBytes, valueBytes, layerBytes, totalBytes: L * layerBytes };
}

export function recordLength(payloadBytes: number): number {
  return alignUp(RECORD_HEADER_BYTES + payloadBytes, RECORD_ALIGN);
}

/**
 * A record's payload is its KV sections (payloadLayout(...).totalBytes, none for 'archive'), then,
 * when the chunk kept its frame, the still: u32 byte count, then the bytes. Records without a still
 * end with the KV (the layout before stills existed), so payloadBytes tells which.
 */
export const STILL_LENGTH_BYTES = 4;

export function payloadBytesWithStill(kvBytes: number, still: Uint8Array | undefined): number {
  return still === undefined ? kvBytes : kvBytes + STILL_LENGTH_BYTES + still.length;
}

/** Writes the still's tail at `at` (right after the KV sections). */
export function writeStill(out: Buffer, at: number, still: Uint8Array): void {
  out.writeUInt32LE(still.length, at);
  out.set(still, at + STILL_LENGTH_BYTES);
}

/**
 * The still in an intact payload (`payload` = exactly payloadBytes), as a view; null when the
 * record has none; undefined when the tail is inconsistent (a damaged or foreign record).
 */
export function stillOf(payload: Uint8Array, kvBytes: number): Uint8Array | null | undefined {
  if (payload.length === kvBytes) return null;
  if (payload.length < kvBytes + STILL_LENGTH_BYTES) return undefined;
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const n = b.readUInt32LE(kvBytes);
  if (kvBytes + STILL_LENGTH_BYTES + n !== payload.length) return undefined;
  return payload.subarray(kvBytes + STILL_LENGTH_BYTES);
}

export interface RecordHeader {
  dtype: RecordDtype;
  chunkId: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  tokenCount: number;
  payloadBytes: number;
  tStart: number;
  tEnd: number;
  wallTime: number;
  payloadCrc: number;
}

/**
 * Writes the 72-byte record header:
 *   0 magic u32 | 4 version u16 | 6 header bytes u16 | 8 dtype u8 | 9 flags u8 | 10 reserved u16
 *  12 chunk id u64 | 20 layers u16 | 22 KV heads u16 | 24 head dim u16 | 26 reserved u16
 *  28 tokens u32 | 32 payload bytes u64 | 40 t_start f64 | 48 t_end f64 | 56 wall time f64
 *  64 payload CRC-32 u32 | 68 header CRC-32 u32 (of bytes 0..68)
 */
export function encodeRecordHeader(h: RecordHeader, out: Buffer, at = 0): void {
  out.fill(0, at, at + RECORD_HEADER_BYTES);
  out.writeUInt32LE(RECORD_MAGIC, at);
  out.writeUInt16LE(FORMAT_VERSION, at + 4);
  out.writeUInt16LE(RECORD_HEADER_BYTES, at + 6);
  out.writeUInt8(DTYPE_CODES[h.dtype], at + 8);
  writeU64(out, at + 12, h.chunkId);
  out.writeUInt16LE(h.numLayers, at + 20);
  out.writeUInt16LE(h.numKvHeads, at + 22);
  out.writeUInt16LE(h.headDim, at + 24);
  out.writeUInt32LE(h.tokenCount, at + 28);
  writeU64(out, at + 32, h.payloadBytes);
  out.writeDoubleLE(h.tStart, at + 40);
  out.writeDoubleLE(h.tEnd, at + 48);
  out.writeDoubleLE(h.wallTime, at + 56);
  out.writeUInt32LE(h.payloadCrc >>> 0, at + 64);
  out.writeUInt32LE(payloadCrc32(out.subarray(at, at + 68)), at + 68);
}

export type RecordHeaderCheck = { ok: true; header: RecordHeader } | { ok: false; message: string };

export function decodeRecordHeader(b: Buffer, at = 0): RecordHeaderCheck {
  if (b.length - at < RECORD_HEADER_BYTES) return { ok: false, message: 'record header truncated' };
  if (b.readUInt32LE(at) !== RECORD_MAGIC) return { ok: false, message: 'bad record magic' };
  if (b.readUInt32LE(at + 68) !== payloadCrc32(b.subarray(at, at + 68))) {
    return { ok: false, message: 'record header checksum mismatch' };
  }
  const version = b.readUInt16LE(at + 4);
  if (version !== FORMAT_VERSION) return { ok: false, message: `record format version ${version}` };
  const dtype = CODE_DTYPES.get(b.readUInt8(at + 8));
  if (dtype === undefined) return { ok: false, message: `unknown dtype code ${b.readUInt8(at + 8)}` };
  return {
    ok: true,
    header: {
      dtype,
      chunkId: readU64(b, at + 12),
      numLayers: b.readUInt16LE(at + 20),
      numKvHeads: b.readUInt16LE(at + 22),
      headDim: b.readUInt16LE(at + 24),
      tokenCount: b.readUInt32LE(at + 28),
      payloadBytes: readU64(b, at + 32),
      tStart: b.readDoubleLE(at + 40),
      tEnd: b.readDoubleLE(at + 48),
      wallTime: b.readDoubleLE(at + 56),
      payloadCrc: b.readUInt32LE(at + 64),
    },
  };
}

// u64 fields hold safe integers (< 2^53): two u32 words, low first.
function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v % 2 ** 32, at);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
}

function readU64(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 2 ** 32;
}
