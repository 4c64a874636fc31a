// Representative vectors (per layer, the mean pre-RoPE key, heads concatenated) <-> the manifest BLOB.
//
// New rows are int8 (issue 15, docs/memory-store.md "Representatives"): per layer one symmetric
// int8 row as the sealed index stores it (kernels/int8Rows.ts: scale = maxabs / 127, codes rounded
// half away from zero), laid out as
//   scales  float32 LE [layers]            (4 B each; 0 for an all-zero layer)
//   codes   int8 [layers * dim], layer-major
// so a chunk costs layers * (4 + dim) bytes instead of layers * dim * 4 (smolvlm2-256m: 5,880 B
// instead of 23,040 B). Rows written before this are float32 LE [layers * dim] and keep reading
// bit-exactly: the blob's length tells the two apart (4 * dim == dim + 4 has no integer solution).
import { VigilError } from '../../common/errors.js';
import { quantizeRowsInt8 } from '../../kernels/int8Rows.js';

export type RepresentativesFormat = 'float32' | 'int8';

/** Bytes of one chunk's packed representatives in `format`. */
export function representativesBytes(layers: number, dim: number, format: RepresentativesFormat = 'int8'): number {
  return format === 'int8' ? layers * (4 + dim) : layers * dim * 4;
}

/** Which layout a manifest blob holds, from its length; throws STORE_CORRUPT for any other length. */
export function representativesFormat(blobBytes: number, layers: number, dim: number): RepresentativesFormat {
  if (blobBytes === representativesBytes(layers, dim, 'int8')) return 'int8';
  if (blobBytes === representativesBytes(layers, dim, 'float32')) return 'float32';
  throw new VigilError(
    'STORE_CORRUPT',
    `representatives blob of ${blobBytes} bytes fits neither int8 (${representativesBytes(layers, dim, 'int8')}) nor float32 (${representativesBytes(layers, dim, 'float32')}) for ${layers} layers x ${dim}`,
  );
}

/**
 * Int8 blob of one chunk's representatives (every layer the same length). Non-finite values throw
 * a RangeError (the store's validation rejects them before this).
 */
export function packRepresentatives(reps: readonly Float32Array[]): Buffer {
  const layers = reps.length;
  const dim = reps[0]?.length ?? 0;
  const out = Buffer.alloc(representativesBytes(layers, dim));
  const scales = new Float32Array(layers);
  const codes = new Int8Array(out.buffer, out.byteOffset + 4 * layers, layers * dim);
  reps.forEach((r, l) => {
    if (r.length !== dim) throw new RangeError(`packRepresentatives: layer ${l} has ${r.length} values, layer 0 has ${dim}`);
    quantizeRowsInt8(r, 1, dim, codes.subarray(l * dim, (l + 1) * dim), scales.subarray(l, l + 1));
  });
  scales.forEach((s, l) => out.writeFloatLE(s, 4 * l));
  return out;
}

export function unpackRepresentatives(blob: Uint8Array, layers: number, dim: number): Float32Array[] {
  const all = representativesFormat(blob.byteLength, layers, dim) === 'int8' ? decodeInt8(blob, layers, dim) : decodeFloat32(blob, layers, dim);
  return Array.from({ length: layers }, (_, l) => all.subarray(l * dim, (l + 1) * dim));
}

/**
 * The representatives exactly as the manifest gives them back (pack then unpack; deterministic).
 * The engine indexes these, not the float32 originals, so an index rebuilt from the manifest
 * after a restart ranks exactly as the live one did (design.md section 3: indices are derived data).
 */
export function asStoredRepresentatives(reps: readonly Float32Array[]): Float32Array[] {
  return unpackRepresentatives(packRepresentatives(reps), reps.length, reps[0]?.length ?? 0);
}

/** x = scale * code, rounded to float32 (an all-zero layer decodes to zeros, never NaN). */
function decodeInt8(blob: Uint8Array, layers: number, dim: number): Float32Array {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const codes = new Int8Array(blob.buffer, blob.byteOffset + 4 * layers, layers * dim);
  const all = new Float32Array(layers * dim);
  for (let l = 0; l < layers; l++) {
    const scale = view.getFloat32(4 * l, true);
    const base = l * dim;
    for (let i = 0; i < dim; i++) all[base + i] = scale * codes[base + i]!;
  }
  return all;
}

function decodeFloat32(blob: Uint8Array, layers: number, dim: number): Float32Array {
  // Copy into one aligned buffer (SQLite's blob may sit at any offset).
  const all = new Float32Array(layers * dim);
  new Uint8Array(all.buffer).set(blob.subarray(0, layers * dim * 4));
  return all;
}
