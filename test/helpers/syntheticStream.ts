import fs from 'node:fs';
import { meanOverTokens } from '../../kernels/pool.js';
import { mulberry32 } from '../../kernels/sampling.js';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { SlidingWindow } from '../../memory/slidingWindow.js';
import { ChunkStore } from '../../memory/store/index.js';
import { StreamIndex } from '../../retrieval/index.js';

export interface SyntheticGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  tokensPerChunk: number;
}

export const SMOLVLM2_256M_CHUNK: SyntheticGeometry = { numLayers: 30, numKvHeads: 3, headDim: 64, tokensPerChunk: 74 };

export interface MemorySample {
  chunks: number;
  rssBytes: number;
  heapUsedBytes: number;
  arrayBuffersBytes: number;
  diskBytes: number;
  indexedChunks: number;
}

/**
 * The memory side of a stream without the model: chunks of real geometry (random KV, as the
 * encoder would allocate them) pushed through the sliding window, written through to a real chunk
 * store and added to a real retrieval index, exactly as StreamSession does. Samples resident memory
 * every `sampleEvery` chunks (after a GC when node runs with --expose-gc).
 */
export async function runSyntheticStream(options: {
  dir: string;
  geometry: SyntheticGeometry;
  chunks: number;
  windowFrames: number;
  sampleEvery: number;
  onSample?: (sample: MemorySample) => void;
}): Promise<MemorySample[]> {
  const { geometry: g } = options;
  const store = ChunkStore.open({ dir: options.dir, geometry: g, fsync: { intervalMs: 1000 } });
  const index = StreamIndex.create({ numLayers: g.numLayers, dim: g.numKvHeads * g.headDim });
  const window = new SlidingWindow({ sinkFrames: 1, windowFrames: options.windowFrames });
  const nextChunk = syntheticChunks(g);
  const samples: MemorySample[] = [];
  const pending = new Set<Promise<void>>();
  try {
    for (let id = 0; id < options.chunks; id++) {
      const chunk: FrameChunk = { chunkId: id, ...nextChunk(id) };
      // As StreamSession does: the payload is written now, the index follows the manifest commit.
      pending.add(store.append(chunk).then(() => index.addChunk(chunk.chunkId, chunk.tStart, chunk.tEnd, chunk.representatives)));
      window.push(chunk);
      // A real encoder yields to the event loop (onnxruntime calls are async), which lets group
      // commits and their timers run; without this the loop would hold every pending record.
      await new Promise((resolve) => setImmediate(resolve));
      if ((id + 1) % options.sampleEvery === 0) {
        await store.flush();
        await Promise.all(pending);
        pending.clear();
        (globalThis as { gc?: () => void }).gc?.();
        const usage = process.memoryUsage();
        const sample = {
          chunks: id + 1,
          rssBytes: usage.rss,
          heapUsedBytes: usage.heapUsed,
          arrayBuffersBytes: usage.arrayBuffers,
          diskBytes: store.stats().segmentBytes,
          indexedChunks: index.size,
        };
        samples.push(sample);
        options.onSample?.(sample);
      }
    }
    await Promise.all(pending);
  } finally {
    await store.dispose();
  }
  return samples;
}

/**
 * A source of frame chunks of real geometry with random KV, fresh arrays per chunk as the encoder
 * allocates them (values vary by an offset into a template, so making them costs little), and
 * representatives computed from the keys as the engine does.
 */
export function syntheticChunks(g: SyntheticGeometry, seed = 1): (t: number) => Omit<FrameChunk, 'chunkId'> {
  const random = mulberry32(seed);
  const perLayer = g.numKvHeads * g.tokensPerChunk * g.headDim;
  const template = Float32Array.from({ length: perLayer * 4 }, () => random() * 2 - 1);
  const slice = () => {
    const start = Math.floor(random() * perLayer * 3);
    return template.slice(start, start + perLayer);
  };
  return (t) => {
    const keys = Array.from({ length: g.numLayers }, slice);
    return {
      tStart: t,
      tEnd: t,
      wallTime: Date.now(),
      tokenCount: g.tokensPerChunk,
      numLayers: g.numLayers,
      numKvHeads: g.numKvHeads,
      headDim: g.headDim,
      keys,
      values: Array.from({ length: g.numLayers }, slice),
      representatives: keys.map((k) => meanOverTokens(k, g.numKvHeads, g.tokensPerChunk, g.headDim)),
    };
  };
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
