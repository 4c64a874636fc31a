import ort from 'onnxruntime-node';
import { VigilError } from '../../common/errors.js';
import type { BufferPool } from './bufferPool.js';
import { KvCache, type KvSpec } from './kvCache.js';

/**
 * A KV context that grows in place: every layer's key and value are [1, KV, capacity, D] tensors
 * over one pooled buffer, filled from row 0. A decoder whose attention reads the valid lengths from
 * the mask (GroupQueryAttention, kvTaps.lengthsFromMask) takes `cache` as its past with
 * pastLength = `length`, and the call's new rows are appended here: a decode step moves S rows,
 * not the whole context (the contiguous [1, KV, T, D] form must be laid out anew for every T).
 */
export class KvBuffer {
  private readonly layersCache: KvCache;
  private rows = 0;
  private readonly buffer: ArrayBuffer;
  /** Rows [length, capacity) hold zeros (the pool's memory may hold anything, NaN included). */
  private tailZeroed = false;

  constructor(
    private readonly spec: KvSpec,
    readonly capacity: number,
    private readonly pool: BufferPool,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`KV buffer capacity must be a positive integer, got ${capacity}`);
    const { numLayers, numKvHeads, headDim, type } = spec;
    const slot = numKvHeads * capacity * headDim;
    const bytesPerElement = type === 'float16' ? 2 : 4;
    this.buffer = pool.take(2 * numLayers * slot * bytesPerElement);
    const dims = [1, numKvHeads, capacity, headDim];
    const view = (i: number): ort.Tensor =>
      type === 'float16'
        ? new ort.Tensor('float16', new Uint16Array(this.buffer, i * slot * 2, slot), dims)
        : new ort.Tensor('float32', new Float32Array(this.buffer, i * slot * 4, slot), dims);
    this.layersCache = new KvCache(Array.from({ length: numLayers }, (_, layer) => ({ key: view(2 * layer), value: view(2 * layer + 1) })));
  }

  /**
   * The buffer as a [1, KV, capacity, D] past, rows after `length` zeroed (once; appends keep them so):
   * split decode attention (src/model/onnx/splitAttention.ts) masks those rows' scores but still
   * multiplies their values by a zero weight, which pooled memory holding NaN would turn into NaN.
   */
  get cache(): KvCache {
    if (!this.tailZeroed) {
      const { numKvHeads, headDim } = this.spec;
      for (const layer of this.layersCache.layers) {
        for (const tensor of [layer.key, layer.value]) {
          const data = tensor.data as Float32Array | Uint16Array;
          for (let h = 0; h < numKvHeads; h++) data.fill(0, (h * this.capacity + this.rows) * headDim, (h + 1) * this.capacity * headDim);
        }
      }
      this.tailZeroed = true;
    }
    return this.layersCache;
  }

  /** Rows filled so far (the past length to feed with `cache`). */
  get length(): number {
    return this.rows;
  }

  /** Copies `rows` ([1, KV, T, D] per layer, the KV type) in after the rows already here. */
  append(rows: KvCache): void {
    const { numKvHeads, headDim, numLayers } = this.spec;
    const count = rows.length;
    if (this.rows + count > this.capacity) throw new VigilError('INTERNAL', `KV buffer of ${this.capacity} rows cannot take ${count} more after ${this.rows}`);
    if (rows.layers.length !== numLayers) throw new VigilError('SHAPE_MISMATCH', `${rows.layers.length} layers appended to a ${numLayers}-layer KV buffer`);
    rows.layers.forEach((layer, i) => {
      const target = this.layersCache.layers[i]!;
      for (const kind of ['key', 'value'] as const) {
        const src = layer[kind].data as Float32Array | Uint16Array;
        const dst = target[kind].data as Float32Array | Uint16Array;
        if (src.constructor !== dst.constructor || layer[kind].dims[1] !== numKvHeads || layer[kind].dims[3] !== headDim) {
          throw new VigilError('SHAPE_MISMATCH', `appended layer ${i} ${kind} is ${layer[kind].type} [${layer[kind].dims.join(', ')}], the buffer holds ${target[kind].type} [1, ${numKvHeads}, T, ${headDim}]`);
        }
        for (let h = 0; h < numKvHeads; h++) {
          // Same element type on both sides (checked above): set() is a plain copy.
          (dst as Float32Array).set((src as Float32Array).subarray(h * count * headDim, (h + 1) * count * headDim), (h * this.capacity + this.rows) * headDim);
        }
      }
    });
    this.rows += count;
  }

  /** Gives the memory back to the pool: neither `cache` nor anything read from it may be used afterwards. */
  dispose(): void {
    this.pool.give(this.buffer);
  }
}

/**
 * Writes `past` then `rows` ([1, KV, P, D] and [1, KV, S, D] per layer) into `into` ([1, KV, P + S,
 * D], the same type): the context a graph that reads its whole past input (a Concat of the past,
 * not GroupQueryAttention) needs next, laid out in reused memory instead of fetched as `present`
 * (which onnxruntime-node copies into fresh memory, page faults included).
 */
export function concatKvInto(past: KvCache, rows: KvCache, into: KvCache): void {
  const total = past.length + rows.length;
  if (into.length !== total || into.layers.length !== past.layers.length || rows.layers.length !== past.layers.length) {
    throw new VigilError('SHAPE_MISMATCH', `cannot lay ${past.length} + ${rows.length} rows of ${past.layers.length} layers into ${into.length} rows of ${into.layers.length}`);
  }
  into.layers.forEach((target, i) => {
    for (const kind of ['key', 'value'] as const) {
      const dst = target[kind].data as Float32Array;
      const [, heads, , dim] = target[kind].dims as [number, number, number, number];
      const parts: Array<[Float32Array, number]> = [
        [past.layers[i]![kind].data as Float32Array, past.length],
        [rows.layers[i]![kind].data as Float32Array, rows.length],
      ];
      for (let h = 0; h < heads; h++) {
        let offset = h * total * dim;
        for (const [src, count] of parts) {
          // float16 bits travel as Uint16Array: set() copies either element type as it is.
          dst.set(src.subarray(h * count * dim, (h + 1) * count * dim), offset);
          offset += count * dim;
        }
      }
    }
  });
}
