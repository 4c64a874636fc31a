import path from 'node:path';
import { loadModelConfig } from '../../model/modelConfig.js';
import type { GraphDtype } from '../../model/graphFiles.js';
import { formatInspection, inspectModelFolder, type ModelInspection } from '../../model/modelInspection.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { streamTokensPerFrame } from '../../model/videoFrames.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { modelLoadOptions } from '../modelLoadOptions.js';
import { printJson } from '../options.js';
import { resolveModelDir } from '../resolveModel.js';

export interface InspectOptions {
  dtype?: GraphDtype;
  queryTaps?: QueryTapMode;
  json?: boolean;
  /** false (--no-load): the static report only, onnxruntime never loads the model. */
  load?: boolean;
}

/** What loading the folder into onnxruntime adds (supported folders only). */
async function loadedFacts(dir: string, options: InspectOptions): Promise<Record<string, unknown>> {
  const config = loadModelConfig(dir);
  const vlm = await VisionLanguageModel.load(dir, modelLoadOptions(options));
  try {
    const info = vlm.decoder.info;
    return {
      probe: config.probe ?? null,
      config: config.text,
      kvType: info.type,
      tokensPerImage: vlm.tokensPerImage,
      tokensPerFrame: streamTokensPerFrame(vlm),
      imageTokenId: config.imageTokenId,
      eosTokenIds: [...vlm.eosTokenIds],
      queryTaps: info.queryTapNames ? 'yes' : 'no',
      queryTapState: vlm.queryTaps.state,
      ...(vlm.queryTaps.reason ? { queryTapReason: vlm.queryTaps.reason } : {}),
      // How answers decode: one growing KV buffer fetching each call's new rows, or `present` per call.
      decode: info.kvTaps?.lengthsFromMask ? 'in place' : info.kvTaps ? 'new rows' : 'present',
      // 'split': GroupQueryAttention rewritten to read the past in place (src/model/onnx/splitAttention.ts); 'export': as the file has it.
      decodeAttention: vlm.decoder.splitAttention ? 'split' : 'export',
      // The decoder may be the query-tap surgery's copy in Vigil's cache: absolute path then.
      loadedFiles: [vlm.vision.file, vlm.embedder.file, vlm.decoder.graph.file].map((f) => (f.startsWith(config.dir + path.sep) ? path.relative(config.dir, f) : f)),
    };
  } finally {
    await vlm.dispose();
  }
}

/**
 * `vigil models inspect`: the static report of every ONNX file (modelInspection.ts, no onnxruntime),
 * for any folder, supported or not; then, for a supported folder, the facts of loading it (tokens
 * per image and stream frame, eos ids, the query-tap state after surgery). A supported folder that
 * fails to load prints the static report, then fails with the load error.
 */
export async function inspectModelCommand(model: string, options: InspectOptions): Promise<void> {
  const dir = resolveModelDir(model, { dtype: options.dtype });
  const report: ModelInspection = inspectModelFolder(dir, options.dtype ? { dtypes: [options.dtype] } : {});
  let loaded: Record<string, unknown> | undefined;
  let loadError: unknown;
  if (report.supported && options.load !== false) {
    try {
      loaded = await loadedFacts(dir, options);
    } catch (error) {
      loadError = error;
    }
  }
  if (options.json) {
    printJson({ ...report, ...(loaded ?? {}), ...(loadError ? { loadError: (loadError as Error).message } : {}) });
  } else {
    const lines = formatInspection(report);
    if (loaded) {
      const reason = typeof loaded.queryTapReason === 'string' ? `: ${loaded.queryTapReason}` : '';
      const probe = loaded.probe as { name: string; seed: number } | null;
      lines.push(
        `  loaded (${(loaded.loadedFiles as string[]).join(', ')})${probe ? `: probe model ${probe.name} seed ${probe.seed}` : ''}`,
        `    KV cache ${String(loaded.kvType)}; decode: ${String(loaded.decode)}; query taps: ${String(loaded.queryTaps)} (${String(loaded.queryTapState)}${reason}); ` +
          `${String(loaded.tokensPerImage)} tokens per image, ${String(loaded.tokensPerFrame)} per stream frame; eos ${(loaded.eosTokenIds as number[]).join(', ')}`,
      );
    } else if (!report.supported) {
      lines.push('  not loaded: Vigil does not support this folder (reasons above)');
    }
    process.stdout.write(lines.join('\n') + '\n');
  }
  if (loadError) throw loadError;
}
