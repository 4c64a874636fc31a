/**
 * FLOPs of one run of an ONNX graph, counted from its MatMul / Gemm / Conv / MatMulInteger nodes and
 * com.microsoft MultiHeadAttention (q.k and p.v with q/k/v as [B, S, hidden]):
 * weight shapes from the graph's initializers, activation shapes as onnxruntime ran them. The
 * activation shapes come from one profiled run with graph optimizations off, so every node of the
 * file runs under its own name and the profile's `input_type_shape` / `output_type_shape` (which list
 * the non-initializer inputs) can be joined to the file's nodes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { readGraphStructureFromFile, type StructureNode } from '../src/model/onnx/onnxStructure.js';

export interface GraphFlops {
  /** Multiply-adds counted as 2 FLOPs. */
  total: number;
  byOp: Record<string, number>;
  /** Counted nodes whose shapes were not all known (their FLOPs are missing from the total). */
  unknown: string[];
}

interface ProfiledNode {
  inputs: number[][];
  outputs: number[][];
}

const COUNTED = new Set(['MatMul', 'MatMulInteger', 'Gemm', 'Conv', 'com.microsoft:MultiHeadAttention']);

function shapesOf(list: unknown): number[][] {
  if (!Array.isArray(list)) return [];
  return list.map((entry) => Object.values(entry as Record<string, number[]>)[0] ?? []);
}

/** Runs `feeds` once through `file` with profiling on; returns each node's shapes by node name. */
async function profiledShapes(file: string, feeds: Record<string, ort.Tensor>): Promise<Map<string, ProfiledNode>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-flops-'));
  try {
    const session = await ort.InferenceSession.create(file, {
      graphOptimizationLevel: 'disabled',
      enableProfiling: true,
      profileFilePrefix: path.join(dir, 'profile'),
      logSeverityLevel: 3,
    });
    try {
      await session.run(feeds);
      session.endProfiling();
    } finally {
      await session.release();
    }
    const profile = fs.readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!profile) throw new Error(`onnxruntime wrote no profile for ${file}`);
    const events = JSON.parse(fs.readFileSync(path.join(dir, profile), 'utf8')) as Array<{ cat?: string; name?: string; args?: Record<string, unknown> }>;
    const byName = new Map<string, ProfiledNode>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time')) continue;
      byName.set(e.name.slice(0, -'_kernel_time'.length), { inputs: shapesOf(e.args?.input_type_shape), outputs: shapesOf(e.args?.output_type_shape) });
    }
    return byName;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** 2 * batch * M * K * N for numpy-style matmul of a [...,M,K] and b [...,K,N] (1-D operands promoted). */
function matMulFlops(a: readonly number[], b: readonly number[]): number {
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const m = a2[a2.length - 2]!;
  const k = a2[a2.length - 1]!;
  const n = b2[b2.length - 1]!;
  const batchA = a2.slice(0, -2);
  const batchB = b2.slice(0, -2);
  const rank = Math.max(batchA.length, batchB.length);
  let batch = 1;
  for (let i = 0; i < rank; i++) {
    const da = batchA[batchA.length - rank + i] ?? 1;
    const db = batchB[batchB.length - rank + i] ?? 1;
    batch *= Math.max(da, db);
  }
  return 2 * batch * m * k * n;
}

function nodeFlops(node: StructureNode, inputs: number[][], outputs: number[][]): number | undefined {
  const [a, b] = inputs;
  if (!a || !b) return undefined;
  switch (node.opType) {
    case 'MatMul':
    case 'MatMulInteger':
      return matMulFlops(a, b);
    case 'Gemm': {
      const transA = node.attributes.get('transA') === 1;
      const transB = node.attributes.get('transB') === 1;
      const [m, k] = transA ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
      const n = transB ? b[0]! : b[1]!;
      return 2 * m * k * n;
    }
    case 'Conv': {
      // weight [Cout, Cin/group, kh, kw]; every output element is Cin/group*kh*kw multiply-adds.
      const out = outputs[0];
      if (!out) return undefined;
      return 2 * product(out) * product(b.slice(1));
    }
    case 'MultiHeadAttention': {
      // q [B, S, D], k [B, L, D], v [B, L, Dv] (the unpacked 3-D form Vigil's fused probes use):
      // scores B*S*L*D multiply-adds, context B*S*L*Dv.
      const v = inputs[2];
      if (a.length !== 3 || b.length !== 3 || v?.length !== 3) return undefined;
      return 2 * a[0]! * a[1]! * b[1]! * (a[2]! + v[2]!);
    }
    default:
      return undefined;
  }
}

/** Counts the FLOPs of one run of `file` on `feeds`. */
export async function countGraphFlops(file: string, feeds: Record<string, ort.Tensor>): Promise<GraphFlops> {
  const structure = readGraphStructureFromFile(file);
  const profiled = await profiledShapes(file, feeds);
  const result: GraphFlops = { total: 0, byOp: {}, unknown: [] };
  for (const node of structure.nodes) {
    if (!COUNTED.has(node.domain ? `${node.domain}:${node.opType}` : node.opType)) continue;
    const ran = profiled.get(node.name);
    // The profile lists the inputs that are not initializers, in order (all of them, where it lists as
    // many as the node has); initializers' dims come from the file.
    const activations = [...(ran?.inputs ?? [])];
    const listsAll = activations.length === node.inputs.filter(Boolean).length;
    const inputs = node.inputs.map((name) => {
      if (!name) return []; // an optional input left out: the profile lists nothing for it
      if (!listsAll && structure.isInitializer(name)) return (structure.dims(name) ?? []).map(Number);
      return activations.shift();
    });
    const flops = ran && inputs.every((d) => d !== undefined) ? nodeFlops(node, inputs as number[][], ran.outputs) : undefined;
    if (flops === undefined) {
      result.unknown.push(node.name);
      continue;
    }
    result.total += flops;
    result.byOp[node.opType] = (result.byOp[node.opType] ?? 0) + flops;
  }
  return result;
}

/** Bytes of every initializer of `file` (the weights a run reads at least once). */
export function initializerBytes(file: string): number {
  const structure = readGraphStructureFromFile(file);
  const size: Record<number, number> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 16: 2 };
  let bytes = 0;
  for (const t of structure.initializers.values()) bytes += product((t.dims ?? []).map(Number)) * (size[t.elemType] ?? 4);
  return bytes;
}
