import ort from 'onnxruntime-node';
import type { BufferPool } from './bufferPool.js';
import { KvCache, type KvSpec } from './kvCache.js';

/**
 * Two KV caches' worth of pooled memory that successive decoder calls alternate between: call i
 * reads its past from one set and writes `present` (one token longer) into the other. Each set is
 * one buffer with a fixed slot per layer's key and value, sized for `capacity` tokens; a cache of
 * length T is a view of the first KV x T x D elements of each slot.
 */
export class PresentBuffers {
  private readonly sets: ArrayBuffer[];
  private readonly slotElements: number;
  private next = 0;

  constructor(
    private readonly spec: KvSpec,
    readonly capacity: number,
    private readonly pool: BufferPool,
    /** 2 for a decode loop; 1 for a single call (every take() returns the same set). */
    sets: 1 | 2 = 2,
  ) {
    this.slotElements = spec.numKvHeads * capacity * spec.headDim;
    const bytes = 2 * spec.numLayers * this.slotElements * this.bytesPerElement;
    this.sets = Array.from({ length: sets }, () => pool.take(bytes));
  }

  private get bytesPerElement(): number {
    return this.spec.type === 'float16' ? 2 : 4;
  }

  /** The set not holding the last one returned (with two sets), as a cache of `length` tokens. */
  take(length: number): KvCache {
    if (!Number.isInteger(length) || length < 0 || length > this.capacity) throw new RangeError(`present of ${length} tokens does not fit ${this.capacity}`);
    const buffer = this.sets[this.next]!;
    this.next = (this.next + 1) % this.sets.length;
    const { numKvHeads, headDim, numLayers, type } = this.spec;
    const dims = [1, numKvHeads, length, headDim];
    const count = numKvHeads * length * headDim;
    const view = (slot: number): ort.Tensor => {
      const offset = slot * this.slotElements * this.bytesPerElement;
      return type === 'float16' ? new ort.Tensor('float16', new Uint16Array(buffer, offset, count), dims) : new ort.Tensor('float32', new Float32Array(buffer, offset, count), dims);
    };
    return new KvCache(Array.from({ length: numLayers }, (_, layer) => ({ key: view(2 * layer), value: view(2 * layer + 1) })));
  }

  /** Gives the memory back to the pool: no cache taken from here may be used afterwards. */
  release(): void {
    for (const buffer of this.sets) this.pool.give(buffer);
  }
}
