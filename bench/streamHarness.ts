/**
 * Shared by the long-stream benchmarks: fast-forwarding a real StreamSession through stream time
 * with synthetic frame chunks (real geometry, random KV) that go through the same write-through
 * path as encoded frames (window, store, index), and sampling resident memory and disk on the way.
 * On 2 cores the probe model encodes a frame in ~2 s, so an hour of stream would take two hours;
 * fast-forwarding puts the store and index at the size an hour of stream gives them in about a
 * minute, and the measured stretches then run the whole pipeline on real frames.
 */
import type { StreamSession } from '../src/engine/streamSession.js';
import { syntheticChunks } from '../test/helpers/syntheticStream.js';

export interface MemoryPoint {
  /** Stream time in seconds. */
  streamS: number;
  chunks: number;
  rssBytes: number;
  diskBytes: number;
}

export function memoryPoint(session: StreamSession): MemoryPoint {
  const stats = session.stats();
  return { streamS: stats.lastFrameTime ?? 0, chunks: stats.storedChunks, rssBytes: process.memoryUsage().rss, diskBytes: stats.storedBytes };
}

/** Stream time of the next frame at `fps` after what the session holds. */
export function nextFrameTime(session: StreamSession, fps: number): number {
  const last = session.stats().lastFrameTime;
  return last === null ? 0 : Math.round((last + 1 / fps) * 1000) / 1000;
}

/**
 * Commits synthetic frames at `fps` until stream time `untilS` (exclusive), each with as many
 * tokens as an encoded frame at that time would have, sampling memory every `sampleEveryS`.
 */
export async function fastForward(
  session: StreamSession,
  untilS: number,
  fps: number,
  options: { sampleEveryS?: number; onSample?: (point: MemoryPoint) => void; seed?: number } = {},
): Promise<void> {
  const { numLayers, numKvHeads, headDim } = session.encoder.shape;
  const sampleEvery = options.sampleEveryS ?? 60;
  const chunkSources = new Map<number, ReturnType<typeof syntheticChunks>>();
  let t = nextFrameTime(session, fps);
  let nextSample = Math.ceil(t / sampleEvery) * sampleEvery;
  while (t < untilS) {
    const tokensPerChunk = session.encoder.frameTokenIds(t).length;
    let source = chunkSources.get(tokensPerChunk);
    if (!source) {
      source = syntheticChunks({ numLayers, numKvHeads, headDim, tokensPerChunk }, (options.seed ?? 1) + tokensPerChunk);
      chunkSources.set(tokensPerChunk, source);
    }
    await session.addEncodedChunk(source(t));
    // An encoding stream yields to the event loop on every onnxruntime call; so does this loop,
    // which lets group commits and their timers run.
    await new Promise((resolve) => setImmediate(resolve));
    if (t >= nextSample) {
      await session.flush();
      options.onSample?.(memoryPoint(session));
      nextSample += sampleEvery;
    }
    t = Math.round((t + 1 / fps) * 1000) / 1000;
  }
  await session.flush();
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const mib = (bytes: number): number => bytes / 2 ** 20;

/** Checkpoint list like "5,15,30,60" (minutes, increasing). */
export function parseMinutes(text: string): number[] {
  const minutes = text.split(',').map((m) => Number(m.trim()));
  if (minutes.some((m) => !(m > 0)) || minutes.some((m, i) => i > 0 && m <= minutes[i - 1]!)) {
    throw new Error(`--minutes must be increasing positive numbers, got '${text}'`);
  }
  return minutes;
}
