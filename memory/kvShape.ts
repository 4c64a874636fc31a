import type { KvGeometry } from './contextAssembler.js';

/**
 * A stream's KV geometry, frozen, with every size derived from it in one place: the engine, the
 * question path and the benches all ask it instead of multiplying dimensions themselves (the
 * store's on-disk record sizes belong to its record format, memory/store/recordFormat.ts).
 * Layouts are per layer [numKvHeads, tokens, headDim] (ONNX [1, KV, T, D]).
 */
export interface KvShape extends Readonly<KvGeometry> {
  /** Floats of one token in one layer, keys or values: numKvHeads * headDim (also a representative's length). */
  readonly tokenFloats: number;
  /** Floats of `tokens` tokens in one layer, keys or values. */
  layerFloats(tokens: number): number;
  /** Floats of `tokens` tokens over every layer, keys and values together. */
  kvFloats(tokens: number): number;
  /** Bytes of `tokens` tokens over every layer, keys and values, as float32 in RAM. */
  kvBytes(tokens: number): number;
  /** Bytes of one chunk's representatives (one float32 vector per layer). */
  readonly representativeBytes: number;
}

export function kvShape(geometry: KvGeometry): KvShape {
  const { numLayers, numKvHeads, headDim, invFreq } = geometry;
  for (const [name, n] of [['numLayers', numLayers], ['numKvHeads', numKvHeads], ['headDim', headDim]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be an integer >= 1, got ${n}`);
  }
  const tokenFloats = numKvHeads * headDim;
  const kvFloats = (tokens: number) => 2 * numLayers * tokenFloats * tokens;
  return Object.freeze({
    numLayers,
    numKvHeads,
    headDim,
    invFreq,
    tokenFloats,
    layerFloats: (tokens: number) => tokenFloats * tokens,
    kvFloats,
    kvBytes: (tokens: number) => 4 * kvFloats(tokens),
    representativeBytes: 4 * numLayers * tokenFloats,
  });
}
