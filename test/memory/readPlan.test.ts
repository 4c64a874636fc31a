import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planReads } from '../../memory/store/readPlan.js';

const x = (segment: number, offset: number, length: number) => ({ segment, offset, length });
const shape = (runs: ReturnType<typeof planReads>) => runs.map((r) => [r.segment, r.offset, r.length, r.items.length]);

test('planReads: groups by segment, sorts by offset, merges adjacent records and small gaps, caps run size', () => {
  const items = [x(2, 100, 50), x(1, 150, 50), x(1, 100, 50), x(1, 400, 50), x(2, 32, 68), x(1, 200, 10)];
  // Gap 0: only touching records merge.
  assert.deepEqual(shape(planReads(items, { maxGapBytes: 0, maxRunBytes: 1e9 })), [
    [1, 100, 110, 3],
    [1, 400, 50, 1],
    [2, 32, 118, 2],
  ]);
  // A 190-byte hole is cheaper to read through than to seek over.
  assert.deepEqual(shape(planReads(items, { maxGapBytes: 200, maxRunBytes: 1e9 })), [
    [1, 100, 350, 4],
    [2, 32, 118, 2],
  ]);
  // Runs stop growing at maxRunBytes; a single record bigger than that still gets its own run.
  assert.deepEqual(shape(planReads(items, { maxGapBytes: 200, maxRunBytes: 100 })), [
    [1, 100, 100, 2],
    [1, 200, 10, 1],
    [1, 400, 50, 1],
    [2, 32, 68, 1],
    [2, 100, 50, 1],
  ]);
  assert.deepEqual(planReads([x(3, 10, 500)], { maxGapBytes: 0, maxRunBytes: 100 }).map((r) => r.length), [500]);
  assert.deepEqual(planReads([], { maxGapBytes: 0, maxRunBytes: 100 }), []);
  // Items keep offset order within a run.
  assert.deepEqual(planReads(items, { maxGapBytes: 0, maxRunBytes: 1e9 })[0]!.items.map((i) => i.offset), [100, 150, 200]);
});
