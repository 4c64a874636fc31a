import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { removeStalePartials } from '../../../common/stalePartials.js';
import { planQueryTaps, type QueryTapPlan } from './attentionStructure.js';
import { type GraphEdit, writeEditedModel } from './graphRewrite.js';
import { type KvTaps, planKvTaps } from './kvTapPlan.js';
import { ATTRIBUTE_TYPE, ONNX_DATA_TYPE } from './onnxSchema.js';
import { modelProtoType } from './onnxSchema.js';
import { readGraphStructureFromFile } from './onnxStructure.js';
import { type NodeProtoObject, planSplitAttention } from './splitAttention.js';

/**
 * Bumped whenever discovery or surgery changes what they produce: the cache key includes it, so a
 * failure cached by an older Vigil is retried by a fixed one (and never by the same one).
 * 1: q_proj found by node name, typed like inputs_embeds. 2: found by structure, typed from the graph (Slice for packed QKV). 3: Transpose for a query
 * rotated in [B,heads,S,D] order after q_norm. 4: each layer's new key/value rows exposed too (kvTapPlan.ts).
 * 5: GroupQueryAttention replaced by split decode attention where it applies (splitAttention.ts).
 */
export const QUERY_TAP_SURGERY_VERSION = 5;

/** What a load did about query taps (VisionLanguageModel.queryTaps). */
export interface QueryTapStatus {
  /**
   * 'exposed': the graph already outputs them; 'surgery': a cached copy with them as outputs is
   * loaded; 'fallback': none (retrieval uses the question's keys), `reason` says why; 'off': not asked for.
   */
  state: 'exposed' | 'surgery' | 'fallback' | 'off';
  reason?: string;
  /** The per-layer plan (absent when taken from the cache or not computed). */
  plan?: QueryTapPlan;
}

/** taps.json in a cache entry: written only once onnxruntime has loaded the graph with the taps. */
type CacheRecord =
  | { version: number; state: 'exposed' | 'surgery'; tapNames: string[]; kvTaps?: KvTaps; copy?: boolean; splitAttention?: boolean }
  | { version: number; state: 'failed'; reason: string };

export interface SurgeryCandidate {
  /** The cache entry's folder. */
  dir: string;
  /** The decoder to load: the original (taps already outputs) or the surgery copy. */
  file: string;
  tapNames: string[];
  state: 'exposed' | 'surgery';
  plan: QueryTapPlan;
  /** Each layer's new key/value rows, when the graph's structure shows them (outputs of `file`). */
  kvTaps: KvTaps | undefined;
  /** `file` is the surgery copy (query taps or kv taps were added), not the original. */
  copy: boolean;
  /** The copy's attention is split decode attention (no present outputs: splitAttention.ts). */
  splitAttention: boolean;
}

export type QueryTapPreparation =
  | { kind: 'cached'; file: string; tapNames: string[]; state: 'exposed' | 'surgery'; kvTaps: KvTaps | undefined; copy: boolean; splitAttention: boolean }
  | { kind: 'failed'; reason: string; plan?: QueryTapPlan; cached: boolean }
  | { kind: 'candidate'; candidate: SurgeryCandidate };

/** The cache folder of a decoder file's query taps: keyed on the file (path, size, mtime) and the surgery version. */
export function queryTapCacheEntry(decoderFile: string, cacheDir: string, version = QUERY_TAP_SURGERY_VERSION, splitAttention = false): string {
  const stat = fs.statSync(decoderFile);
  const key = crypto
    .createHash('sha256')
    .update(`${path.resolve(decoderFile)}|${stat.size}|${stat.mtimeMs}|surgery-v${version}${splitAttention ? '|split-attention' : ''}`)
    .digest('hex')
    .slice(0, 20);
  return path.join(cacheDir, 'query-taps', key);
}

function writeAtomic(file: string, data: string | Uint8Array): void {
  const partial = `${file}.partial-${process.pid}`;
  fs.writeFileSync(partial, data);
  fs.renameSync(partial, file);
}

/** Best effort: a cache Vigil cannot write (read-only home) costs a re-plan at the next load, not the taps. */
function writeRecord(dir: string, record: CacheRecord): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
    writeAtomic(path.join(dir, 'taps.json'), JSON.stringify(record));
  } catch {
    // Not recorded: the next load plans again.
  }
}

/**
 * Step 1 of exposing the pre-RoPE query taps of a decoder (see attentionStructure.ts for how they
 * are found). Looks up the cache entry for this file (path, size, mtime, surgery version); else
 * plans the taps from the graph's structure (read without the weights' bytes) and, when some are
 * not graph outputs yet, writes a
 * copy with them: the original bytes plus one appended serialized `ModelProto { graph { node,
 * initializer, output } }` (protobuf merges a repeated field that appears twice, so nothing is
 * decoded and re-encoded and no field unknown to Vigil's schema subset can be lost). The new outputs
 * are typed from the graph (value_info or the producer's types): a float16 graph with float32
 * inputs_embeds gets float16 taps. onnxruntime refuses external data outside the model's folder
 * (symlinks included), so the data files are hard-linked next to the copy, or copied across
 * filesystems. Nothing is recorded as working yet: the caller loads the candidate in onnxruntime,
 * then calls recordQueryTapSuccess or recordQueryTapFailure.
 */
export function prepareQueryTaps(decoderFile: string, cacheDir: string, options: { splitAttention?: boolean } = {}): QueryTapPreparation {
  const dir = queryTapCacheEntry(decoderFile, cacheDir, QUERY_TAP_SURGERY_VERSION, options.splitAttention ?? false);
  const done = path.join(dir, 'taps.json');
  if (fs.existsSync(done)) {
    try {
      const record = JSON.parse(fs.readFileSync(done, 'utf8')) as CacheRecord;
      if (record.version === QUERY_TAP_SURGERY_VERSION) {
        if (record.state === 'failed') return { kind: 'failed', reason: record.reason, cached: true };
        const copy = record.copy ?? record.state === 'surgery';
        const file = copy ? path.join(dir, path.basename(decoderFile)) : decoderFile;
        if (fs.existsSync(file)) return { kind: 'cached', file, tapNames: record.tapNames, state: record.state, kvTaps: record.kvTaps, copy, splitAttention: record.splitAttention ?? false };
      }
    } catch {
      // A damaged record is redone below.
    }
  }

  const structure = readGraphStructureFromFile(decoderFile);
  const plan = planQueryTaps(structure);
  if (!plan.complete) {
    writeRecord(dir, { version: QUERY_TAP_SURGERY_VERSION, state: 'failed', reason: plan.reason });
    return { kind: 'failed', reason: plan.reason, plan, cached: false };
  }
  const tapNames = plan.layers.map((l) => l.tensorName!);
  const missing = plan.layers.filter((l) => !l.exposed);
  const state = missing.length === 0 ? 'exposed' : 'surgery';
  const kvPlan = planKvTaps(structure);
  let kvTaps: KvTaps | undefined = kvPlan.complete ? { layers: kvPlan.layers, layout: kvPlan.layout, keysPreRope: kvPlan.keysPreRope, lengthsFromMask: kvPlan.lengthsFromMask } : undefined;
  // Split attention only where the new rows can be fetched (it removes `present`) and every layer qualifies.
  const split = options.splitAttention && kvTaps?.lengthsFromMask ? planSplitAttention(structure) : undefined;
  const splitPlan = split?.complete ? split : undefined;
  if (kvTaps && splitPlan?.layers.every((l) => l.rotatedKey)) {
    // The rewrite rotates the keys itself (do_rotary): tap them post-RoPE, so the graph's rotation, not
    // Vigil's, is what streams store (and what Decoder.verifyImplicitRope checks against config.json).
    kvTaps = { ...kvTaps, keysPreRope: false, layers: kvTaps.layers.map((l, i) => ({ key: splitPlan.layers[i]!.rotatedKey!, value: l.value })) };
  }
  const graphOutputs = new Set(structure.outputs);
  const missingKv = (kvTaps?.layers ?? []).flatMap((l) => [l.key, l.value]).filter((n) => !graphOutputs.has(n));
  if (missing.length === 0 && missingKv.length === 0 && !splitPlan) {
    return { kind: 'candidate', candidate: { dir, file: decoderFile, tapNames, state, plan, kvTaps, copy: false, splitAttention: false } };
  }

  const slices = missing.filter((l) => l.slice);
  const constant = (name: string, values: number[]) => ({
    name,
    dims: [values.length],
    data_type: ONNX_DATA_TYPE.int64,
    raw_data: new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer),
  });
  const initializer = slices.length > 0 ? [constant('/vigil/query_taps/zero', [0]), constant('/vigil/query_taps/last_axis', [-1])] : [];
  const node: Array<Record<string, unknown>> = slices.map((l) => {
    const ends = `/vigil/query_taps/end_${l.slice!.width}`;
    if (!initializer.some((i) => i.name === ends)) initializer.push(constant(ends, [l.slice!.width]));
    return {
      name: `/vigil/query_taps/layers.${l.layer}/Slice`,
      op_type: 'Slice',
      domain: '',
      input: [l.slice!.source, '/vigil/query_taps/zero', ends, '/vigil/query_taps/last_axis'],
      output: [l.tensorName!],
    };
  });
  for (const l of missing.filter((m) => m.transpose)) {
    node.push({
      name: `/vigil/query_taps/layers.${l.layer}/Transpose`,
      op_type: 'Transpose',
      domain: '',
      input: [l.transpose!.source],
      output: [l.tensorName!],
      attribute: [{ name: 'perm', type: ATTRIBUTE_TYPE.INTS, ints: [0, 2, 1, 3] }],
    });
  }
  const output: Array<{ name: string; type: { tensor_type: { elem_type: number } } }> = missing.map((l) => ({
    name: l.tensorName!,
    type: { tensor_type: { elem_type: ONNX_DATA_TYPE[l.dtype!] } },
  }));
  // The new rows have the KV's type (a q4f16 graph's are float16).
  const kvElemType = structure.inputs.get('past_key_values.0.key')?.elemType ?? ONNX_DATA_TYPE.float32;
  for (const name of missingKv) output.push({ name, type: { tensor_type: { elem_type: structure.elemType(name) ?? kvElemType } } });
  const type = modelProtoType();
  const appendix = type.encode(type.fromObject({ graph: { node, initializer, output } })).finish();

  const file = path.join(dir, path.basename(decoderFile));
  const edit = splitPlan
    ? {
        replaceNodes: new Map<number, readonly NodeProtoObject[]>(splitPlan.layers.flatMap((l) => [[l.node.index, l.replacement], ...l.identities.map((n): [number, NodeProtoObject[]] => [n.index, []])])),
        removeOutputs: new Set(splitPlan.removedOutputs),
      }
    : undefined;
  try {
    writeSurgeryCopy(decoderFile, file, appendix, structure.externalDataLocations, edit);
  } catch (error) {
    // Only kv taps were to be added (the query taps are outputs already): without a writable
    // cache the original still serves, decoding through `present`.
    if (state === 'exposed') return { kind: 'candidate', candidate: { dir, file: decoderFile, tapNames, state, plan, kvTaps: undefined, copy: false, splitAttention: false } };
    throw error;
  }
  return { kind: 'candidate', candidate: { dir, file, tapNames, state, plan, kvTaps, copy: true, splitAttention: splitPlan !== undefined } };
}

/** The decoder's bytes (edited, when `edit` is given) plus `appendix` at `file`, its external data hard-linked (or copied) beside it. */
function writeSurgeryCopy(decoderFile: string, file: string, appendix: Uint8Array, externalDataLocations: Iterable<string>, edit: GraphEdit | undefined): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Copy then append: no second in-memory copy of a decoder that keeps its weights inline.
  removeStalePartials(file);
  const partial = `${file}.partial-${process.pid}`;
  if (edit) {
    writeEditedModel(decoderFile, partial, edit, appendix);
  } else {
    fs.copyFileSync(decoderFile, partial);
    fs.appendFileSync(partial, appendix);
  }
  fs.renameSync(partial, file);
  for (const location of externalDataLocations) {
    const target = path.resolve(path.dirname(decoderFile), location);
    const link = path.join(path.dirname(file), location);
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.rmSync(link, { force: true });
    try {
      fs.linkSync(target, link);
    } catch {
      fs.copyFileSync(target, link);
    }
  }
}

/** Records that onnxruntime loaded the candidate and it outputs every tap. */
export function recordQueryTapSuccess(candidate: SurgeryCandidate): void {
  writeRecord(candidate.dir, { version: QUERY_TAP_SURGERY_VERSION, state: candidate.state, tapNames: candidate.tapNames, kvTaps: candidate.kvTaps, copy: candidate.copy, splitAttention: candidate.splitAttention });
}

/**
 * Records that the candidate failed (this surgery version will not try this file again) and removes the copy.
 * `always`: record it even for a graph that outputs its taps already (a split-attention copy's own cache entry).
 */
export function recordQueryTapFailure(candidate: SurgeryCandidate, reason: string, options: { always?: boolean } = {}): void {
  if (candidate.copy) {
    for (const entry of fs.readdirSync(candidate.dir)) if (entry !== 'taps.json') fs.rmSync(path.join(candidate.dir, entry), { recursive: true, force: true });
  }
  // A failure on a graph that already outputs its query taps is the graph's own (the caller rethrows
  // it) or the kv taps' (the caller loads the original, with its taps): not recorded either way.
  if (candidate.state === 'exposed' && !options.always) return;
  writeRecord(candidate.dir, { version: QUERY_TAP_SURGERY_VERSION, state: 'failed', reason });
}
