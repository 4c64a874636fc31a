// Gaps by range: overlap with [from, to] (ends included), time order, limit; persisted across reopen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkStore, type StreamGap } from '../../memory/store/index.js';
import { checkAcrossReopen, rejectsWithCode, tempDir, TINY } from './helpers.js';

const GAPS: StreamGap[] = [
  { tStart: 100, tEnd: 110, reason: 'camera unreachable' },
  { tStart: 10, tEnd: 14.5, reason: 'reconnect' },
  { tStart: 50, tEnd: 50, reason: 'restart' },
  { tStart: 30, tEnd: 60, reason: 'camera unreachable' },
];

test('gaps(range): those overlapping [from, to], by start time, at most limit', async (t) => {
  const dir = tempDir(t);
  let store = ChunkStore.open({ dir, geometry: TINY });
  for (const g of GAPS) store.recordGap(g);
  const starts = (gs: StreamGap[]) => gs.map((g) => g.tStart);
  const check = (s: ChunkStore): void => {
    assert.deepEqual(starts(s.gaps()), [10, 30, 50, 100]);
    assert.deepEqual(s.gaps({ from: 12, to: 12 }), [GAPS[1]]);
    // Ends are included: a gap ending exactly at `from`, one starting exactly at `to`.
    assert.deepEqual(starts(s.gaps({ from: 14.5, to: 30 })), [10, 30]);
    assert.deepEqual(starts(s.gaps({ from: 50, to: 50 })), [30, 50]);
    assert.deepEqual(starts(s.gaps({ from: 61, to: 99 })), []);
    assert.deepEqual(starts(s.gaps({ from: 55 })), [30, 100]);
    assert.deepEqual(starts(s.gaps({ to: 29 })), [10]);
    assert.deepEqual(starts(s.gaps({ limit: 2 })), [10, 30]);
    assert.deepEqual(starts(s.gaps({ from: 40, limit: 1 })), [30]);
    assert.deepEqual(s.gaps({ limit: 0 }), []);
    assert.deepEqual(s.gaps({ from: 20, to: 10 }), []);
  };
  await rejectsWithCode(() => store.gaps({ from: Number.NaN }), 'BAD_INPUT');
  await rejectsWithCode(() => store.gaps({ limit: 1.5 }), 'BAD_INPUT');
  await rejectsWithCode(() => store.gaps({ limit: -1 }), 'BAD_INPUT');
  store = await checkAcrossReopen(store, dir, check);
  await store.dispose();
});
