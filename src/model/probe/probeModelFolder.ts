import fs from 'node:fs';
import path from 'node:path';
import { vigilCacheDir } from '../../cacheDir.js';
import { VigilError } from '../../../common/errors.js';
import { OnnxModelWriter } from '../onnx/modelWriter.js';
import { buildDecoderGraph } from './decoderGraph.js';
import { buildEmbedGraph } from './embedGraph.js';
import { buildGenaiDecoderGraph, genaiFloatType, type GenaiWeights } from './genaiDecoderGraph.js';
import { tokensPerImage, validateGeometry } from './geometry.js';
import type { ProbeGraphContext } from './graphHelpers.js';
import { findProbeSpec, PROBE_MODELS, type ProbeModelSpec } from './probeSpecs.js';
import { buildProbeTokenizer } from './probeTokenizer.js';
import { PROBE_WORDS } from './probeVocabulary.js';
import { buildNeedleVisionGraph } from './needleVisionGraph.js';
import { fixedEnergyRows, NEEDLE_CONSTRUCTION_VERSION, needleTokenIds, needleWeightSource, TOKEN_ENERGY_SEEDS } from './needleWeights.js';
import { NEEDLE_DIMS } from './needleLayout.js';
import { randomWeightSource } from './randomWeights.js';
import { probeModelFiles } from './probeConfigFiles.js';
import { buildVisionGraph } from './visionGraph.js';

/** Bump when the generated graphs or files change, so cached folders are rebuilt. */
const PROBE_BUILDER_VERSION = 2;
const STAMP_FILE = 'vigil-probe.json';
const OPSET = 17;

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
}

export interface BuiltProbeModel {
  dir: string;
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
 * interrupted build never leaves a folder that looks usable.
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
  if (!options.force && isComplete(dir, stamp)) return { dir, reused: true, spec };

  const partial = `${dir}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(path.join(partial, 'onnx'), { recursive: true });
  try {
    writeProbeFolder(partial, spec, seed, options.onProgress);
    fs.writeFileSync(path.join(partial, STAMP_FILE), stamp);
    if (options.force) fs.rmSync(dir, { recursive: true, force: true });
    publish(partial, dir, stamp);
  } catch (error) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw error;
  }
  return { dir, reused: false, spec };
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

function writeProbeFolder(dir: string, spec: ProbeModelSpec, seed: number, onProgress?: (p: ProbeBuildProgress) => void): void {
  const stages = ['tokenizer', 'embed_tokens', 'vision_encoder', 'decoder', ...(spec.quantizedGraphs ? ['quantized'] : [])];
  const report = (stage: string) => onProgress?.({ stage, done: stages.indexOf(stage), total: stages.length });
  const suffix = spec.dtype === 'float16' ? '_fp16' : '';

  report('tokenizer');
  const { tokenizerJson, tokenizerConfigJson } = buildProbeTokenizer({ vocabSize: spec.text.vocabSize, words: [...PROBE_WORDS] });
  // The needle model's hand-set weights address tokens by id, so they need the tokenizer first.
  const needle = spec.weights === 'needle';
  const randomLayers = spec.needleRandomLayers ? { seed, ...spec.needleRandomLayers } : undefined;
  const weights = needle ? needleWeightSource(spec.text, needleTokenIds(tokenizerJson), randomLayers) : randomWeightSource(seed);

  const files = probeModelFiles(spec, seed, suffix, tokenizerConfigJson);
  writeJson(path.join(dir, 'tokenizer.json'), tokenizerJson);
  for (const [file, content] of Object.entries(files)) writeJson(path.join(dir, file), content);

  const writeGraph = (stage: string, file: string, build: (ctx: ProbeGraphContext) => void, fileSuffix = suffix) => {
    report(stage);
    const writer = new OnnxModelWriter({
      path: path.join(dir, 'onnx', `${file}${fileSuffix}.onnx`),
      graphName: file,
      opset: OPSET,
      externalDataThresholdBytes: spec.externalData ? 1024 : Infinity,
      metadata: { 'vigil.probe': spec.name, 'vigil.seed': String(seed) },
    });
    build({ g: writer.graph, weights, dtype: spec.dtype });
    writer.save();
  };
  writeGraph('embed_tokens', 'embed_tokens', (ctx) => buildEmbedGraph(ctx, spec.text.vocabSize, spec.text.hiddenSize));
  const attention = spec.attention ?? 'eager';
  const buildVision = (ctx: ProbeGraphContext) => {
    if (!needle) return buildVisionGraph(ctx, spec.vision, spec.text.hiddenSize, { attention });
    const energy = spec.needleRandomLayers?.tokenEnergy ?? 0;
    const tokenRows =
      energy > 0 ? fixedEnergyRows(tokensPerImage(spec.vision), spec.text.hiddenSize, NEEDLE_DIMS.used, energy, seed ^ TOKEN_ENERGY_SEEDS.image) : undefined;
    return buildNeedleVisionGraph(ctx, spec.vision, spec.text.hiddenSize, tokenRows ? { tokenRows } : {});
  };
  const buildDecoder = (ctx: ProbeGraphContext) => buildDecoderGraph(ctx, spec.text, { queryTaps: spec.queryTaps ?? true, attention });
  writeGraph('vision_encoder', 'vision_encoder', buildVision);
  if (spec.genaiDecoder) {
    writeGenaiDecoders(dir, spec, seed, weights, report);
  } else {
    writeGraph('decoder', 'decoder_model_merged', buildDecoder);
  }
  if (spec.quantizedGraphs) {
    for (const [format, fileSuffix] of [['q8', '_quantized'], ['q4', '_q4']] as const) {
      const matmul = { weights: format };
      // The needle vision graph is hand-built (no weight MatMuls): its quantized files are the fp32 graph,
      // as is every embed_tokens file (a Gather, which q4 exports leave in float too).
      const copies = needle ? ['embed_tokens', 'vision_encoder'] : ['embed_tokens'];
      for (const graph of copies) fs.copyFileSync(path.join(dir, 'onnx', `${graph}.onnx`), path.join(dir, 'onnx', `${graph}${fileSuffix}.onnx`));
      if (!needle) writeGraph('quantized', 'vision_encoder', (ctx) => buildVision({ ...ctx, matmul }), fileSuffix);
      writeGraph('quantized', 'decoder_model_merged', (ctx) => buildDecoder({ ...ctx, matmul }), fileSuffix);
    }
  }
  onProgress?.({ stage: 'done', done: stages.length, total: stages.length });
}

/**
 * Model-builder-style decoders (spec.genaiDecoder): decoder_model_merged.onnx, _q4 and _q4f16. The q4 /
 * q4f16 vision and embed files are the fp32 graphs under those names (a copy of the .onnx only: it
 * names its .onnx_data file, which they share), as real q4 exports leave Gather unquantized.
 */
function writeGenaiDecoders(
  dir: string,
  spec: ProbeModelSpec,
  seed: number,
  weights: ProbeGraphContext['weights'],
  report: (stage: string) => void,
): void {
  const formats: Array<[GenaiWeights, string]> = [['fp32', ''], ['q4', '_q4'], ['q4f16', '_q4f16']];
  for (const [format, suffix] of formats) {
    report('decoder');
    const writer = new OnnxModelWriter({
      path: path.join(dir, 'onnx', `decoder_model_merged${suffix}.onnx`),
      graphName: 'decoder_model_merged',
      opset: OPSET,
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
