import fs from 'node:fs';
import path from 'node:path';
import { vigilCacheDir } from '../../cacheDir.js';
import { VigilError } from '../../../common/errors.js';
import { removeStalePartials } from '../../../common/stalePartials.js';
import type { GraphDtype } from '../graphFiles.js';
import { OnnxModelWriter } from '../onnx/modelWriter.js';
import { buildEmbedGraph } from './embedGraph.js';
import { buildGenaiDecoderGraph, genaiFloatType, type GenaiWeights } from './genaiDecoderGraph.js';
import { validateGeometry } from './geometry.js';
import { NEEDLE_CONSTRUCTION_VERSION } from './needleWeights.js';
import { probeGraphSource, PROBE_OPSET, type ProbeGraphSource } from './probeGraphs.js';
import { probeModelFiles } from './probeConfigFiles.js';
import { addQuantizedFiles, hasQuantizedFiles, needsQuantizedFiles, writeQuantizedGraphs, writeQuantizedStamp } from './probeQuantizedFiles.js';
import { findProbeSpec, PROBE_MODELS, type ProbeModelSpec } from './probeSpecs.js';

/** Bump when the generated graphs or files change, so cached folders are rebuilt. */
const PROBE_BUILDER_VERSION = 3;
const STAMP_FILE = 'vigil-probe.json';

export interface ProbeBuildProgress {
  stage: string;
  done: number;
  total: number;
}

export interface BuildProbeOptions {
  /** Output folder; defaults to <cache>/models/<name>-seed<seed>. */
  outDir?: string;
  seed?: number;
  /** Rebuild even if a complete folder for the same spec and seed exists. */
  force?: boolean;
  onProgress?: (progress: ProbeBuildProgress) => void;
  /**
   * The weight format the caller will load (the dtype `VisionLanguageModel.load` will ask for): 'q8'
   * or 'q4' on a spec with `quantizedGraphs` also writes its `_quantized` and `_q4` files, or adds
   * them to a complete folder that lacks them. Absent (or any other dtype): the folder without them.
   */
  dtype?: GraphDtype;
}

export interface BuiltProbeModel {
  dir: string;
  /** Nothing was written: the folder was complete, with the quantized files if they were asked for. */
  reused: boolean;
  spec: ProbeModelSpec;
}

export function defaultProbeDir(name: string, seed: number): string {
  return path.join(vigilCacheDir(), 'models', `${name}-seed${seed}`);
}

function stampFor(spec: ProbeModelSpec, seed: number): string {
  // The stamp holds the whole spec, so a spec's `attention` path (eager / fused graphs) is part of the
  // cache key: changing it rebuilds the folder. An absent field means eager, the graphs of before.
  // The needle model's hand-set construction has its own version (absent, so unchanged, for random models).
  const needle = spec.weights === 'needle' ? NEEDLE_CONSTRUCTION_VERSION : undefined;
  return JSON.stringify({ builder: PROBE_BUILDER_VERSION, seed, spec, needle }, null, 2);
}

function isComplete(dir: string, stamp: string): boolean {
  try {
    return fs.readFileSync(path.join(dir, STAMP_FILE), 'utf8') === stamp;
  } catch {
    return false;
  }
}

/**
 * Builds a probe model folder in the Hugging Face ONNX layout. The folder is written beside its
 * destination and renamed into place only when complete (the stamp file is written last), so an
 * interrupted build never leaves a folder that looks usable. The quantized files come only with a
 * q8 / q4 `dtype`, and are added to a complete folder the same way (probeQuantizedFiles.ts).
 */
export function buildProbeModel(name: string, options: BuildProbeOptions = {}): BuiltProbeModel {
  const spec = findProbeSpec(name);
  if (!spec) {
    throw new VigilError('UNKNOWN_PROBE_MODEL', `unknown probe model '${name}'; available: ${PROBE_MODELS.map((s) => s.name).join(', ')}`);
  }
  return buildProbeFolder(spec, options);
}

/** Builds a folder for any probe spec (tests use this for geometries outside the registry). */
export function buildProbeFolder(spec: ProbeModelSpec, options: BuildProbeOptions = {}): BuiltProbeModel {
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new VigilError('BAD_INPUT', `seed must be an integer in 0..4294967295, got ${seed}`);
  }
  validateGeometry(spec.text, spec.vision);
  const dir = path.resolve(options.outDir ?? defaultProbeDir(spec.name, seed));
  const stamp = stampFor(spec, seed);
  const quantized = needsQuantizedFiles(spec, options.dtype);
  removeStalePartials(dir);
  if (!options.force && isComplete(dir, stamp)) {
    if (!quantized || hasQuantizedFiles(dir, stamp)) return { dir, reused: true, spec };
    options.onProgress?.({ stage: 'quantized', done: 0, total: 1 });
    addQuantizedFiles(dir, spec, seed, stamp);
    options.onProgress?.({ stage: 'done', done: 1, total: 1 });
    return { dir, reused: false, spec };
  }

  const partial = `${dir}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(path.join(partial, 'onnx'), { recursive: true });
  try {
    writeProbeFolder(partial, spec, seed, quantized, options.onProgress);
    if (quantized) writeQuantizedStamp(partial, stamp);
    fs.writeFileSync(path.join(partial, STAMP_FILE), stamp);
    if (options.force) fs.rmSync(dir, { recursive: true, force: true });
    publish(partial, dir, stamp);
  } catch (error) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw error;
  }
  // Another process may have published the same folder without the quantized files first.
  if (quantized && !hasQuantizedFiles(dir, stamp)) addQuantizedFiles(dir, spec, seed, stamp);
  return { dir, reused: false, spec };
}

/**
 * A folder given by path that is a probe folder of this builder (its stamp is current) gets the
 * files `dtype` needs, as a probe given by name does; any other folder is left as it is. Returns
 * whether the folder is such a probe folder.
 */
export function completeProbeFolder(dir: string, dtype: GraphDtype | undefined, onProgress?: (progress: ProbeBuildProgress) => void): boolean {
  let text: string;
  let stamp: { seed?: unknown; spec?: ProbeModelSpec };
  try {
    text = fs.readFileSync(path.join(dir, STAMP_FILE), 'utf8');
    stamp = JSON.parse(text) as typeof stamp;
  } catch {
    return false;
  }
  const { seed, spec } = stamp;
  if (typeof seed !== 'number' || typeof spec !== 'object' || spec === null || stampFor(spec, seed) !== text) return false;
  buildProbeFolder(spec, { outDir: dir, seed, ...(dtype ? { dtype } : {}), ...(onProgress ? { onProgress } : {}) });
  return true;
}

/**
 * Renames the finished folder into place. If another process finished the same build first, its
 * folder is kept (it is identical); a stale incomplete folder is replaced.
 */
function publish(partial: string, dir: string, stamp: string): void {
  try {
    fs.renameSync(partial, dir);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
  }
  if (isComplete(dir, stamp)) {
    fs.rmSync(partial, { recursive: true, force: true });
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(partial, dir);
}

function writeProbeFolder(dir: string, spec: ProbeModelSpec, seed: number, quantized: boolean, onProgress?: (p: ProbeBuildProgress) => void): void {
  const stages = ['tokenizer', 'embed_tokens', 'vision_encoder', 'decoder', ...(quantized ? ['quantized'] : [])];
  const report = (stage: string) => onProgress?.({ stage, done: stages.indexOf(stage), total: stages.length });

  report('tokenizer');
  const source = probeGraphSource(spec, seed);
  const files = probeModelFiles(spec, seed, source.floatSuffix, source.tokenizerConfigJson);
  writeJson(path.join(dir, 'tokenizer.json'), source.tokenizerJson);
  for (const [file, content] of Object.entries(files)) writeJson(path.join(dir, file), content);

  report('embed_tokens');
  source.writeGraph(dir, 'embed_tokens', (ctx) => buildEmbedGraph(ctx, spec.text.vocabSize, spec.text.hiddenSize));
  report('vision_encoder');
  source.writeGraph(dir, 'vision_encoder', (ctx) => source.buildVision(ctx));
  if (spec.genaiDecoder) {
    writeGenaiDecoders(dir, source, report);
  } else {
    report('decoder');
    source.writeGraph(dir, 'decoder_model_merged', (ctx) => source.buildDecoder(ctx));
  }
  if (quantized) {
    report('quantized');
    writeQuantizedGraphs(source, dir, dir);
  }
  onProgress?.({ stage: 'done', done: stages.length, total: stages.length });
}

/**
 * Model-builder-style decoders (spec.genaiDecoder): decoder_model_merged.onnx, _q4 and _q4f16. The q4 /
 * q4f16 vision and embed files are the fp32 graphs under those names (a copy of the .onnx only: it
 * names its .onnx_data file, which they share), as real q4 exports leave Gather unquantized.
 */
function writeGenaiDecoders(dir: string, source: ProbeGraphSource, report: (stage: string) => void): void {
  const { spec, seed, weights } = source;
  const formats: Array<[GenaiWeights, string]> = [['fp32', ''], ['q4', '_q4'], ['q4f16', '_q4f16']];
  for (const [format, suffix] of formats) {
    report('decoder');
    const writer = new OnnxModelWriter({
      path: path.join(dir, 'onnx', `decoder_model_merged${suffix}.onnx`),
      graphName: 'decoder_model_merged',
      opset: PROBE_OPSET,
      externalDataThresholdBytes: spec.externalData ? 1024 : Infinity,
      metadata: { 'vigil.probe': spec.name, 'vigil.seed': String(seed), 'vigil.weights': format },
    });
    buildGenaiDecoderGraph({ g: writer.graph, weights, dtype: genaiFloatType(format) }, spec.text, { weights: format, ...spec.genaiDecoder });
    writer.save();
    if (format === 'fp32') continue;
    for (const graph of ['embed_tokens', 'vision_encoder']) {
      fs.copyFileSync(path.join(dir, 'onnx', `${graph}.onnx`), path.join(dir, 'onnx', `${graph}${suffix}.onnx`));
    }
  }
}

function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
