// Which similarity ranks chunks. ReKV's code uses the plain dot product (its published numbers come
// from it); the paper text says cosine. Both are offered (rekv-method.md section 10.1). The choice is
// fixed per index because hnswlib stores cosine vectors normalised: an index built for one space
// gives wrong answers in the other, so it is saved in the index meta and checked on load.
import { VigilError } from '../common/errors.js';

export type SimilaritySpace = 'ip' | 'cosine';

export const SIMILARITY_SPACES: readonly SimilaritySpace[] = ['ip', 'cosine'];

/** Checks a space name from options or a meta file; 'ip' means the dot product. */
export function parseSpace(value: unknown): SimilaritySpace {
  if (value === 'ip' || value === 'cosine') return value;
  throw new VigilError('BAD_CONFIG', `unknown similarity space ${JSON.stringify(value)}: use 'ip' (dot product) or 'cosine'`);
}
