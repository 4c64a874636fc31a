import type { GraphDtype } from '../../src/model/graphFiles.js';
import { buildProbeModel } from '../../src/model/probe/probeModelFolder.js';

/**
 * Folder of a probe model, generated on first use into Vigil's cache (VIGIL_CACHE_DIR, else
 * ~/.cache/vigil) and reused by later tests and runs; deterministic for the seed. Pass the `dtype`
 * the test loads: q8 / q4 adds the probe's `_quantized` / `_q4` files, which are built only on request.
 */
export function probeModelDir(name: string, options: { seed?: number; dtype?: GraphDtype } = {}): string {
  return buildProbeModel(name, options).dir;
}
