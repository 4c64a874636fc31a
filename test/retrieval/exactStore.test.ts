// Exact search restricted to allowed ids scores each row exactly as unrestricted search does,
// whether the allowed set is most of the store (scored in one dotRows call, then picked) or a few
// rows (scored one by one), in both similarity spaces.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../../kernels/sampling.js';
import { ExactStore } from '../../retrieval/exactStore.js';

const dim = 19; // not a multiple of 4: the remainder lanes are summed too

function filled(space: 'ip' | 'cosine'): ExactStore {
  const random = mulberry32(7);
  const store = new ExactStore(dim, space, 4);
  for (let id = 0; id < 300; id++) {
    // Every fifth id is missing, so allowed ids that are not stored are skipped.
    if (id % 5 === 3) continue;
    store.add(id, Float32Array.from({ length: dim }, () => random() * 2 - 1));
  }
  store.add(1000, new Float32Array(dim)); // a zero row: cosine 0 by convention
  return store;
}

describe('ExactStore.score with allowed ids', () => {
  for (const space of ['ip', 'cosine'] as const) {
    it(`matches unrestricted scores (${space}), dense and sparse allowed sets`, () => {
      const store = filled(space);
      const random = mulberry32(11);
      const query = Float32Array.from({ length: dim }, () => random() * 2 - 1);
      const full = store.score(query);
      const byId = new Map([...full.ids].map((id, i) => [id, full.scores[i]!]));
      const dense = Uint32Array.from({ length: 1001 }, (_, id) => id).filter((id) => id % 17 !== 0);
      const sparse = Uint32Array.from([0, 3, 42, 299, 1000, 5000]);
      for (const allowed of [dense, sparse]) {
        const got = store.score(query, allowed);
        const expected = [...allowed].filter((id) => byId.has(id));
        assert.deepEqual([...got.ids], expected);
        assert.deepEqual([...got.scores], expected.map((id) => byId.get(id)!));
      }
      assert.equal(byId.get(1000), 0);
    });
  }
});
