/**
 * Placement (src/cluster/placement.ts), a pure function: worked examples, then every combination
 * of up to 3 nodes (capacities 0-2, each draining or not) and 4 streams (each unowned, owned by
 * one of the nodes, or by a node that is gone) checked against what placement promises: every
 * stream accounted for once, live owners never moved, nobody over capacity, nothing unplaced while
 * a node has room, water-filling balance with ties to the lower node id, draining nodes hand over
 * exactly their streams, and the same answer for any input order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isVigilError } from '../../common/errors.js';
import { type Placement, type PlacementInput, type PlacementNode, place, planDrain } from '../../src/cluster/placement.js';

describe('placement: examples', () => {
  it('spreads 6 unowned streams over 3 equal nodes 2/2/2, in id order, ties to the lower node id', () => {
    const nodes = ['b', 'a', 'c'].map((nodeId) => ({ nodeId, capacity: 4 }));
    const streams = ['s6', 's1', 's3', 's2', 's5', 's4'];
    const p = place({ nodes, streams, owners: {} });
    assert.deepEqual(p.assignments, [
      { streamId: 's1', nodeId: 'a' },
      { streamId: 's2', nodeId: 'b' },
      { streamId: 's3', nodeId: 'c' },
      { streamId: 's4', nodeId: 'a' },
      { streamId: 's5', nodeId: 'b' },
      { streamId: 's6', nodeId: 'c' },
    ]);
    assert.deepEqual(p.load, { a: 2, b: 2, c: 2 });
    assert.deepEqual(p.unplaced, []);
  });

  it('fills by free capacity, not by count: a bigger node takes more', () => {
    // n2 has free 4, 3, 2 for the first three; at 1 against n1's 1, the tie goes to n1.
    const p = place({ nodes: [{ nodeId: 'n2', capacity: 4 }, { nodeId: 'n1', capacity: 1 }], streams: ['a', 'b', 'c', 'd'], owners: {} });
    assert.deepEqual(p.assignments.map((a) => a.nodeId), ['n2', 'n2', 'n2', 'n1']);
    assert.deepEqual(p.load, { n1: 1, n2: 3 });
  });

  it('keeps streams of live owners where they are and moves those of a dead node', () => {
    const p = place({
      nodes: [{ nodeId: 'n1', capacity: 2 }, { nodeId: 'n2', capacity: 2 }],
      streams: ['a', 'b', 'c'],
      owners: { a: 'n1', b: 'gone', c: null },
    });
    assert.deepEqual(p.assignments, [
      { streamId: 'b', nodeId: 'n2' },
      { streamId: 'c', nodeId: 'n1' },
    ]);
  });

  it('reports streams nobody has room for', () => {
    const p = place({ nodes: [{ nodeId: 'n1', capacity: 1 }], streams: ['a', 'b'], owners: {} });
    assert.deepEqual(p.assignments, [{ streamId: 'a', nodeId: 'n1' }]);
    assert.deepEqual(p.unplaced, ['b']);
  });

  it('drains a node: its streams are handed over to the others, it takes none', () => {
    const input: PlacementInput = {
      nodes: [{ nodeId: 'n1', capacity: 3 }, { nodeId: 'n2', capacity: 3 }, { nodeId: 'n3', capacity: 3 }],
      streams: ['a', 'b', 'c', 'd'],
      owners: { a: 'n1', b: 'n1', c: 'n2', d: 'n3' },
    };
    const p = planDrain(input, 'n1');
    assert.deepEqual(p.handOver, [
      { streamId: 'a', from: 'n1' },
      { streamId: 'b', from: 'n1' },
    ]);
    assert.deepEqual(p.assignments, [
      { streamId: 'a', nodeId: 'n2' },
      { streamId: 'b', nodeId: 'n3' },
    ]);
    assert.deepEqual(p.load, { n1: 0, n2: 2, n3: 2 });
  });

  it('a draining node keeps what nobody else has room for (it stays listed to hand over)', () => {
    const p = planDrain({ nodes: [{ nodeId: 'n1', capacity: 2 }, { nodeId: 'n2', capacity: 1 }], streams: ['a', 'b'], owners: { a: 'n1', b: 'n1' } }, 'n1');
    assert.deepEqual(p.assignments, [{ streamId: 'a', nodeId: 'n2' }]);
    assert.deepEqual(p.unplaced, ['b']);
    assert.deepEqual(p.load, { n1: 1, n2: 1 });
  });

  it('refuses duplicate node ids, duplicate streams, bad capacities and draining an unknown node (BAD_INPUT)', () => {
    const bad = (f: () => unknown) => assert.throws(f, (e) => isVigilError(e) && e.code === 'BAD_INPUT');
    bad(() => place({ nodes: [{ nodeId: 'a', capacity: 1 }, { nodeId: 'a', capacity: 2 }], streams: [], owners: {} }));
    bad(() => place({ nodes: [], streams: ['s', 's'], owners: {} }));
    bad(() => place({ nodes: [{ nodeId: 'a', capacity: -1 }], streams: [], owners: {} }));
    bad(() => place({ nodes: [{ nodeId: 'a', capacity: 1.5 }], streams: [], owners: {} }));
    bad(() => planDrain({ nodes: [], streams: [], owners: {} }, 'x'));
  });
});

/** Checks every promise of place() for one input; returns a failure description or null. */
function violations(input: PlacementInput, p: Placement): string | null {
  const live = new Map(input.nodes.map((n) => [n.nodeId, n]));
  const assigned = new Map(p.assignments.map((a) => [a.streamId, a.nodeId]));
  const unplaced = new Set(p.unplaced);
  const final = new Map<string, number>(input.nodes.map((n) => [n.nodeId, 0]));
  for (const s of input.streams) {
    const owner = input.owners[s];
    const ownerNode = owner ? live.get(owner) : undefined;
    const kept = ownerNode !== undefined && !ownerNode.draining;
    const count = Number(kept) + Number(assigned.has(s)) + Number(unplaced.has(s));
    if (count !== 1) return `${s} accounted for ${count} times`;
    if (kept && assigned.has(s)) return `${s} moved off its live owner`;
    if (ownerNode?.draining && !p.handOver.some((h) => h.streamId === s && h.from === owner)) return `${s} of draining ${owner} not handed over`;
    // Where it runs afterwards: its new node, its live owner, or (nobody has room) still its draining owner.
    const at = assigned.get(s) ?? (ownerNode ? ownerNode.nodeId : undefined);
    if (at !== undefined) final.set(at, final.get(at)! + 1);
  }
  if (p.handOver.length !== input.streams.filter((s) => live.get(input.owners[s] ?? '')?.draining).length) return 'handOver lists streams of nodes not draining';
  for (const [nodeId, n] of final) if (p.load[nodeId] !== n) return `load of ${nodeId} is ${p.load[nodeId]}, expected ${n}`;
  const gotOne = new Set(p.assignments.map((a) => a.nodeId));
  const targets = input.nodes.filter((n) => !n.draining);
  for (const a of p.assignments) {
    const node = live.get(a.nodeId);
    if (!node || node.draining) return `${a.streamId} given to ${a.nodeId}, which is gone or draining`;
  }
  const free = (n: PlacementNode) => n.capacity - final.get(n.nodeId)!;
  for (const n of targets) if (gotOne.has(n.nodeId) && free(n) < 0) return `${n.nodeId} over capacity`;
  if (p.unplaced.length > 0 && targets.some((n) => free(n) > 0)) return 'a stream is unplaced while a node has room';
  for (const a of targets) {
    if (!gotOne.has(a.nodeId)) continue;
    for (const b of targets) {
      if (free(a) < free(b) - 1) return `unbalanced: ${a.nodeId} free ${free(a)} got a stream while ${b.nodeId} has ${free(b)}`;
      if (free(a) === free(b) - 1 && a.nodeId > b.nodeId) return `tie broken the wrong way: ${a.nodeId} before ${b.nodeId}`;
    }
  }
  return null;
}

function* combinations<T>(choices: readonly T[], length: number): Generator<T[]> {
  if (length === 0) {
    yield [];
    return;
  }
  for (const head of choices) for (const rest of combinations(choices, length - 1)) yield [head, ...rest];
}

describe('placement: exhaustive', () => {
  it('keeps every promise for every combination of up to 3 nodes and 4 streams, in any input order', () => {
    let cases = 0;
    for (let nodeCount = 0; nodeCount <= 3; nodeCount++) {
      const ids = ['n1', 'n2', 'n3'].slice(0, nodeCount);
      for (const capacities of combinations([0, 1, 2], nodeCount)) {
        for (const draining of combinations([false, true], nodeCount)) {
          const nodes = ids.map((nodeId, i) => ({ nodeId, capacity: capacities[i]!, draining: draining[i]! }));
          for (let streamCount = 0; streamCount <= 4; streamCount++) {
            const streams = ['s1', 's2', 's3', 's4'].slice(0, streamCount);
            for (const owners of combinations([null, 'gone', ...ids], streamCount)) {
              const input: PlacementInput = { nodes, streams, owners: Object.fromEntries(streams.map((s, i) => [s, owners[i]])) };
              const p = place(input);
              const why = violations(input, p);
              assert.equal(why, null, `${why} for ${JSON.stringify(input)} -> ${JSON.stringify(p)}`);
              // The same answer whatever order the nodes and streams come in.
              const reversed = place({ ...input, nodes: [...nodes].reverse(), streams: [...streams].reverse() });
              assert.deepEqual(reversed, p);
              cases++;
            }
          }
        }
      }
    }
    assert.equal(cases, 181_729);
  });

  it('catches a wrong placement (the checker can fail)', () => {
    const input: PlacementInput = { nodes: [{ nodeId: 'a', capacity: 2 }, { nodeId: 'b', capacity: 2 }], streams: ['s1', 's2'], owners: {} };
    const skewed: Placement = { assignments: [{ streamId: 's1', nodeId: 'a' }, { streamId: 's2', nodeId: 'a' }], handOver: [], unplaced: [], load: { a: 2, b: 0 } };
    assert.match(violations(input, skewed) ?? '', /unbalanced/);
    const tie: Placement = { assignments: [{ streamId: 's1', nodeId: 'b' }], handOver: [], unplaced: ['s2'], load: { a: 0, b: 1 } };
    assert.notEqual(violations(input, tie), null);
  });
});
