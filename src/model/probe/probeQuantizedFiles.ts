import fs from 'node:fs';
import path from 'node:path';
import { removeStalePartials } from '../../../common/stalePartials.js';
import type { GraphDtype } from '../graphFiles.js';
import { probeGraphSource, type ProbeGraphSource } from './probeGraphs.js';
import type { ProbeModelSpec } from './probeSpecs.js';

/**
 * The `_quantized` (q8) and `_q4` files of a spec with `quantizedGraphs` (issue 19) are written only
 * when a caller asks for one of these dtypes: they doubled the 256m folders' build time and almost
 * nothing loads them. A complete folder gets them added later, claimed by this second stamp file
 * (the folder's stamp text), written last.
 */
export const QUANTIZED_STAMP_FILE = 'vigil-probe-quantized.json';

const FORMATS = [
  ['q8', '_quantized'],
  ['q4', '_q4'],
] as const;

const GRAPHS = ['embed_tokens', 'vision_encoder', 'decoder_model_merged'] as const;

/** The weight formats a folder of `spec` can hold (the quantized ones of `quantizedGraphs` once asked for). */
export function probeFolderDtypes(spec: ProbeModelSpec): GraphDtype[] {
  const float: GraphDtype = spec.dtype === 'float16' ? 'fp16' : 'fp32';
  if (spec.genaiDecoder) return [float, 'q4', 'q4f16'];
  return spec.quantizedGraphs ? [float, ...FORMATS.map(([format]) => format)] : [float];
}

/** Whether loading `spec` at `dtype` needs its quantized files (other dtypes need nothing beyond the folder). */
export function needsQuantizedFiles(spec: ProbeModelSpec, dtype: GraphDtype | undefined): boolean {
  return spec.quantizedGraphs === true && FORMATS.some(([format]) => format === dtype);
}

/**
 * Writes the quantized files into `<outDir>/onnx`. embed_tokens (a Gather, which q4 exports leave in
 * float too) and the needle models' hand-built vision graph have no weight MatMuls: their quantized
 * files are copies of the fp32 graphs in `<fp32Dir>/onnx` (the .onnx only: it names its .onnx_data,
 * which they share).
 */
export function writeQuantizedGraphs(source: ProbeGraphSource, fp32Dir: string, outDir: string): void {
  for (const [format, fileSuffix] of FORMATS) {
    const matmul = { weights: format };
    const copies = source.needle ? ['embed_tokens', 'vision_encoder'] : ['embed_tokens'];
    for (const graph of copies) fs.copyFileSync(path.join(fp32Dir, 'onnx', `${graph}.onnx`), path.join(outDir, 'onnx', `${graph}${fileSuffix}.onnx`));
    if (!source.needle) source.writeGraph(outDir, 'vision_encoder', (ctx) => source.buildVision({ ...ctx, matmul }), fileSuffix);
    source.writeGraph(outDir, 'decoder_model_merged', (ctx) => source.buildDecoder({ ...ctx, matmul }), fileSuffix);
  }
}

/**
 * Whether a complete folder (its stamp already checked) holds the quantized files: the second stamp
 * says so. A folder without it that has every quantized .onnx is claimed too (a folder built before
 * these files became optional holds them all without the second stamp; an add stopped after its last
 * rename does too, and each file it renamed in was whole, its data file before it).
 */
export function hasQuantizedFiles(dir: string, stamp: string): boolean {
  try {
    if (fs.readFileSync(path.join(dir, QUANTIZED_STAMP_FILE), 'utf8') === stamp) return true;
  } catch {
    // No second stamp: look at the files below.
  }
  if (!quantizedGraphsPresent(dir)) return false;
  try {
    writeQuantizedStamp(dir, stamp);
  } catch {
    // A read-only folder still has the files; it is checked by them again next time.
  }
  return true;
}

/** Every quantized .onnx is in `<dir>/onnx` (each renamed in whole, after its data file). */
export function quantizedGraphsPresent(dir: string): boolean {
  return FORMATS.every(([, suffix]) => GRAPHS.every((graph) => fs.existsSync(path.join(dir, 'onnx', `${graph}${suffix}.onnx`))));
}

/**
 * Adds the quantized files to a complete folder: written beside it (a partial folder of this
 * process), renamed into `onnx/` file by file (data files before the graphs that name them; rename
 * replaces atomically, so two processes adding at once leave the same bytes), then the second stamp.
 * An interrupted add never leaves a folder that claims them.
 */
export function addQuantizedFiles(dir: string, spec: ProbeModelSpec, seed: number, stamp: string): void {
  removeStalePartials(dir);
  const partial = `${dir}.partial-quantized-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(path.join(partial, 'onnx'), { recursive: true });
  try {
    writeQuantizedGraphs(probeGraphSource(spec, seed), dir, partial);
    const files = fs.readdirSync(path.join(partial, 'onnx'));
    const order = (file: string) => (file.endsWith('.onnx') ? 1 : 0);
    files.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
    for (const file of files) fs.renameSync(path.join(partial, 'onnx', file), path.join(dir, 'onnx', file));
    writeQuantizedStamp(dir, stamp);
  } finally {
    fs.rmSync(partial, { recursive: true, force: true });
  }
}

/** The second stamp, written to a file of this process and renamed, so it is never seen half written. */
export function writeQuantizedStamp(dir: string, stamp: string): void {
  const file = path.join(dir, QUANTIZED_STAMP_FILE);
  const temporary = `${file}.${process.pid}`;
  fs.writeFileSync(temporary, stamp);
  fs.renameSync(temporary, file);
}
