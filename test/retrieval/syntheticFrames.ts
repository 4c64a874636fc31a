// Synthetic chunk representatives shaped like a camera stream, for the HNSW recall test and
// bench/index.ts. Real mean pre-RoPE keys share a large constant offset (biases, outlier channels)
// and vary across frames in a low-dimensional content subspace; frames of one scene share its
// content and drift around it (how far is `motion`), and scenes recur (a camera revisits the same
// view). Isotropic noise on top keeps every dimension live. Recall depends on this structure (docs/retrieval.md), so the
// generator is deliberately explicit about it.
import { mulberry32 } from '../../kernels/sampling.js';

export interface SyntheticFramesOptions {
  count: number;
  dim: number;
  seed: number;
  /** Dimensions of the content subspace (default 16). */
  contentDims?: number;
  /** Scene lengths are uniform in [minScene, maxScene] frames (defaults 20, 200). */
  minScene?: number;
  maxScene?: number;
  /** Chance that a new scene revisits an earlier scene's view (default 0.3). */
  revisit?: number;
  /** Per-dimension std of the isotropic noise (default 0.05). */
  noise?: number;
  /**
   * Content change per frame inside a scene (AR(1) innovation std, default 0.5: people and objects
   * moving). Near 0.1 frames of a scene are near copies (a static view): the hard case for HNSW,
   * which then cannot rank inside a cloud of near-identical points (docs/retrieval.md).
   */
  motion?: number;
  /** Spread of scene energy (key norm): scale in 1 +- spread/2 (default 0.5). */
  energySpread?: number;
}

export interface SyntheticFrames {
  /** count x dim, row i = chunk i's representative. */
  vectors: Float32Array;
  dim: number;
  /** Scene index of each row (a revisit is a new scene). */
  scene: Int32Array;
  /** View of each row: a revisit shares the view of the scene it returns to (near-identical content). */
  view: Int32Array;
  /** Makes a question-like query about a random scene (deterministic per seed). */
  query(seed: number): Float32Array;
}

function gaussian(random: () => number): () => number {
  return () => {
    const u = random() || Number.MIN_VALUE;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}

export function syntheticFrames(options: SyntheticFramesOptions): SyntheticFrames {
  const { count, dim, seed } = options;
  const R = options.contentDims ?? 16;
  const minScene = options.minScene ?? 20;
  const maxScene = options.maxScene ?? 200;
  const revisit = options.revisit ?? 0.3;
  const noise = options.noise ?? 0.05;
  const motion = options.motion ?? 0.5;
  const energySpread = options.energySpread ?? 0.5;
  const random = mulberry32(seed);
  const gauss = gaussian(random);

  // Fixed per "layer": the shared offset and the map from content to key space.
  const offset = Float64Array.from({ length: dim }, () => 2 * gauss());
  const basis = Float64Array.from({ length: R * dim }, () => gauss() / Math.sqrt(R));
  const centers: Float64Array[] = [];
  const viewOf: number[] = [];
  const vectors = new Float32Array(count * dim);
  const scene = new Int32Array(count);
  const view = new Int32Array(count);
  const content = new Float64Array(R);
  const drift = new Float64Array(R);

  let row = 0;
  while (row < count) {
    let center: Float64Array;
    if (centers.length > 0 && random() < revisit) {
      // A revisit: the old view, slightly changed (lighting, people moved).
      const back = Math.floor(random() * centers.length);
      center = centers[back]!.map((v) => v + 0.2 * gauss());
      viewOf.push(viewOf[back]!);
    } else {
      // Scene "energy" varies, so key norms vary as in real streams (dot product favours large norms).
      const scale = 1 + energySpread * (random() - 0.5);
      center = Float64Array.from({ length: R }, () => 2 * scale * gauss());
      viewOf.push(centers.length);
    }
    const id = centers.length;
    centers.push(center);
    drift.fill(0);
    const length = minScene + Math.floor(random() * (maxScene - minScene + 1));
    for (let f = 0; f < length && row < count; f++, row++) {
      scene[row] = id;
      view[row] = viewOf[id]!;
      // Bounded drift (AR(1)) inside a scene: camera shake, slow motion.
      for (let k = 0; k < R; k++) {
        drift[k] = 0.9 * drift[k]! + motion * gauss();
        content[k] = center[k]! + drift[k]!;
      }
      const base = row * dim;
      for (let d = 0; d < dim; d++) {
        let v = offset[d]! + noise * gauss();
        for (let k = 0; k < R; k++) v += basis[k * dim + d]! * content[k]!;
        vectors[base + d] = v;
      }
    }
  }

  const query = (querySeed: number): Float32Array => {
    const qr = mulberry32(querySeed);
    const qg = gaussian(qr);
    const target = centers[Math.floor(qr() * centers.length)]!;
    // Question queries see the content they ask about, plus directions the keys do not use and
    // some weight on the shared offset (which only shifts every score by the same amount).
    const along = qg();
    const asked = target.map((v) => v + 0.5 * qg());
    const out = new Float32Array(dim);
    for (let d = 0; d < dim; d++) {
      let v = 0.3 * qg() + along * offset[d]! * 0.1;
      for (let k = 0; k < R; k++) v += basis[k * dim + d]! * asked[k]!;
      out[d] = v;
    }
    return out;
  };

  return { vectors, dim, scene, view, query };
}
