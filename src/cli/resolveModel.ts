import fs from 'node:fs';
import { VigilError } from '../../common/errors.js';
import type { GraphDtype } from '../model/graphFiles.js';
import { findProbeSpec, PROBE_MODELS } from '../model/probe/probeSpecs.js';
import { buildProbeModel, completeProbeFolder, type ProbeBuildProgress } from '../model/probe/probeModelFolder.js';
import { stageProgress } from './progress.js';

export const DEFAULT_MODEL = 'probe-random-tiny';

export interface ResolveModelOptions {
  seed?: number;
  quiet?: boolean;
  /**
   * The weight format the model will be loaded at (--dtype): a probe's int8 / 4-bit files are built
   * only when it is q8 or q4, into the cached folder or a probe folder given by path.
   */
  dtype?: GraphDtype | undefined;
}

/**
 * `--model` takes a model folder or the name of a probe model; a probe model is built into the cache
 * on first use (deterministic for its seed), so commands work on a fresh machine with no download.
 */
export function resolveModelDir(model: string, options: ResolveModelOptions = {}): string {
  if (fs.existsSync(model)) {
    // A probe folder built by `vigil models build --out DIR` gets the files the dtype needs; any other folder is used as it is.
    if (options.dtype) withProgress(model, options.quiet, (onProgress) => completeProbeFolder(model, options.dtype, onProgress));
    return model;
  }
  if (findProbeSpec(model)) {
    return withProgress(model, options.quiet, (onProgress) =>
      buildProbeModel(model, { seed: options.seed ?? 0, ...(options.dtype ? { dtype: options.dtype } : {}), onProgress }).dir,
    );
  }
  throw new VigilError(
    'FILE_NOT_FOUND',
    `model '${model}' is neither a folder nor a probe model (probe models: ${PROBE_MODELS.map((s) => s.name).join(', ')})`,
  );
}

function withProgress<T>(model: string, quiet: boolean | undefined, run: (onProgress: (p: ProbeBuildProgress) => void) => T): T {
  const progress = stageProgress(`building ${model}`, quiet);
  try {
    return run((p) => progress.update(p.done, p.total, p.stage));
  } finally {
    progress.stop();
  }
}
