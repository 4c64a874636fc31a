// One layer's files: meta.json plus either vectors.bin (exact) or hnswlib's graph file and the
// live ids beside it. Binary files are in host byte order (little-endian on every supported
// platform). A load returns exactly what was saved or throws INDEX_CORRUPT; it never hands
// hnswlib a file whose size differs from the one recorded at save (a truncated graph file can
// crash the library instead of throwing).
import { join } from 'node:path';
import { VigilError } from '../common/errors.js';
import { ExactStore } from './exactStore.js';
import { HnswStore } from './hnswStore.js';
import { resolveLayerOptions, type LayerIndexOptions, type ResolvedLayerOptions } from './layerOptions.js';
import { bytesOf, fileSize, float32At, readExact, readJsonObject, syncFile, uint32At, writeDurable } from './persist.js';
import { parseSpace } from './space.js';

const META_FILE = 'meta.json';
const VECTORS_FILE = 'vectors.bin';
const GRAPH_FILE = 'hnsw.bin';
const GRAPH_IDS_FILE = 'ids.bin';
const FORMAT = 'vigil-layer-index';
const VERSION = 1;

/** What a load may change without a rebuild. */
export type LayerTuning = Pick<LayerIndexOptions, 'hnswThreshold' | 'backfillPerAdd' | 'exactFilterLimit'> & { ef?: number };

export interface LayerStores {
  exact?: ExactStore;
  graph?: HnswStore;
}

export async function writeLayer(dir: string, options: ResolvedLayerOptions, stores: LayerStores): Promise<void> {
  const { exact, graph } = stores;
  const dim = options.dim;
  const meta: Record<string, unknown> = {
    format: FORMAT,
    version: VERSION,
    dim,
    space: options.space,
    count: exact ? exact.size : graph!.size,
    hnswThreshold: options.hnswThreshold === Infinity ? null : options.hnswThreshold,
    hnsw: { ...options.hnsw },
    backfillPerAdd: options.backfillPerAdd,
    exactFilterLimit: options.exactFilterLimit,
  };
  if (exact) {
    const ids = exact.ids();
    const data = new Uint8Array(ids.length * 4 * (1 + dim));
    data.set(bytesOf(ids), 0);
    for (let row = 0; row < ids.length; row++) data.set(bytesOf(exact.rowVector(row)), ids.length * 4 + row * dim * 4);
    await writeDurable(join(dir, VECTORS_FILE), data);
    meta.storage = 'exact';
  } else {
    await writeDurable(join(dir, GRAPH_IDS_FILE), bytesOf(graph!.liveIds()));
    const file = join(dir, GRAPH_FILE);
    await graph!.save(file);
    await syncFile(file);
    meta.storage = 'hnsw';
    meta.offset = Array.from(graph!.offset);
    meta.graphBytes = await fileSize(file);
  }
  // Written last, so a folder whose write was cut short has no meta and fails to load.
  await writeDurable(join(dir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
}

/** The options (saved structure + caller's tuning) and the store read from `dir`. */
export async function readLayer(
  dir: string,
  tuning: LayerTuning,
  expect: { dim?: number; space?: string },
): Promise<{ options: ResolvedLayerOptions } & LayerStores> {
  const metaFile = join(dir, META_FILE);
  const meta = await readJsonObject(metaFile);
  const corrupt = (why: string): VigilError => new VigilError('INDEX_CORRUPT', `${metaFile}: ${why}`);
  if (meta.format !== FORMAT) throw corrupt(`not a Vigil layer index (format ${JSON.stringify(meta.format)})`);
  if (meta.version !== VERSION) throw corrupt(`unsupported version ${JSON.stringify(meta.version)}`);
  const { dim, count } = meta;
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1) throw corrupt('bad dim');
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) throw corrupt('bad count');
  let space;
  try {
    space = parseSpace(meta.space);
  } catch {
    throw corrupt(`unknown space ${JSON.stringify(meta.space)}`);
  }
  if (expect.dim !== undefined && expect.dim !== dim) throw new VigilError('BAD_CONFIG', `${dir} holds ${dim}-d vectors, expected ${expect.dim}`);
  if (expect.space !== undefined && parseSpace(expect.space) !== space) {
    throw new VigilError('BAD_CONFIG', `${dir} was built for space '${space}', expected '${expect.space}': rebuild the index to change it`);
  }
  const hnsw = meta.hnsw as Record<string, unknown> | undefined;
  if (typeof hnsw !== 'object' || hnsw === null) throw corrupt('missing hnsw parameters');
  let saved: ResolvedLayerOptions;
  try {
    saved = resolveLayerOptions({
      dim,
      space,
      hnswThreshold: meta.hnswThreshold === null ? Infinity : (meta.hnswThreshold as number),
      hnsw: { m: hnsw.m as number, efConstruction: hnsw.efConstruction as number, seed: hnsw.seed as number, ef: hnsw.ef as number },
      backfillPerAdd: meta.backfillPerAdd as number,
      exactFilterLimit: meta.exactFilterLimit as number,
    });
  } catch (error) {
    throw corrupt((error as Error).message);
  }
  // Tuning errors are the caller's (BAD_CONFIG), not the file's.
  const options = resolveLayerOptions({
    ...saved,
    hnswThreshold: tuning.hnswThreshold ?? saved.hnswThreshold,
    backfillPerAdd: tuning.backfillPerAdd ?? saved.backfillPerAdd,
    exactFilterLimit: tuning.exactFilterLimit ?? saved.exactFilterLimit,
    hnsw: { ...saved.hnsw, ef: tuning.ef ?? saved.hnsw.ef },
  });

  if (meta.storage === 'exact') {
    const data = await readExact(join(dir, VECTORS_FILE), count * 4 * (1 + dim));
    const ids = uint32At(data, 0, count);
    const vectors = float32At(data, count * 4, count * dim);
    const exact = new ExactStore(dim, space, count);
    for (let row = 0; row < count; row++) {
      if (row > 0 && ids[row]! <= ids[row - 1]!) throw corrupt('vector ids are not ascending');
      const v = vectors.subarray(row * dim, (row + 1) * dim);
      for (let i = 0; i < dim; i++) if (!Number.isFinite(v[i])) throw corrupt(`chunk ${ids[row]} has a non-finite value`);
      exact.add(ids[row]!, v);
    }
    return { options, exact };
  }
  if (meta.storage === 'hnsw') {
    const offset = meta.offset;
    if (!Array.isArray(offset) || offset.length !== dim || !offset.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw corrupt('bad graph offset');
    }
    const graphFile = join(dir, GRAPH_FILE);
    if ((await fileSize(graphFile)) !== meta.graphBytes) throw corrupt(`${GRAPH_FILE} does not have the size recorded at save`);
    const ids = uint32At(await readExact(join(dir, GRAPH_IDS_FILE), count * 4), 0, count);
    try {
      const graph = await HnswStore.load(graphFile, space, dim, options.hnsw, Float32Array.from(offset as number[]), ids);
      return { options, graph };
    } catch (error) {
      throw new VigilError('INDEX_CORRUPT', `${graphFile}: ${(error as Error).message}`, { cause: error });
    }
  }
  throw corrupt(`unknown storage ${JSON.stringify(meta.storage)}`);
}
