// One sealed block of the index: a run of older chunks written once to its own file and never
// changed, so the index's RAM does not grow with history (docs/retrieval.md, "Sealed blocks").
// Per layer the block's representatives are grouped by k-means into lists; RAM keeps only each
// list's centroid (int8) and where the list lies in the file. A search scores the centroids and
// reads only the lists that score best: ids, int8 codes and scales, one contiguous read per list.
//
// File (host byte order, every section 8-byte aligned):
//   header   64 B: magic 'VGSEAL01', version, numLayers, dim, count, lists, space, crc32 of the
//                  rest of the file, tMin (f64), tMax (f64), firstId, lastId
//   members  ids u32[count] ascending, tStart f64[count], tEnd f64[count]
//   tables   per layer: centroid codes i8[lists*dim], centroid scales f32[lists],
//            listStart u32[lists+1], listCrc u32[lists] (crc32 of the list's ids, scales, codes)
//   data     per layer, list after list (one read each): ids u32[n], scales f32[n], codes i8[n*dim]
// The header's crc32 covers everything up to the end of the tables (the part read at open, with
// the crc field read as zero); each list is checked by its own crc when a search reads it.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import zlib from 'node:zlib';
import { crc32 as crc32Js } from '../kernels/checksum.js';
import { dotRowsInt8, quantizeRowsInt8 } from '../kernels/int8Rows.js';
import { kMeans } from '../kernels/kmeans.js';
import { VigilError } from '../common/errors.js';
import type { SimilaritySpace } from './space.js';

const MAGIC = 'VGSEAL01';
const VERSION = 1;
const HEADER_BYTES = 64;
const KMEANS_ITERATIONS = 6;

export interface BlockInput {
  /** Ascending. */
  ids: Uint32Array;
  tStart: Float64Array;
  tEnd: Float64Array;
  /** Per layer, [count, dim] packed, row i belongs to ids[i]. */
  vectors: Float32Array[];
}

/** Where one layer's sections lie in the file, and its centroids (kept in RAM). */
export interface BlockLayer {
  centroidCodes: Int8Array;
  centroidScales: Float32Array;
  listStart: Uint32Array;
  listCrc: Uint32Array;
  /** Start of the layer's list data; list c starts listStart[c] * (8 + dim) bytes into it. */
  dataOffset: number;
}

export interface BlockHeader {
  numLayers: number;
  dim: number;
  count: number;
  lists: number;
  space: SimilaritySpace;
  tMin: number;
  tMax: number;
  firstId: number;
  lastId: number;
}

/** One list's members as read from the file. */
export interface ListRows {
  ids: Uint32Array;
  scales: Float32Array;
  codes: Int8Array;
}

export interface BlockMembers {
  ids: Uint32Array;
  tStart: Float64Array;
  tEnd: Float64Array;
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/**
 * CRC-32 of bytes [offset, offset + length): node:zlib's (hardware-assisted, ~10x faster) where the
 * runtime has it (Node >= 20.15), else kernels/checksum.ts, the same function.
 */
const zlibCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
function crc32(data: Uint8Array, previous = 0, offset = 0, length = data.length - offset): number {
  if (!zlibCrc32) return crc32Js(data, previous, offset, length);
  return zlibCrc32(offset === 0 && length === data.length ? data : data.subarray(offset, offset + length), previous);
}

interface Layout {
  membersOffset: number;
  layers: { centroidCodes: number; centroidScales: number; listStart: number; listCrc: number; data: number }[];
  /** End of the part read at open (header, members, every layer's tables). */
  tablesEnd: number;
  bytes: number;
}

function layout(numLayers: number, dim: number, count: number, lists: number): Layout {
  let at = HEADER_BYTES;
  const membersOffset = at;
  at = align8(at + count * 4);
  at = align8(at + count * 16);
  const tables: { centroidCodes: number; centroidScales: number; listStart: number; listCrc: number }[] = [];
  for (let l = 0; l < numLayers; l++) {
    const centroidCodes = at;
    at = align8(at + lists * dim);
    const centroidScales = at;
    at = align8(at + lists * 4);
    const listStart = at;
    at = align8(at + (lists + 1) * 4);
    const listCrc = at;
    at = align8(at + lists * 4);
    tables.push({ centroidCodes, centroidScales, listStart, listCrc });
  }
  const tablesEnd = at;
  const layers: Layout['layers'] = [];
  for (let l = 0; l < numLayers; l++) {
    const data = at;
    at = align8(at + count * (8 + dim));
    layers.push({ ...tables[l]!, data });
  }
  return { membersOffset, layers, tablesEnd, bytes: at };
}

/** Cosine blocks hold unit vectors, so a dot product is the cosine. */
export function normalizeRows(data: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += data[r * dim + i]! * data[r * dim + i]!;
    if (s === 0) continue;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < dim; i++) data[r * dim + i]! *= inv;
  }
}

/**
 * Serializes a block: k-means per layer (lists = ceil(count / listChunks)), members grouped by
 * list and quantized. `yieldEvery` is awaited between layers (k-means over thousands of rows takes
 * tens of milliseconds per layer; a live stream must keep its event loop).
 */
export async function encodeBlock(input: BlockInput, options: { dim: number; space: SimilaritySpace; listChunks: number; seed: number }, yieldEvery: () => Promise<void>): Promise<Uint8Array> {
  const count = input.ids.length;
  const { dim } = options;
  const numLayers = input.vectors.length;
  if (count === 0) throw new Error('encodeBlock: empty block');
  const lists = Math.max(1, Math.min(count, Math.ceil(count / options.listChunks)));
  const plan = layout(numLayers, dim, count, lists);
  const out = new Uint8Array(plan.bytes);
  const view = new DataView(out.buffer);
  const put = (offset: number, array: Uint32Array | Float32Array | Float64Array | Int8Array): void => out.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), offset);

  put(plan.membersOffset, input.ids);
  put(align8(plan.membersOffset + count * 4), input.tStart);
  put(align8(plan.membersOffset + count * 4) + count * 8, input.tEnd);
  let tMin = Infinity;
  let tMax = -Infinity;
  for (let i = 0; i < count; i++) {
    tMin = Math.min(tMin, input.tStart[i]!);
    tMax = Math.max(tMax, input.tEnd[i]!);
  }
  for (let l = 0; l < numLayers; l++) {
    const data = input.vectors[l]!;
    if (options.space === 'cosine') normalizeRows(data, count, dim);
    const { centroids, assignment, sizes } = kMeans(data, count, dim, lists, KMEANS_ITERATIONS, options.seed + l);
    const at = plan.layers[l]!;
    const centroidCodes = new Int8Array(lists * dim);
    const centroidScales = new Float32Array(lists);
    quantizeRowsInt8(centroids, lists, dim, centroidCodes, centroidScales);
    put(at.centroidCodes, centroidCodes);
    put(at.centroidScales, centroidScales);
    const listStart = new Uint32Array(lists + 1);
    for (let c = 0; c < lists; c++) listStart[c + 1] = listStart[c]! + sizes[c]!;
    put(at.listStart, listStart);
    // Stable grouping: members keep ascending id order inside their list.
    const cursor = listStart.slice(0, lists);
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[cursor[assignment[i]!]!++] = i;
    const ids = new Uint32Array(count);
    const grouped = new Float32Array(count * dim);
    for (let p = 0; p < count; p++) {
      ids[p] = input.ids[order[p]!]!;
      grouped.set(data.subarray(order[p]! * dim, (order[p]! + 1) * dim), p * dim);
    }
    const codes = new Int8Array(count * dim);
    const scales = new Float32Array(count);
    quantizeRowsInt8(grouped, count, dim, codes, scales);
    const listCrc = new Uint32Array(lists);
    for (let c = 0; c < lists; c++) {
      const from = listStart[c]!;
      const n = listStart[c + 1]! - from;
      const base = at.data + from * (8 + dim);
      put(base, ids.subarray(from, from + n));
      put(base + n * 4, scales.subarray(from, from + n));
      put(base + n * 8, codes.subarray(from * dim, (from + n) * dim));
      listCrc[c] = crc32(out, 0, base, n * (8 + dim));
    }
    put(at.listCrc, listCrc);
    await yieldEvery();
  }
  out.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, numLayers, true);
  view.setUint32(16, dim, true);
  view.setUint32(20, count, true);
  view.setUint32(24, lists, true);
  view.setUint32(28, options.space === 'cosine' ? 1 : 0, true);
  view.setFloat64(40, tMin, true);
  view.setFloat64(48, tMax, true);
  view.setUint32(56, input.ids[0]!, true);
  view.setUint32(60, input.ids[count - 1]!, true);
  // The header checksum covers the part read at open, with its own field (bytes 32..35) as zero.
  view.setUint32(32, crc32(out, 0, 0, plan.tablesEnd), true);
  return out;
}

/** An open sealed block: its centroids in RAM, its lists read from the file on demand. */
export class SealedBlock {
  private constructor(
    readonly file: string,
    readonly header: BlockHeader,
    readonly layers: BlockLayer[],
    private readonly plan: Layout,
  ) {}

  /**
   * Opens a block file: reads and checks the header, members and tables (a few percent of the
   * file), keeps the centroids. INDEX_CORRUPT on any disagreement, including a file shorter than
   * its layout.
   */
  static open(file: string, expect: { numLayers: number; dim: number; space: SimilaritySpace }): SealedBlock {
    const fd = openSync(file, 'r');
    try {
      const head = Buffer.alloc(HEADER_BYTES);
      const corrupt = (why: string): VigilError => new VigilError('INDEX_CORRUPT', `${file}: ${why}`);
      if (readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES || head.toString('latin1', 0, 8) !== MAGIC) throw corrupt('not a Vigil sealed index block');
      if (head.readUInt32LE(8) !== VERSION) throw corrupt(`unsupported version ${head.readUInt32LE(8)}`);
      const header: BlockHeader = {
        numLayers: head.readUInt32LE(12),
        dim: head.readUInt32LE(16),
        count: head.readUInt32LE(20),
        lists: head.readUInt32LE(24),
        space: head.readUInt32LE(28) === 1 ? 'cosine' : 'ip',
        tMin: head.readDoubleLE(40),
        tMax: head.readDoubleLE(48),
        firstId: head.readUInt32LE(56),
        lastId: head.readUInt32LE(60),
      };
      if (header.numLayers !== expect.numLayers || header.dim !== expect.dim || header.space !== expect.space) {
        throw corrupt(`holds ${header.numLayers} layers of ${header.dim}-d '${header.space}' vectors, expected ${expect.numLayers} of ${expect.dim}-d '${expect.space}'`);
      }
      if (header.count < 1 || header.lists < 1 || header.lists > header.count) throw corrupt('bad counts');
      const plan = layout(header.numLayers, header.dim, header.count, header.lists);
      if (fstatSync(fd).size < plan.bytes) throw corrupt('truncated');
      const rest = Buffer.alloc(plan.tablesEnd - HEADER_BYTES);
      if (readSync(fd, rest, 0, rest.length, HEADER_BYTES) !== rest.length) throw corrupt('truncated');
      const expected = head.readUInt32LE(32);
      head.writeUInt32LE(0, 32);
      if (crc32(rest, crc32(head)) !== expected) throw corrupt('checksum mismatch');
      const layers = plan.layers.map((at) => ({
        centroidCodes: new Int8Array(rest.buffer.slice(rest.byteOffset + at.centroidCodes - HEADER_BYTES, rest.byteOffset + at.centroidCodes - HEADER_BYTES + header.lists * header.dim)),
        centroidScales: new Float32Array(rest.buffer.slice(rest.byteOffset + at.centroidScales - HEADER_BYTES, rest.byteOffset + at.centroidScales - HEADER_BYTES + header.lists * 4)),
        listStart: new Uint32Array(rest.buffer.slice(rest.byteOffset + at.listStart - HEADER_BYTES, rest.byteOffset + at.listStart - HEADER_BYTES + (header.lists + 1) * 4)),
        listCrc: new Uint32Array(rest.buffer.slice(rest.byteOffset + at.listCrc - HEADER_BYTES, rest.byteOffset + at.listCrc - HEADER_BYTES + header.lists * 4)),
        dataOffset: at.data,
      }));
      for (const layer of layers) if (layer.listStart[header.lists] !== header.count) throw corrupt('list table does not cover the members');
      return new SealedBlock(file, header, layers, plan);
    } finally {
      closeSync(fd);
    }
  }

  /** RAM this block holds (centroids and list tables), for stats. */
  get ramBytes(): number {
    return this.layers.reduce((s, l) => s + l.centroidCodes.byteLength + l.centroidScales.byteLength + l.listStart.byteLength + l.listCrc.byteLength, 0) + 256;
  }

  members(fd: number): BlockMembers {
    const { count } = this.header;
    const ids = new Uint32Array(count);
    const tStart = new Float64Array(count);
    const tEnd = new Float64Array(count);
    const timesAt = align8(this.plan.membersOffset + count * 4);
    readInto(fd, ids, this.plan.membersOffset, this.file);
    readInto(fd, tStart, timesAt, this.file);
    readInto(fd, tEnd, timesAt + count * 8, this.file);
    return { ids, tStart, tEnd };
  }

  /** tStart of members [from, from + count) (rows of the member table), in one read. */
  startTimes(fd: number, from: number, count: number): Float64Array {
    const out = new Float64Array(count);
    readInto(fd, out, align8(this.plan.membersOffset + this.header.count * 4) + from * 8, this.file);
    return out;
  }

  /** The int8 score of member `id` on `layer`: finds its list by reading the lists' ids. */
  scoreId(fd: number, layer: number, id: number, query: Float32Array): number {
    const at = this.layers[layer]!;
    const { dim, lists } = this.header;
    for (let c = 0; c < lists; c++) {
      const from = at.listStart[c]!;
      const n = at.listStart[c + 1]! - from;
      const base = at.dataOffset + from * (8 + dim);
      const ids = new Uint32Array(n);
      readInto(fd, ids, base, this.file);
      const row = ids.indexOf(id);
      if (row < 0) continue;
      const scale = new Float32Array(1);
      const codes = new Int8Array(dim);
      readInto(fd, scale, base + n * 4 + row * 4, this.file);
      readInto(fd, codes, base + n * 8 + row * dim, this.file);
      return dotRowsInt8(codes, scale, 0, 1, dim, query, new Float64Array(1))[0]!;
    }
    throw new VigilError('INDEX_CORRUPT', `${this.file}: chunk ${id} is not in layer ${layer}`);
  }

  /** Where list `list` of `layer` lies in the file: its byte offset and size, and its rows. */
  listSpan(layer: number, list: number): { offset: number; bytes: number; rows: number } {
    const at = this.layers[layer]!;
    const from = at.listStart[list]!;
    const rows = at.listStart[list + 1]! - from;
    const stride = 8 + this.header.dim;
    return { offset: at.dataOffset + from * stride, bytes: rows * stride, rows };
  }

  /**
   * A list read into `buffer` at byte `at` (as listSpan says), checked against its crc, as views
   * of the buffer (copied when `at` is not a multiple of 4, which only a dim that is not one can cause).
   */
  viewList(layer: number, list: number, buffer: Uint8Array, at: number): ListRows {
    const { bytes, rows: n } = this.listSpan(layer, list);
    if (crc32(buffer, 0, at, bytes) !== this.layers[layer]!.listCrc[list]) throw new VigilError('INDEX_CORRUPT', `${this.file}: list ${list} of layer ${layer} fails its checksum`);
    let base = buffer.byteOffset + at;
    let data = buffer.buffer;
    if (base % 4 !== 0) {
      data = buffer.slice(at, at + bytes).buffer;
      base = 0;
    }
    return { ids: new Uint32Array(data, base, n), scales: new Float32Array(data, base + n * 4, n), codes: new Int8Array(data, base + n * 8, n * this.header.dim) };
  }

  /** One list of a layer: its ids, scales and codes, in one read, checked against its crc. */
  readLists(fd: number, layer: number, list: number): ListRows {
    const at = this.layers[layer]!;
    const dim = this.header.dim;
    const from = at.listStart[list]!;
    const n = at.listStart[list + 1]! - from;
    const bytes = new Uint8Array(n * (8 + dim));
    readInto(fd, bytes, at.dataOffset + from * (8 + dim), this.file);
    if (crc32(bytes) !== at.listCrc[list]) throw new VigilError('INDEX_CORRUPT', `${this.file}: list ${list} of layer ${layer} fails its checksum`);
    // Views: each array starts at a multiple of 4 bytes of a fresh buffer.
    const ids = new Uint32Array(bytes.buffer, 0, n);
    const scales = new Float32Array(bytes.buffer, n * 4, n);
    const codes = new Int8Array(bytes.buffer, n * 8, n * dim);
    return { ids, scales, codes };
  }
}

/** Reads bytes [position, position + length) of a file into `buffer` at `at`; INDEX_CORRUPT if the file is shorter. */
export function readRange(fd: number, buffer: Uint8Array, at: number, length: number, position: number, file: string): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, at + done, length - done, position + done);
    if (n === 0) throw new VigilError('INDEX_CORRUPT', `${file}: truncated`);
    done += n;
  }
}

function readInto(fd: number, array: Uint8Array | Uint32Array | Float32Array | Float64Array | Int8Array, position: number, file: string): void {
  if (array.byteLength === 0) return;
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let done = 0;
  while (done < bytes.length) {
    const n = readSync(fd, bytes, done, bytes.length - done, position + done);
    if (n === 0) throw new VigilError('INDEX_CORRUPT', `${file}: truncated`);
    done += n;
  }
}
