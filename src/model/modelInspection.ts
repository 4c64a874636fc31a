import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';
import { familyForModelType } from './families/index.js';
import { assessConfigSupport, ropeSetting, textConfigOf } from './families/support.js';
import { GRAPH_DTYPE_SUFFIX, type GraphName } from './graphFiles.js';
import { readJsonFile } from './modelConfig.js';
import { type AttentionOpKind, planQueryTaps, type QueryTapPlan } from './onnx/attentionStructure.js';
import { type Dim, elemTypeName, type GraphStructure, readGraphStructure } from './onnx/onnxStructure.js';

/**
 * What a model folder holds, read without onnxruntime: config.json's family and RoPE facts and
 * whether Vigil supports them (with every reason when not), and for every ONNX file in onnx/ its
 * inputs and outputs (decoded from the protobuf; external data is never read). For decoder files,
 * the attention op, where RoPE happens, the KV dtype and the per-layer query-tap plan of
 * attentionStructure.ts (the same analysis the query-tap surgery uses). Works on folders of
 * families Vigil does not support (that is its point: the report says why).
 */

export interface TensorReport {
  name: string;
  type: string;
  /** Declared dims (numbers or symbolic names); null when the file declares no shape. */
  dims: Dim[] | null;
}

export interface QueryTapLayerReport {
  layer: number;
  status: 'found' | 'fallback';
  tensorName: string | null;
  dtype: string | null;
  attentionOp: AttentionOpKind | null;
  rotary: string | null;
  qNorm: boolean;
  /** Already a graph output (no surgery needed for this layer). */
  exposed: boolean;
  reason: string;
}

export interface DecoderReport {
  layers: number;
  /** Attention op kinds found, per layer's attention node (distinct, in layer order). */
  attentionOps: AttentionOpKind[];
  /** 'inside': the fused attention op rotates (GroupQueryAttention do_rotary=1); 'outside': a RotaryEmbedding op or the rotate-half pattern before it. */
  rotary: 'inside' | 'outside' | 'mixed' | 'unknown';
  rotaryDetail: string;
  /** Element type of past_key_values.0.key. */
  kvType: string | null;
  /** The position_ids input (null: the graph derives positions itself). */
  positionIds: TensorReport | null;
  queryTaps: { complete: boolean; reason: string; opset: number; layers: QueryTapLayerReport[] };
}

export interface GraphFileReport {
  /** Path relative to the model folder (onnx/...). */
  file: string;
  /** Which of the three graphs it is, when its name says so. */
  graph: GraphName | null;
  /** Weight format from its suffix (fp32, q4, ...), null when the suffix is not one Vigil knows. */
  dtype: string | null;
  bytes: number;
  /** External data files its initializers name (not read). */
  externalData: string[];
  opset: number;
  inputs: TensorReport[];
  outputs: TensorReport[];
  decoder?: DecoderReport;
  /** Why the file could not be decoded. */
  error?: string;
}

export interface ModelInspection {
  dir: string;
  modelType: string;
  /** Vigil's family for the model_type, null when Vigil implements none. */
  family: string | null;
  familyName: string | null;
  supported: boolean;
  /** Why Vigil cannot stream this folder (config and graph facts); empty when supported. */
  reasons: string[];
  text: {
    layers: number | null;
    hiddenSize: number | null;
    heads: number | null;
    kvHeads: number | null;
    headDim: number | null;
    vocabSize: number | null;
    ropeTheta: number | null;
    partialRotaryFactor: number | null;
    ropeScaling: unknown;
    slidingWindow: number | null;
    layerTypes: Record<string, number> | null;
  };
  /** The family descriptor's rules (src/model/families/), when the family is known. */
  rules: { turnEndToken: string; prompt: string; preprocessing: string; streamFrames: string; rope: string } | null;
  files: GraphFileReport[];
}

const GRAPH_NAMES: readonly GraphName[] = ['vision_encoder', 'embed_tokens', 'decoder_model_merged'];
const DTYPE_BY_SUFFIX = new Map<string, string>(Object.entries(GRAPH_DTYPE_SUFFIX).map(([dtype, suffix]) => [suffix, dtype]));

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** The graph and dtype an onnx/ file name stands for (decoder_model_merged_q4f16.onnx -> decoder_model_merged, q4f16). */
export function classifyGraphFile(fileName: string): { graph: GraphName | null; dtype: string | null } {
  const stem = fileName.replace(/\.onnx$/, '');
  for (const graph of GRAPH_NAMES) {
    if (stem === graph || stem.startsWith(`${graph}_`)) return { graph, dtype: DTYPE_BY_SUFFIX.get(stem.slice(graph.length)) ?? null };
  }
  return { graph: null, dtype: null };
}

function tensorReport(g: GraphStructure, name: string): TensorReport {
  const type = g.elemType(name);
  return { name, type: elemTypeName(type), dims: g.dims(name) ?? null };
}

function rotaryOf(g: GraphStructure, plan: QueryTapPlan): Pick<DecoderReport, 'rotary' | 'rotaryDetail'> {
  const gqa = g.nodes.filter((n) => n.opType === 'GroupQueryAttention');
  const inside = gqa.filter((n) => Number(n.attributes.get('do_rotary') ?? 0) === 1).length;
  const ropeOps = g.nodes.filter((n) => n.opType === 'RotaryEmbedding').length;
  const traced = new Set(plan.layers.map((l) => l.rotary).filter((r) => r !== null && r !== 'inside'));
  const outside = ropeOps > 0 || traced.size > 0;
  const parts: string[] = [];
  if (inside > 0) parts.push(`${inside} GroupQueryAttention node(s) with do_rotary=1`);
  if (ropeOps > 0) parts.push(`${ropeOps} RotaryEmbedding node(s)`);
  if (traced.has('rotate_half')) parts.push('rotate-half pattern (x*cos + rotate_half(x)*sin) before the attention');
  if (inside > 0 && outside) return { rotary: 'mixed', rotaryDetail: parts.join('; ') };
  if (inside > 0) return { rotary: 'inside', rotaryDetail: parts.join('; ') };
  if (outside) return { rotary: 'outside', rotaryDetail: parts.join('; ') };
  return { rotary: 'unknown', rotaryDetail: 'no RotaryEmbedding node, no do_rotary attention and no rotate-half pattern traced' };
}

function decoderReport(g: GraphStructure): DecoderReport {
  const plan = planQueryTaps(g);
  const kinds: AttentionOpKind[] = [];
  for (const l of plan.layers) if (l.attentionOp && !kinds.includes(l.attentionOp)) kinds.push(l.attentionOp);
  if (kinds.length === 0) {
    // No layer's attention was tied to a past key: name the fused ops present anyway.
    for (const kind of ['GroupQueryAttention', 'MultiHeadAttention', 'Attention'] as const) if (g.nodes.some((n) => n.opType === kind)) kinds.push(kind);
  }
  const kvType = g.inputs.has('past_key_values.0.key') ? elemTypeName(g.elemType('past_key_values.0.key')) : null;
  return {
    layers: plan.numLayers,
    attentionOps: kinds,
    ...rotaryOf(g, plan),
    kvType,
    positionIds: g.inputs.has('position_ids') ? tensorReport(g, 'position_ids') : null,
    queryTaps: {
      complete: plan.complete,
      reason: plan.reason,
      opset: plan.opset,
      layers: plan.layers.map((l) => ({
        layer: l.layer,
        status: l.status,
        tensorName: l.tensorName,
        dtype: l.dtype,
        attentionOp: l.attentionOp,
        rotary: l.rotary,
        qNorm: l.qNorm,
        exposed: l.exposed,
        reason: l.reason,
      })),
    },
  };
}

/** Reads one .onnx file's structure (weights are skipped, external data is not opened). */
export function inspectGraphFile(modelDir: string, file: string): GraphFileReport {
  const full = path.join(modelDir, file);
  const { graph, dtype } = classifyGraphFile(path.basename(file));
  const base: GraphFileReport = { file, graph, dtype, bytes: fs.statSync(full).size, externalData: [], opset: 0, inputs: [], outputs: [] };
  let g: GraphStructure;
  try {
    g = readGraphStructure(fs.readFileSync(full));
  } catch (error) {
    return { ...base, error: `not a readable ONNX model: ${(error as Error).message}` };
  }
  const report: GraphFileReport = {
    ...base,
    externalData: [...g.externalDataLocations],
    opset: g.opsets.get('') ?? 0,
    inputs: [...g.inputs.keys()].map((n) => tensorReport(g, n)),
    outputs: g.outputs.map((n) => tensorReport(g, n)),
  };
  const isDecoder = graph === 'decoder_model_merged' || (graph === null && [...g.inputs.keys()].some((n) => n.startsWith('past_key_values.')));
  if (isDecoder) report.decoder = decoderReport(g);
  return report;
}

/** Facts in the graphs that make the folder unsupported whatever its config says. */
function graphReasons(files: GraphFileReport[], fileNames: readonly string[]): string[] {
  const reasons: string[] = [];
  for (const name of GRAPH_NAMES) {
    if (!fileNames.some((f) => classifyGraphFile(f).graph === name)) reasons.push(`no onnx/${name}*.onnx (Vigil needs vision_encoder, embed_tokens and decoder_model_merged)`);
  }
  const decoders = files.filter((f) => f.decoder);
  const mrope = decoders.find((f) => f.decoder!.positionIds?.dims?.length === 3 && f.decoder!.positionIds.dims[0] === 3);
  if (mrope) reasons.push(`M-RoPE: ${mrope.file} takes 3-row position_ids [${mrope.decoder!.positionIds!.dims!.join(', ')}]; Vigil re-rotates keys with 1-D positions`);
  const noPast = files.find((f) => f.graph === 'decoder_model_merged' && !f.error && !f.inputs.some((i) => /^past_key_values\.\d+\.key$/.test(i.name)));
  if (noPast) reasons.push(`${noPast.file} has no past_key_values.N.key/value inputs (Vigil needs the per-layer KV contract)`);
  return reasons;
}

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/**
 * Inspects a model folder without loading it into onnxruntime. `dtypes`: only files of these
 * weight formats (default: every .onnx file in onnx/).
 */
export function inspectModelFolder(modelDir: string, options: { dtypes?: readonly string[] } = {}): ModelInspection {
  const dir = path.resolve(modelDir);
  if (!fs.existsSync(dir)) throw new VigilError('FILE_NOT_FOUND', `model folder not found: ${dir}`);
  if (!fs.statSync(dir).isDirectory()) throw new VigilError('NOT_A_MODEL', `${dir} is a file, not a model folder`);
  const configFile = path.join(dir, 'config.json');
  if (!fs.existsSync(configFile)) {
    throw new VigilError('NOT_A_MODEL', `${dir} is not a model folder: it has no config.json (expected the Hugging Face ONNX layout: config.json, tokenizer.json, onnx/*.onnx)`);
  }
  const raw = readJsonFile(configFile, 'config.json');
  const support = assessConfigSupport(raw);
  const family = familyForModelType(support.modelType);
  const t = textConfigOf(raw);
  const hidden = numberOrNull(t.hidden_size);
  const heads = numberOrNull(t.num_attention_heads);
  const layerTypes = Array.isArray(t.layer_types) ? countBy(t.layer_types.map(String)) : null;

  const onnxDir = path.join(dir, 'onnx');
  const names = fs.existsSync(onnxDir) ? fs.readdirSync(onnxDir).filter((n) => n.endsWith('.onnx')).sort() : [];
  const files: GraphFileReport[] = [];
  for (const name of names) {
    const { dtype } = classifyGraphFile(name);
    if (options.dtypes && !(dtype !== null && options.dtypes.includes(dtype))) continue;
    files.push(inspectGraphFile(dir, path.join('onnx', name)));
  }
  const reasons = [...support.reasons, ...graphReasons(files, names)];
  return {
    dir,
    modelType: support.modelType,
    family: family?.id ?? null,
    familyName: family?.name ?? null,
    supported: reasons.length === 0,
    reasons,
    text: {
      layers: numberOrNull(t.num_hidden_layers),
      hiddenSize: hidden,
      heads,
      kvHeads: numberOrNull(t.num_key_value_heads) ?? heads,
      headDim: numberOrNull(t.head_dim) ?? (hidden !== null && heads ? hidden / heads : null),
      vocabSize: numberOrNull(t.vocab_size) ?? numberOrNull(raw.vocab_size),
      ropeTheta: ropeSetting(t, 'rope_theta') ?? family?.rope.defaultTheta ?? null,
      partialRotaryFactor: ropeSetting(t, 'partial_rotary_factor') ?? family?.rope.defaultPartialRotaryFactor ?? null,
      ropeScaling: t.rope_scaling ?? t.rope_parameters ?? null,
      slidingWindow: numberOrNull(t.sliding_window),
      layerTypes,
    },
    rules: family
      ? {
          turnEndToken: family.turnEndToken,
          prompt: family.promptSummary,
          preprocessing: family.preprocessing.summary,
          streamFrames: family.streamFrames.summary,
          rope: family.rope.summary,
        }
      : null,
    files,
  };
}

function dims(d: Dim[] | null): string {
  return d ? `[${d.join(', ')}]` : '[?]';
}

/** Lists tensors, folding past_key_values.N / present.N into one line per kind. */
function tensorLines(direction: 'in' | 'out', tensors: TensorReport[]): string[] {
  const lines: string[] = [];
  const folded = new Map<string, { first: TensorReport; count: number }>();
  for (const t of tensors) {
    const m = /^(past_key_values|present)\.(\d+)\.(key|value)$/.exec(t.name);
    if (!m) {
      lines.push(`      ${direction} ${t.name} ${t.type} ${dims(t.dims)}`);
      continue;
    }
    const key = `${m[1]}.N.${m[3]}`;
    const entry = folded.get(key);
    if (entry) entry.count++;
    else {
      folded.set(key, { first: t, count: 1 });
      lines.push(key);
    }
  }
  return lines.map((line) => {
    const entry = folded.get(line);
    return entry ? `      ${direction} ${line} ${entry.first.type} ${dims(entry.first.dims)} x${entry.count}` : line;
  });
}

/** The human-readable report of `vigil models inspect`. */
export function formatInspection(r: ModelInspection): string[] {
  const t = r.text;
  const lines = [
    r.dir,
    `  model_type ${r.modelType || '(missing)'}: ${r.family ? `family ${r.family} (${r.familyName})` : 'no Vigil family'}; ${r.supported ? 'supported' : 'NOT SUPPORTED'}`,
    ...r.reasons.map((reason) => `    - ${reason}`),
    `  text config: ${t.layers ?? '?'} layers, hidden ${t.hiddenSize ?? '?'}, ${t.heads ?? '?'} heads / ${t.kvHeads ?? '?'} KV heads, head_dim ${t.headDim ?? '?'}, ` +
      `vocab ${t.vocabSize ?? '?'}, rope_theta ${t.ropeTheta ?? '?'}, partial rotary ${t.partialRotaryFactor ?? '?'}` +
      `${t.ropeScaling ? `, rope scaling ${JSON.stringify(t.ropeScaling)}` : ''}${t.slidingWindow !== null ? `, sliding_window ${t.slidingWindow}` : ''}` +
      `${t.layerTypes ? `, layer_types ${Object.entries(t.layerTypes).map(([k, n]) => `${k} x${n}`).join(', ')}` : ''}`,
  ];
  if (r.rules) {
    lines.push(
      `  family rules: turn end ${r.rules.turnEndToken}`,
      `    prompt: ${r.rules.prompt}`,
      `    preprocessing: ${r.rules.preprocessing}`,
      `    stream frames: ${r.rules.streamFrames}`,
      `    RoPE: ${r.rules.rope}`,
    );
  }
  if (r.files.length === 0) lines.push('  no .onnx files in onnx/');
  for (const f of r.files) {
    const size = f.bytes >= 1e6 ? `${(f.bytes / 1e6).toFixed(1)} MB` : `${(f.bytes / 1e3).toFixed(1)} kB`;
    lines.push(`  ${f.file} (${f.graph ?? 'other graph'}${f.dtype ? `, ${f.dtype}` : ''}, ${size}${f.externalData.length ? `, external data ${f.externalData.join(', ')}` : ''}${f.opset ? `, opset ${f.opset}` : ''})`);
    if (f.error) {
      lines.push(`    error: ${f.error}`);
      continue;
    }
    lines.push(...tensorLines('in', f.inputs), ...tensorLines('out', f.outputs));
    const d = f.decoder;
    if (!d) continue;
    lines.push(
      `    attention ${d.attentionOps.join(', ') || 'not found'}; rotary ${d.rotary} (${d.rotaryDetail}); KV ${d.kvType ?? 'none'}; ` +
        `position_ids ${d.positionIds ? `${d.positionIds.type} ${dims(d.positionIds.dims)}` : 'none (positions from the mask)'}`,
      `    query taps: ${d.queryTaps.complete ? `found in all ${d.layers} layers` : `fallback (${d.queryTaps.reason})`}`,
      ...d.queryTaps.layers.map((l) =>
        l.status === 'found'
          ? `      layer ${l.layer}: found ${l.tensorName} ${l.dtype} (${l.attentionOp}, rotary ${l.rotary}${l.qNorm ? ', after q_norm' : ''}${l.exposed ? ', already an output' : ''})`
          : `      layer ${l.layer}: fallback: ${l.reason}`,
      ),
    );
  }
  return lines;
}
