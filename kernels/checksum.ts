// CRC-32 (IEEE 802.3 / zlib / PNG: reflected polynomial 0xEDB88320, init and
// final xor 0xFFFFFFFF). The same function as node:zlib's crc32, so a caller
// may use the native one where the runtime has it (Node >= 20.15) and this
// kernel elsewhere, and both read each other's files.
//
// Slicing-by-8: eight 256-entry tables let the loop consume 8 bytes per step
// with independent lookups, several times faster than the byte-wise loop.

const POLY = 0xedb88320;

/** TABLES[k][b]: CRC contribution of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = [];
{
  const t0 = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[b] = c >>> 0;
  }
  TABLES.push(t0);
  for (let k = 1; k < 8; k++) {
    const prev = TABLES[k - 1]!;
    const t = new Uint32Array(256);
    for (let b = 0; b < 256; b++) t[b] = ((prev[b]! >>> 8) ^ t0[prev[b]! & 0xff]!) >>> 0;
    TABLES.push(t);
  }
}
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

/**
 * CRC-32 of `data[offset, offset + length)`, continuing from `previous` (the
 * CRC of the bytes before, 0 to start), so crc32(b, crc32(a)) === crc32(a ++ b),
 * exactly like zlib.crc32(data, value). Returns an unsigned 32-bit integer.
 */
export function crc32(data: Uint8Array, previous = 0, offset = 0, length = data.length - offset): number {
  if (offset < 0 || length < 0 || offset + length > data.length) {
    throw new RangeError(`crc32: range [${offset}, ${offset + length}) outside ${data.length} bytes`);
  }
  let c = ~previous >>> 0;
  let i = offset;
  const end = offset + length;
  // Eight bytes per step; bytes are read one by one, so alignment does not matter.
  for (; i + 8 <= end; i += 8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      T7[lo & 0xff]! ^
      T6[(lo >>> 8) & 0xff]! ^
      T5[(lo >>> 16) & 0xff]! ^
      T4[lo >>> 24]! ^
      T3[data[i + 4]!]! ^
      T2[data[i + 5]!]! ^
      T1[data[i + 6]!]! ^
      T0[data[i + 7]!]!;
  }
  for (; i < end; i++) c = T0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
