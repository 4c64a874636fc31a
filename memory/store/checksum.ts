// The store's checksum: CRC-32 (zlib's). Node >= 20.15 has it natively in
// node:zlib (hardware-accelerated, several GB/s); older Node 20 releases fall back
// to the pure kernel, which computes the same function, so files stay portable.
import zlib from 'node:zlib';
import { crc32 as crc32Kernel } from '../../kernels/checksum.js';

type Crc32 = (data: Uint8Array, previous?: number) => number;

const native = (zlib as { crc32?: Crc32 }).crc32;

export const payloadCrc32: (data: Uint8Array) => number =
  typeof native === 'function' ? (data) => native(data) >>> 0 : (data) => crc32Kernel(data);

export const checksumImplementation: 'node:zlib' | 'kernel' = typeof native === 'function' ? 'node:zlib' : 'kernel';
