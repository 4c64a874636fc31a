// Representative vectors (per layer, the mean pre-RoPE key, heads concatenated) <-> the manifest BLOB.

/** Layer-major float32 little-endian bytes. */
export function packRepresentatives(reps: Float32Array[]): Buffer {
  const per = reps[0]?.length ?? 0;
  const out = Buffer.allocUnsafe(reps.length * per * 4);
  reps.forEach((r, l) => out.set(new Uint8Array(r.buffer, r.byteOffset, r.byteLength), l * per * 4));
  return out;
}

export function unpackRepresentatives(blob: Uint8Array, layers: number, dim: number): Float32Array[] {
  // Copy into one aligned buffer (SQLite's blob may sit at any offset), then view per layer.
  const all = new Float32Array(layers * dim);
  new Uint8Array(all.buffer).set(blob.subarray(0, layers * dim * 4));
  return Array.from({ length: layers }, (_, l) => all.subarray(l * dim, (l + 1) * dim));
}
