// A stream index folder: index.json (written last), chunks.bin (the catalog) and one folder per
// layer (layerFiles.ts). A save is written into a staging folder and swapped in by rename, so a
// crash leaves the old index or none, never a mix; a load checks that every layer holds exactly
// the catalogued chunks.
import { availableParallelism } from 'node:os';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../common/errors.js';
import { ChunkCatalog } from './chunkCatalog.js';
import { LayerIndex } from './layerIndex.js';
import { readJsonObject, replaceFolder, stagingFolder, writeDurable } from './persist.js';
import { parseSpace, type SimilaritySpace } from './space.js';
import type { SealingOptions } from './chunkSealer.js';
import type { SealedListing } from './sealedTier.js';

const INDEX_FILE = 'index.json';
const CHUNKS_FILE = 'chunks.bin';
const FORMAT = 'vigil-stream-index';
const VERSION = 1;

/** Load-time checks (what the caller requires) and tuning that may differ from the saved values. */
export interface StreamIndexLoadOptions {
  numLayers?: number;
  dim?: number;
  space?: SimilaritySpace;
  ef?: number;
  hnswThreshold?: number;
  backfillPerAdd?: number;
  exactFilterLimit?: number;
  /** Where the sealed blocks are (required when the saved index lists any). */
  sealing?: SealingOptions;
}

export interface StreamShape {
  numLayers: number;
  dim: number;
  space: SimilaritySpace;
}

function layerFolder(dir: string, layer: number): string {
  return join(dir, `layer-${String(layer).padStart(3, '0')}`);
}

export async function writeStream(dir: string, shape: StreamShape, catalog: ChunkCatalog, layers: readonly LayerIndex[], sealed?: readonly SealedListing[]): Promise<void> {
  const staging = await stagingFolder(dir);
  try {
    await writeDurable(join(staging, CHUNKS_FILE), catalog.serialize());
    for (let layer = 0; layer < layers.length; layer++) {
      const folder = layerFolder(staging, layer);
      await mkdir(folder);
      await layers[layer]!.save(folder);
    }
    // The sealed blocks this save stands on (their files live beside the index folder).
    const meta = { format: FORMAT, version: VERSION, ...shape, count: catalog.size, ...(sealed && sealed.length > 0 ? { sealed } : {}) };
    // Written last: a staging folder without it is never mistaken for an index.
    await writeDurable(join(staging, INDEX_FILE), `${JSON.stringify(meta, null, 2)}\n`);
    await replaceFolder(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

function parseListing(value: unknown, corrupt: (why: string) => VigilError): SealedListing[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw corrupt('bad sealed block list');
  return value.map((item: unknown) => {
    const x = item as { file?: unknown; dead?: unknown };
    if (typeof x !== 'object' || x === null || typeof x.file !== 'string' || !/^block-[\w-]+\.bin$/.test(x.file) || !Array.isArray(x.dead) || !x.dead.every((id) => Number.isInteger(id) && (id as number) >= 0)) {
      throw corrupt('bad sealed block entry');
    }
    return { file: x.file, dead: x.dead as number[] };
  });
}

export async function readStream(dir: string, options: StreamIndexLoadOptions): Promise<{ layers: LayerIndex[]; catalog: ChunkCatalog; sealed: SealedListing[] }> {
  const file = join(dir, INDEX_FILE);
  const meta = await readJsonObject(file);
  const corrupt = (why: string): VigilError => new VigilError('INDEX_CORRUPT', `${file}: ${why}`);
  if (meta.format !== FORMAT) throw corrupt(`not a Vigil stream index (format ${JSON.stringify(meta.format)})`);
  if (meta.version !== VERSION) throw corrupt(`unsupported version ${JSON.stringify(meta.version)}`);
  const { numLayers, dim, count } = meta;
  for (const [name, value, min] of [['numLayers', numLayers, 1], ['dim', dim, 1], ['count', count, 0]] as const) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) throw corrupt(`bad ${name}`);
  }
  let space: SimilaritySpace;
  try {
    space = parseSpace(meta.space);
  } catch {
    throw corrupt(`unknown space ${JSON.stringify(meta.space)}`);
  }
  const expectSpace = options.space === undefined ? undefined : parseSpace(options.space);
  if (options.numLayers !== undefined && options.numLayers !== numLayers) throw new VigilError('BAD_CONFIG', `${dir} has ${numLayers} layers, expected ${options.numLayers}`);
  if (options.dim !== undefined && options.dim !== dim) throw new VigilError('BAD_CONFIG', `${dir} holds ${dim}-d vectors, expected ${options.dim}`);
  if (expectSpace !== undefined && expectSpace !== space) {
    throw new VigilError('BAD_CONFIG', `${dir} was built for space '${space}', expected '${expectSpace}': rebuild the index to change it`);
  }
  const sealed = parseListing(meta.sealed, corrupt);
  const catalog = await ChunkCatalog.load(join(dir, CHUNKS_FILE), count as number);
  const ids = catalog.allIds();
  const tuning = { ef: options.ef, hnswThreshold: options.hnswThreshold, backfillPerAdd: options.backfillPerAdd, exactFilterLimit: options.exactFilterLimit };
  const loadLayer = async (layer: number): Promise<LayerIndex> => {
    const loaded = await LayerIndex.load(layerFolder(dir, layer), tuning, { dim: dim as number, space });
    const layerIds = loaded.ids();
    if (layerIds.length !== ids.length || layerIds.some((id, i) => id !== ids[i])) {
      throw new VigilError('INDEX_CORRUPT', `${layerFolder(dir, layer)} does not hold the chunks listed in ${CHUNKS_FILE}`);
    }
    return loaded;
  };
  // hnswlib reads each graph on a worker thread: layers load side by side, one per core (a
  // million-chunk graph takes seconds to read; one after another, a restart waits for their sum).
  const layers: LayerIndex[] = new Array<LayerIndex>(numLayers as number);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < layers.length) {
      const layer = next++;
      try {
        layers[layer] = await loadLayer(layer);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const parallel = Math.max(1, Math.min(layers.length, availableParallelism()));
  await Promise.all(Array.from({ length: parallel }, worker));
  return { layers, catalog, sealed };
}
