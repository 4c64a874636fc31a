import path from 'node:path';
import { OnnxModelWriter } from '../onnx/modelWriter.js';
import { buildDecoderGraph } from './decoderGraph.js';
import { tokensPerImage } from './geometry.js';
import type { ProbeGraphContext } from './graphHelpers.js';
import { fixedEnergyRows, needleTokenIds, needleWeightSource, TOKEN_ENERGY_SEEDS } from './needleWeights.js';
import { NEEDLE_DIMS } from './needleLayout.js';
import { buildNeedleVisionGraph } from './needleVisionGraph.js';
import type { ProbeModelSpec } from './probeSpecs.js';
import { buildProbeTokenizer } from './probeTokenizer.js';
import { PROBE_WORDS } from './probeVocabulary.js';
import { randomWeightSource } from './randomWeights.js';
import { buildVisionGraph } from './visionGraph.js';
import type { WeightSource } from './weightSource.js';

export const PROBE_OPSET = 17;

/**
 * What a probe folder's graphs are built from: the tokenizer, the weights and the vision / decoder
 * builders of its spec. Shared by the whole-folder build and the quantized files added to a complete
 * folder later; the weights depend only on (seed, tensor name), so a graph written by either is the
 * same bytes.
 */
export interface ProbeGraphSource {
  spec: ProbeModelSpec;
  seed: number;
  tokenizerJson: ReturnType<typeof buildProbeTokenizer>['tokenizerJson'];
  tokenizerConfigJson: ReturnType<typeof buildProbeTokenizer>['tokenizerConfigJson'];
  weights: WeightSource;
  /** Hand-set weights and the hand-built needle vision encoder (no weight MatMuls). */
  needle: boolean;
  /** The fp32 / fp16 files' suffix ('' or '_fp16'). */
  floatSuffix: string;
  /** Writes `<dir>/onnx/<file><fileSuffix>.onnx` (and its `.onnx_data` when the spec keeps weights outside). */
  writeGraph(dir: string, file: string, build: (ctx: ProbeGraphContext) => void, fileSuffix?: string): void;
  buildVision(ctx: ProbeGraphContext): void;
  buildDecoder(ctx: ProbeGraphContext): void;
}

export function probeGraphSource(spec: ProbeModelSpec, seed: number): ProbeGraphSource {
  const { tokenizerJson, tokenizerConfigJson } = buildProbeTokenizer({ vocabSize: spec.text.vocabSize, words: [...PROBE_WORDS] });
  // The needle model's hand-set weights address tokens by id, so they need the tokenizer first.
  const needle = spec.weights === 'needle';
  const randomLayers = spec.needleRandomLayers ? { seed, ...spec.needleRandomLayers } : undefined;
  const weights = needle ? needleWeightSource(spec.text, needleTokenIds(tokenizerJson), randomLayers) : randomWeightSource(seed);
  const floatSuffix = spec.dtype === 'float16' ? '_fp16' : '';
  const attention = spec.attention ?? 'eager';

  return {
    spec,
    seed,
    tokenizerJson,
    tokenizerConfigJson,
    weights,
    needle,
    floatSuffix,
    writeGraph(dir, file, build, fileSuffix = floatSuffix) {
      const writer = new OnnxModelWriter({
        path: path.join(dir, 'onnx', `${file}${fileSuffix}.onnx`),
        graphName: file,
        opset: PROBE_OPSET,
        externalDataThresholdBytes: spec.externalData ? 1024 : Infinity,
        metadata: { 'vigil.probe': spec.name, 'vigil.seed': String(seed) },
      });
      build({ g: writer.graph, weights, dtype: spec.dtype });
      writer.save();
    },
    buildVision(ctx) {
      if (!needle) {
        buildVisionGraph(ctx, spec.vision, spec.text.hiddenSize, { attention });
        return;
      }
      const energy = spec.needleRandomLayers?.tokenEnergy ?? 0;
      const tokenRows =
        energy > 0 ? fixedEnergyRows(tokensPerImage(spec.vision), spec.text.hiddenSize, NEEDLE_DIMS.used, energy, seed ^ TOKEN_ENERGY_SEEDS.image) : undefined;
      buildNeedleVisionGraph(ctx, spec.vision, spec.text.hiddenSize, tokenRows ? { tokenRows } : {});
    },
    buildDecoder(ctx) {
      buildDecoderGraph(ctx, spec.text, { queryTaps: spec.queryTaps ?? true, attention });
    },
  };
}
