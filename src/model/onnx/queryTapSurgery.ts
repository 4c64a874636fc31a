import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ONNX_DATA_TYPE } from './onnxSchema.js';
import { modelProtoType } from './onnxSchema.js';

interface DecodedGraph {
  node: Array<{ name: string; output: string[] }>;
  output: Array<{ name: string }>;
  value_info: Array<{ name: string; type?: { tensor_type?: { elem_type?: number } } }>;
  input: Array<{ name: string; type?: { tensor_type?: { elem_type?: number } } }>;
  initializer: Array<{ external_data?: Array<{ key: string; value: string }> }>;
}

export interface TapSurgeryResult {
  /** The copy of the decoder with the taps as outputs. */
  file: string;
  /** Per layer, the value exposed (the q projection's output). */
  tapNames: string[];
}

/** The last node inside `/model/layers.{i}/self_attn/q_proj/` is the projection's result (MatMul, +Add for a bias, MatMulNBits, ...). */
function findQueryProjections(graph: DecodedGraph, numLayers: number): string[] | undefined {
  const last = new Map<number, string>();
  const scope = /^\/model\/layers\.(\d+)\/self_attn\/q_proj\//;
  for (const node of graph.node) {
    const match = scope.exec(node.name);
    if (match && node.output[0]) last.set(Number(match[1]), node.output[0]);
  }
  if (last.size !== numLayers) return undefined;
  return Array.from({ length: numLayers }, (_, i) => last.get(i)!);
}

/**
 * Exposes each layer's pre-RoPE q projection as a graph output on a cached copy of a decoder that
 * lacks them (stock exports), so ReKV retrieval can read the question's queries.
 *
 * The copy is the original bytes plus one appended serialized `ModelProto { graph { output: [...] } }`:
 * protobuf merges a repeated message field that appears twice, so the new outputs are added without
 * decoding and re-encoding the model, and no field unknown to Vigil's schema subset can be lost.
 * onnxruntime refuses external data outside the model's folder (symlinks included), so the data
 * files are hard-linked next to the copy, or copied when the cache is on another filesystem.
 * Returns undefined when the graph's node names do not reveal the projections (then the caller
 * falls back to the question's keys).
 */
export function exposeQueryTaps(decoderFile: string, numLayers: number, elemType: 'float32' | 'float16', cacheDir: string): TapSurgeryResult | undefined {
  const stat = fs.statSync(decoderFile);
  const key = crypto.createHash('sha256').update(`${path.resolve(decoderFile)}|${stat.size}|${stat.mtimeMs}`).digest('hex').slice(0, 20);
  const dir = path.join(cacheDir, 'query-taps', key);
  const file = path.join(dir, path.basename(decoderFile));
  const done = path.join(dir, 'taps.json');
  if (fs.existsSync(done)) {
    const cached = JSON.parse(fs.readFileSync(done, 'utf8')) as TapSurgeryResult | { tapNames: null };
    return cached.tapNames ? { file, tapNames: cached.tapNames } : undefined;
  }

  const bytes = fs.readFileSync(decoderFile);
  const type = modelProtoType();
  const graph = (type.toObject(type.decode(bytes), { defaults: true }) as { graph: DecodedGraph }).graph;
  const tapNames = findQueryProjections(graph, numLayers);
  fs.mkdirSync(dir, { recursive: true });
  if (!tapNames) {
    fs.writeFileSync(done, JSON.stringify({ tapNames: null }));
    return undefined;
  }
  const existing = new Set(graph.output.map((o) => o.name));
  const added = tapNames
    .filter((name) => !existing.has(name))
    .map((name) => ({ name, type: { tensor_type: { elem_type: ONNX_DATA_TYPE[elemType] } } }));
  const appendix = type.encode(type.fromObject({ graph: { output: added } })).finish();

  const partial = `${file}.partial-${process.pid}`;
  fs.writeFileSync(partial, Buffer.concat([bytes, appendix]));
  fs.renameSync(partial, file);
  const locations = new Set(graph.initializer.flatMap((t) => (t.external_data ?? []).filter((e) => e.key === 'location').map((e) => e.value)));
  for (const location of locations) {
    const target = path.resolve(path.dirname(decoderFile), location);
    const link = path.join(dir, location);
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.rmSync(link, { force: true });
    try {
      fs.linkSync(target, link);
    } catch {
      fs.copyFileSync(target, link);
    }
  }
  fs.writeFileSync(done, JSON.stringify({ tapNames }));
  return { file, tapNames };
}
