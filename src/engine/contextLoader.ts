import { assembleLayeredContext, type LayeredContext, type LayerSlice, layerSlice } from '../../memory/contextAssembler.js';
import type { ContextWindow } from '../../memory/contextWindow.js';
import type { ChunkFailure, ChunkLayers } from '../../memory/store/index.js';
import { invariant, VigilError } from '../../common/errors.js';
import { sharedBufferPool } from '../model/bufferPool.js';

/**
 * A question's chunk choice, per layer (the same count on every layer, so every layer's context
 * has the same length). Opaque to the question path: it only hands it from select() to load().
 */
export interface Selection {
  /** chunkIds[layer] = the chunks chosen for that layer (any order). */
  readonly chunkIds: readonly (readonly number[])[];
  /** scores[layer][i] = score of chunkIds[layer][i] (0 for a fixed set). */
  readonly scores: readonly (readonly number[])[];
  /** The same choice made again without some chunks (retrieval), or null for a fixed set (baselines). */
  readonly reselect: ((without: ReadonlySet<number>) => Promise<Selection>) | null;
}

/** A fixed chunk set for every layer (baselines: full, uniform, oracle); a damaged chunk is simply left out. */
export function fixedSelection(ids: readonly number[], numLayers: number): Selection {
  const unique = [...new Set(ids)];
  return { chunkIds: Array.from({ length: numLayers }, () => unique), scores: Array.from({ length: numLayers }, () => unique.map(() => 0)), reselect: null };
}

export interface Evidence {
  chunkId: number;
  tStart: number;
  tEnd: number;
  /** Layers that retrieved this chunk, and the mean score over them. */
  layers: number;
  meanScore: number;
}

/** A chunk a question chose but could not read (damaged on disk): left out of the answer. */
export interface SkippedChunk {
  chunkId: number;
  /** Its stream time where the manifest still knows it, else null. */
  t: number | null;
  reason: string;
}

/** Layers of chunks read for one question: valid until release(). */
export interface ReadLayers {
  chunks: ReadonlyMap<number, ChunkLayers>;
  failed: readonly ChunkFailure[];
  release(): void;
}

/** A question's assembled context: [prefix | sinks | chosen chunks (| window)] per layer, in pooled memory until dispose(). */
export interface LoadedContext extends Disposable {
  context: LayeredContext;
  /** The chunks in each layer's context besides sinks (and window), after damaged ones were left out. */
  layerChunkIds: number[][];
  evidence: Evidence[];
  skipped: SkippedChunk[];
  chunkLoadMs: number;
  assembleMs: number;
  dispose(): void;
}

/** Rounds of re-selection after damaged chunks: each round leaves every chunk that failed so far out. */
const MAX_RESELECTS = 3;

/**
 * One layer's answer context (pass 2), at compact positions 0..N-1; every layer has the same N
 * (one attention mask), but each layer its own chosen chunks:
 *
 *   0          P            P+S                          P+S+R            N
 *   | prefix   | sink frames | chosen chunks, time order  | window frames  |
 *   | text (P) | (S tokens)  | this layer's (R tokens)    | if included    | + question, answer
 *
 * Keys are stored pre-RoPE and rotated here to these positions, so a chunk lands wherever its
 * layer's choice puts it. test/engine/contextLayout.test.ts checks this picture.
 *
 * Reads the selection's chunks (only the layers each is chosen for) and lays every layer's context
 * out at compact positions. A chunk that cannot be read is left out and reported: a retrieved
 * selection is made again without it (so every layer keeps r chunks and one length), a fixed one
 * just drops it.
 */
export async function loadContext(
  window: ContextWindow,
  first: Selection,
  includeWindow: boolean,
  read: (wanted: ReadonlyMap<number, readonly number[]>) => Promise<ReadLayers>,
  timeOf: (chunkId: number) => number | null = () => null,
): Promise<LoadedContext> {
  const started = performance.now();
  const { loaded, selection, skipped } = await readSkippingDamaged(first, read, timeOf);
  const chunkLoadMs = performance.now() - started;
  const layerChunkIds = selection.chunkIds.map((ids) => [...ids]);
  const { shape } = window;
  let buffer: ArrayBuffer | undefined;
  try {
    const lengths = new Set(layerChunkIds.map((ids) => ids.reduce((n, id) => n + (loaded.chunks.get(id)?.tokenCount ?? 0), 0)));
    if (lengths.size > 1) throw new VigilError('STORE_CORRUPT', `chunks ${[...skipped.keys()].join(', ')} are damaged and no equal-length context could be chosen without them; run vigil store repair`);
    const perLayer = layerChunkIds.map((ids, layer) => [
      ...window.sinkChunks.map((c) => layerSlice(c, layer)),
      ...ids.map((id): LayerSlice => {
        const chunk = loaded.chunks.get(id);
        const data = chunk?.layers.get(layer);
        invariant(chunk && data, () => `chunk ${id} layer ${layer} was read but is missing`);
        return { chunkId: id, tStart: chunk.tStart, tokenCount: chunk.tokenCount, key: data.key, value: data.value };
      }),
      ...(includeWindow ? window.windowChunks.map((c) => layerSlice(c, layer)) : []),
    ]);
    // The per-layer context (~200 MiB at r = 64 and smolvlm2-256m geometry) lives in pooled memory
    // for the length of the answer; the layers read for it go back to the pool once it is built.
    const tokens = window.prefix.tokenCount + (perLayer[0] ?? []).reduce((n, c) => n + c.tokenCount, 0);
    const taken = sharedBufferPool.take(shape.kvBytes(tokens));
    buffer = taken;
    let used = 0;
    const context = assembleLayeredContext(window.prefix, perLayer, shape, (floats) => {
      const view = new Float32Array(taken, used * 4, floats);
      used += floats;
      return view;
    });
    const evidence = collectEvidence(selection, loaded.chunks);
    let disposed = false;
    const dispose = () => {
      if (disposed) return;
      disposed = true;
      sharedBufferPool.give(taken);
    };
    buffer = undefined;
    return {
      context,
      layerChunkIds,
      evidence,
      skipped: [...skipped.values()].sort((a, b) => a.chunkId - b.chunkId),
      chunkLoadMs,
      assembleMs: performance.now() - started - chunkLoadMs,
      dispose,
      [Symbol.dispose]: dispose,
    };
  } finally {
    loaded.release();
    if (buffer) sharedBufferPool.give(buffer);
  }
}

/** Reads the selection; each chunk that fails is left out (re-selecting where the selection can), until a read succeeds. */
async function readSkippingDamaged(
  first: Selection,
  read: (wanted: ReadonlyMap<number, readonly number[]>) => Promise<ReadLayers>,
  timeOf: (chunkId: number) => number | null,
): Promise<{ loaded: ReadLayers; selection: Selection; skipped: Map<number, SkippedChunk> }> {
  const skipped = new Map<number, SkippedChunk>();
  let selection = first;
  for (let round = 0; ; round++) {
    const loaded = await read(wantedLayers(selection));
    if (loaded.failed.length === 0) return { loaded, selection, skipped };
    loaded.release();
    for (const f of loaded.failed) skipped.set(f.chunkId, { chunkId: f.chunkId, t: timeOf(f.chunkId), reason: f.message || f.reason });
    const without = new Set(skipped.keys());
    selection = selection.reselect && round < MAX_RESELECTS ? await selection.reselect(without) : dropChunks(selection, without);
  }
}

/** Chunk id -> the layers it is chosen for. */
function wantedLayers(selection: Selection): Map<number, number[]> {
  const wanted = new Map<number, number[]>();
  selection.chunkIds.forEach((ids, layer) => {
    for (const id of ids) {
      const layers = wanted.get(id) ?? [];
      if (layers.at(-1) !== layer) layers.push(layer);
      wanted.set(id, layers);
    }
  });
  return wanted;
}

/**
 * The selection without some chunks. For a fixed set (the same ids on every layer) every layer
 * keeps one length; a retrieved set that still fails after its re-selections may not, and then
 * assembly refuses it (STORE_CORRUPT).
 */
function dropChunks(selection: Selection, without: ReadonlySet<number>): Selection {
  const kept = selection.chunkIds.map((ids) => ids.flatMap((id, i) => (without.has(id) ? [] : [i])));
  return {
    chunkIds: kept.map((list, layer) => list.map((i) => selection.chunkIds[layer]![i]!)),
    scores: kept.map((list, layer) => list.map((i) => selection.scores[layer]?.[i] ?? 0)),
    reselect: null,
  };
}

function collectEvidence(selection: Selection, chunks: ReadonlyMap<number, Pick<ChunkLayers, 'tStart' | 'tEnd'>>): Evidence[] {
  const byId = new Map<number, { layers: number; total: number }>();
  selection.chunkIds.forEach((ids, layer) =>
    ids.forEach((id, i) => {
      const entry = byId.get(id) ?? { layers: 0, total: 0 };
      entry.layers += 1;
      entry.total += selection.scores[layer]?.[i] ?? 0;
      byId.set(id, entry);
    }),
  );
  return [...byId.entries()]
    .map(([chunkId, { layers, total }]) => {
      const chunk = chunks.get(chunkId);
      invariant(chunk, () => `evidence chunk ${chunkId} was not loaded`);
      return { chunkId, tStart: chunk.tStart, tEnd: chunk.tEnd, layers, meanScore: total / layers };
    })
    .sort((a, b) => a.tStart - b.tStart || a.chunkId - b.chunkId);
}
