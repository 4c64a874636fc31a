import fs from 'node:fs';
import { VigilError } from '../../common/errors.js';
import { findProbeSpec, PROBE_MODELS } from '../model/probe/probeSpecs.js';
import { buildProbeModel } from '../model/probe/probeModelFolder.js';
import { stageProgress } from './progress.js';

export const DEFAULT_MODEL = 'probe-random-tiny';

/**
 * `--model` takes a model folder or the name of a probe model; a probe model is built into the cache
 * on first use (deterministic for its seed), so commands work on a fresh machine with no download.
 */
export function resolveModelDir(model: string, options: { seed?: number; quiet?: boolean } = {}): string {
  if (fs.existsSync(model)) return model;
  if (findProbeSpec(model)) {
    const progress = stageProgress(`building ${model}`, options.quiet);
    try {
      return buildProbeModel(model, {
        seed: options.seed ?? 0,
        onProgress: (p) => progress.update(p.done, p.total, p.stage),
      }).dir;
    } finally {
      progress.stop();
    }
  }
  throw new VigilError(
    'FILE_NOT_FOUND',
    `model '${model}' is neither a folder nor a probe model (probe models: ${PROBE_MODELS.map((s) => s.name).join(', ')})`,
  );
}
