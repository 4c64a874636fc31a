import { float32ToFloat16 } from '../kernels/fp16.js';
import { rotateBlockInto } from '../kernels/rope.js';
import { type AssembledContext, checkChunkGeometry, type KvGeometry, type PrefixBlock, timeOrder } from './contextAssembler.js';
import type { FrameChunk } from './frameChunk.js';
import { writeTokens } from './kvLayout.js';

export interface LaidOutContext extends AssembledContext {
  /** float16 bits of keys/values, kept in step with the float32 arrays, when the layout is for a float16 decoder. */
  keys16: Uint16Array[] | undefined;
  values16: Uint16Array[] | undefined;
}

/**
 * The encoder's context [prefix | sinks | window] at compact positions, kept laid out between
 * frames. Each new frame shifts the window, so the window's keys are rotated to their new
 * positions again, but straight from the pre-RoPE chunks into buffers that are reused (no ~60 MB
 * of fresh arrays per frame at smolvlm2-256m geometry); the prefix and the sinks, whose positions
 * do not change, are written once; for a float16 decoder only the rewritten spans are converted.
 * The result is bit-identical to assembleContext. The arrays returned belong to the layout and are
 * overwritten by the next layout() call: use them for one decoder call.
 */
export class WindowLayout {
  private length = -1;
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private keys16: Uint16Array[] | undefined;
  private values16: Uint16Array[] | undefined;
  /** Where each chunk laid out now starts (by object: a chunk re-read from disk is laid out anew). */
  private placed = new Map<FrameChunk, number>();

  constructor(
    private readonly prefix: PrefixBlock,
    private readonly geo: KvGeometry,
    private readonly float16 = false,
  ) {}

  /** Lays out [prefix | chunks in time order], rewriting only what moved since the last call. */
  layout(chunks: readonly FrameChunk[]): LaidOutContext {
    const ordered = timeOrder(chunks);
    for (const chunk of ordered) checkChunkGeometry(chunk, this.geo);
    const length = this.prefix.tokenCount + ordered.reduce((n, c) => n + c.tokenCount, 0);
    if (length !== this.length) this.allocate(length);
    const placed = new Map<FrameChunk, number>();
    const spans: AssembledContext['spans'] = [];
    let position = this.prefix.tokenCount;
    for (const chunk of ordered) {
      if (this.placed.get(chunk) !== position) this.write(chunk.keys, chunk.values, chunk.tokenCount, position);
      placed.set(chunk, position);
      spans.push({ chunkId: chunk.chunkId, start: position, end: position + chunk.tokenCount });
      position += chunk.tokenCount;
    }
    this.placed = placed;
    return { keys: this.keys, values: this.values, keys16: this.keys16, values16: this.values16, length, spans };
  }

  private allocate(length: number): void {
    const { numLayers, numKvHeads: heads, headDim } = this.geo;
    const size = heads * length * headDim;
    this.length = length;
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(size));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(size));
    this.keys16 = this.float16 ? Array.from({ length: numLayers }, () => new Uint16Array(size)) : undefined;
    this.values16 = this.float16 ? Array.from({ length: numLayers }, () => new Uint16Array(size)) : undefined;
    this.placed = new Map();
    if (this.prefix.tokenCount > 0) this.write(this.prefix.keys, this.prefix.values, this.prefix.tokenCount, 0);
  }

  /** One block (pre-RoPE keys, values per layer) rotated to `start` and written at `start`. */
  private write(keys: readonly Float32Array[], values: readonly Float32Array[], tokens: number, start: number): void {
    const { numLayers, numKvHeads: heads, headDim } = this.geo;
    const total = this.length;
    for (let layer = 0; layer < numLayers; layer++) {
      rotateBlockInto(keys[layer]!, heads, tokens, headDim, start, this.geo.invFreq, this.keys[layer]!, total, start);
      writeTokens(this.values[layer]!, heads, total, headDim, start, values[layer]!, tokens);
      if (!this.keys16 || !this.values16) continue;
      for (let h = 0; h < heads; h++) {
        const from = (h * total + start) * headDim;
        const to = from + tokens * headDim;
        float32ToFloat16(this.keys[layer]!.subarray(from, to), this.keys16[layer]!.subarray(from, to));
        float32ToFloat16(this.values[layer]!.subarray(from, to), this.values16[layer]!.subarray(from, to));
      }
    }
  }
}
