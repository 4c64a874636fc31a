// Chunk payload <-> bytes for each storage dtype. Layout per layer: K section, then V section
// (recordFormat.payloadLayout gives the sizes). float32 is a plain copy, so it round-trips bit-exactly.
import type { FrameChunk, KvStorageDtype } from '../frameChunk.js';
import type { ChunkGeometry } from './types.js';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import {
  dequantizeKeysPerChannel,
  dequantizeValuesPerToken,
  quantizeKeysPerChannel,
  quantizeValuesPerToken,
} from '../../kernels/quantize.js';
import { dequantizeKivi4, kivi4Groups, quantizeKivi4 } from '../../kernels/kivi.js';
import { KIVI4_GROUP, payloadLayout } from './recordFormat.js';
import { invariant } from '../../common/errors.js';

// Payload bytes are viewed as float32/uint16 in place; that is only the file format on a
// little-endian host (every platform Node ships for today, but say so if it ever is not).
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('memory/store: big-endian hosts are not supported (payloads are little-endian)');
}

/** Thrown for a value the dtype cannot hold (non-finite for int8, beyond ±65504 for float16). */
export class UnrepresentableValueError extends RangeError {}

/**
 * Encodes the chunk's K/V into `out` at `at` (which must be 4-aligned in its ArrayBuffer) using
 * exactly payloadLayout(dtype, ...).totalBytes bytes. Padding bytes are zeroed (files are deterministic).
 */
export function encodePayload(chunk: FrameChunk, dtype: KvStorageDtype, out: Buffer, at: number): void {
  const { numLayers: L, numKvHeads: H, headDim: D, tokenCount: T } = chunk;
  const lay = payloadLayout(dtype, chunk, T);
  const n = lay.elements;
  const base = out.byteOffset + at;
  if (base % 4 !== 0) throw new RangeError('encodePayload: payload must start 4-aligned');
  for (let l = 0; l < L; l++) {
    let pos = base + l * lay.layerBytes;
    const keys = chunk.keys[l];
    const values = chunk.values[l];
    invariant(keys && values, () => `encodePayload: chunk ${chunk.chunkId} has no layer ${l} (validated on append)`);
    for (const [tensor, isKey] of [[keys, true], [values, false]] as const) {
      const sectionBytes = isKey ? lay.keyBytes : lay.valueBytes;
      if (dtype === 'float32') {
        new Uint8Array(out.buffer, pos, n * 4).set(new Uint8Array(tensor.buffer, tensor.byteOffset, n * 4));
      } else if (dtype === 'float16') {
        const halves = float32ToFloat16(tensor.subarray(0, n), new Uint16Array(out.buffer, pos, n));
        checkHalfOverflow(tensor, halves, chunk.chunkId, l, isKey);
        new Uint8Array(out.buffer, pos + n * 2, sectionBytes - n * 2).fill(0); // padding
      } else if (dtype === 'kivi4') {
        let q;
        try {
          q = quantizeKivi4(tensor, isKey ? 'keys' : 'values', H, T, D, KIVI4_GROUP);
        } catch (e) {
          throw new UnrepresentableValueError(`chunk ${chunk.chunkId} layer ${l} ${isKey ? 'keys' : 'values'}: ${(e as Error).message}`);
        }
        // Section: scales u16[groups], zeros u16[groups], packed codes, zero padding to 4.
        const g = q.scales.length;
        new Uint16Array(out.buffer, pos, g).set(q.scales);
        new Uint16Array(out.buffer, pos + 2 * g, g).set(q.zeros);
        new Uint8Array(out.buffer, pos + 4 * g, q.packed.length).set(q.packed);
        new Uint8Array(out.buffer, pos + 4 * g + q.packed.length, sectionBytes - 4 * g - q.packed.length).fill(0);
      } else {
        const groups = isKey ? H * D : H * T;
        const scales = new Float32Array(out.buffer, pos, groups);
        const zeros = new Float32Array(out.buffer, pos + 4 * groups, groups);
        const codes = new Uint8Array(out.buffer, pos + 8 * groups, n);
        new Uint8Array(out.buffer, pos + 8 * groups + n, sectionBytes - 8 * groups - n).fill(0); // padding
        try {
          if (isKey) quantizeKeysPerChannel(tensor, H, T, D, codes, scales, zeros);
          else quantizeValuesPerToken(tensor, H, T, D, codes, scales, zeros);
        } catch (e) {
          throw new UnrepresentableValueError(
            `chunk ${chunk.chunkId} layer ${l} ${isKey ? 'keys' : 'values'}: ${(e as Error).message}`,
          );
        }
      }
      pos += sectionBytes;
    }
  }
}

// float32ToFloat16 maps finite values past ±65504 to ±Inf; an Inf key would poison attention,
// so refuse instead of storing it silently. (NaN/Inf inputs are stored as they are.)
function checkHalfOverflow(src: Float32Array, halves: Uint16Array, chunkId: number, layer: number, isKey: boolean): void {
  // Fast scan two halves at a time for an all-ones exponent (Inf or NaN); look closer only then.
  const pairs = new Uint32Array(halves.buffer, halves.byteOffset, halves.length >>> 1);
  let suspect = (halves.length & 1) === 1;
  for (let i = 0; i < pairs.length && !suspect; i++) {
    const w = pairs[i]!;
    suspect = (w & 0x7c00) === 0x7c00 || (w & 0x7c000000) === 0x7c000000;
  }
  if (!suspect) return;
  for (let i = 0; i < halves.length; i++) {
    if ((halves[i]! & 0x7fff) === 0x7c00 && Number.isFinite(src[i])) {
      throw new UnrepresentableValueError(
        `chunk ${chunkId} layer ${layer} ${isKey ? 'keys' : 'values'}[${i}] = ${src[i]} is outside the float16 range (±65504); store as float32 or int8`,
      );
    }
  }
}

/**
 * Decodes a payload to float32. `src` holds exactly the payload. All layers share one ArrayBuffer
 * (keys[l] and values[l] are views into it): for float32 that is src's own buffer (zero-copy), for
 * the others one new allocation.
 */
export function decodePayload(
  src: Uint8Array,
  dtype: KvStorageDtype,
  geometry: ChunkGeometry,
  tokens: number,
): { keys: Float32Array[]; values: Float32Array[] } {
  const { numLayers: L } = geometry;
  const lay = payloadLayout(dtype, geometry, tokens);
  if (src.byteLength !== lay.totalBytes) {
    throw new RangeError(`decodePayload: ${src.byteLength} bytes, expected ${lay.totalBytes}`);
  }
  const n = lay.elements;
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  const view = (dst: ArrayBuffer, at: number): void => {
    for (let l = 0; l < L; l++) {
      keys.push(new Float32Array(dst, at + 2 * l * n * 4, n));
      values.push(new Float32Array(dst, at + (2 * l + 1) * n * 4, n));
    }
  };
  if (dtype === 'float32') {
    // The payload already is the output layout: view it in place when aligned (no copy), so the
    // chunk keeps the record's buffer alive; callers hand in a buffer per record for that reason.
    if (src.byteOffset % 4 === 0) view(src.buffer as ArrayBuffer, src.byteOffset);
    else view(new Uint8Array(src).buffer, 0);
    return { keys, values };
  }
  // Every element is written below, so the output need not be zero-filled first.
  view(Buffer.allocUnsafeSlow(2 * L * n * 4).buffer as ArrayBuffer, 0);
  // Typed views need 4-aligned sources; reads normally deliver that, copy if not.
  const aligned = src.byteOffset % 4 === 0 ? src : new Uint8Array(src);
  for (let l = 0; l < L; l++) {
    decodeLayer(aligned.subarray(l * lay.layerBytes, (l + 1) * lay.layerBytes), dtype, geometry, tokens, keys[l]!, values[l]!);
  }
  return { keys, values };
}

/**
 * Decodes one layer's section of a float16, int8 or kivi4 payload (its K section, then its V section,
 * 4-aligned in its buffer) into float32 `key` and `value` arrays. (A float32 section needs no
 * decoding: view it.)
 */
export function decodeLayer(section: Uint8Array, dtype: 'float16' | 'int8' | 'kivi4', geometry: ChunkGeometry, tokens: number, key: Float32Array, value: Float32Array): void {
  const { numKvHeads: H, headDim: D } = geometry;
  const lay = payloadLayout(dtype, geometry, tokens);
  if (section.byteLength !== lay.layerBytes) throw new RangeError(`decodeLayer: ${section.byteLength} bytes, expected ${lay.layerBytes}`);
  if (section.byteOffset % 4 !== 0) throw new RangeError('decodeLayer: the section must start 4-aligned');
  const n = lay.elements;
  const buf = section.buffer;
  let pos = section.byteOffset;
  for (const isKey of [true, false]) {
    const out = isKey ? key : value;
    if (dtype === 'float16') {
      float16ToFloat32(new Uint16Array(buf, pos, n), out);
    } else if (dtype === 'kivi4') {
      const axis = isKey ? 'keys' : 'values';
      const g = kivi4Groups(axis, H, tokens, D, KIVI4_GROUP);
      dequantizeKivi4(
        {
          axis,
          heads: H,
          tokens,
          headDim: D,
          groupSize: KIVI4_GROUP,
          scales: new Uint16Array(buf, pos, g),
          zeros: new Uint16Array(buf, pos + 2 * g, g),
          packed: new Uint8Array(buf, pos + 4 * g, Math.ceil(n / 2)),
        },
        out,
      );
    } else {
      const groups = isKey ? H * D : H * tokens;
      const scales = new Float32Array(buf, pos, groups);
      const zeros = new Float32Array(buf, pos + 4 * groups, groups);
      const codes = new Uint8Array(buf, pos + 8 * groups, n);
      if (isKey) dequantizeKeysPerChannel(codes, scales, zeros, H, tokens, D, out);
      else dequantizeValuesPerToken(codes, scales, zeros, H, tokens, D, out);
    }
    pos += isKey ? lay.keyBytes : lay.valueBytes;
  }
}
