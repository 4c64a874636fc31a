import { buildProbeModel } from '../../src/model/probe/probeModelFolder.js';

/**
 * Folder of a probe model, generated on first use into Vigil's cache (VIGIL_CACHE_DIR, else
 * ~/.cache/vigil) and reused by later tests and runs; deterministic for the seed.
 */
export function probeModelDir(name: string, seed = 0): string {
  return buildProbeModel(name, { seed }).dir;
}
