/**
 * Where streams should run (docs/scale-out.md, "Placement"): a pure function of the live nodes,
 * the desired streams and who owns each now. It never moves a stream that a live, non-draining
 * node owns (a move costs a failover); it gives every other stream (unowned, owned by a node that
 * is gone, or owned by a draining node) to the live, non-draining node with the most free capacity
 * (capacity minus the streams it owns or was just given), ties broken by node id, streams taken in
 * id order. A stream nobody has room for is `unplaced`. The result is the same whatever order the
 * inputs come in.
 */
import { VigilError } from '../../common/errors.js';

export interface PlacementNode {
  nodeId: string;
  /** How many streams it may own. */
  capacity: number;
  /** Being drained: it takes no new streams and hands over those it owns. */
  draining?: boolean;
}

export interface PlacementInput {
  /** The live nodes (the registry). */
  nodes: readonly PlacementNode[];
  /** The desired streams' ids. */
  streams: readonly string[];
  /** Each stream's owner now (a live lease), or absent / null when nobody holds it. */
  owners: Readonly<Record<string, string | null | undefined>>;
}

export interface Assignment {
  streamId: string;
  nodeId: string;
}

export interface Placement {
  /** Who should take each stream that needs an owner, in stream id order. */
  assignments: Assignment[];
  /** Streams owned by a draining node, which it must hand over (in stream id order). */
  handOver: { streamId: string; from: string }[];
  /** Streams that need an owner but no node has room for (in id order). */
  unplaced: string[];
  /** Streams per live node once the assignments are made (draining nodes count what they still own). */
  load: Record<string, number>;
}

/** Decides who takes each stream that needs an owner. BAD_INPUT for duplicate ids or a bad capacity. */
export function place(input: PlacementInput): Placement {
  const nodes = checkNodes(input.nodes);
  const streams = [...new Set(input.streams)].sort(byText);
  if (streams.length !== input.streams.length) throw new VigilError('BAD_INPUT', 'placement: a stream id appears twice');
  const load = new Map(nodes.map((n) => [n.nodeId, 0]));
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  const needing: string[] = [];
  const handOver: Placement['handOver'] = [];
  for (const streamId of streams) {
    const owner = input.owners[streamId];
    const node = owner ? byId.get(owner) : undefined;
    if (!node) {
      needing.push(streamId);
      continue;
    }
    load.set(node.nodeId, load.get(node.nodeId)! + 1);
    if (node.draining) {
      handOver.push({ streamId, from: node.nodeId });
      needing.push(streamId);
    }
  }
  const targets = nodes.filter((n) => !n.draining).sort((a, b) => byText(a.nodeId, b.nodeId));
  const assignments: Assignment[] = [];
  const unplaced: string[] = [];
  for (const streamId of needing) {
    let best: PlacementNode | null = null;
    let bestFree = 0;
    for (const node of targets) {
      const free = node.capacity - load.get(node.nodeId)!;
      // Strictly more: the first (lowest id) of equals wins.
      if (free > bestFree) {
        best = node;
        bestFree = free;
      }
    }
    if (!best) {
      unplaced.push(streamId);
      continue;
    }
    assignments.push({ streamId, nodeId: best.nodeId });
    load.set(best.nodeId, load.get(best.nodeId)! + 1);
  }
  // A draining node's streams leave it once placed elsewhere.
  const placed = new Set(assignments.map((a) => a.streamId));
  for (const { streamId, from } of handOver) if (placed.has(streamId)) load.set(from, load.get(from)! - 1);
  return { assignments, handOver, unplaced, load: Object.fromEntries([...load].sort(([a], [b]) => byText(a, b))) };
}

/** The placement with `nodeId` draining: its streams in `handOver`, and where each goes. */
export function planDrain(input: PlacementInput, nodeId: string): Placement {
  if (!input.nodes.some((n) => n.nodeId === nodeId)) throw new VigilError('BAD_INPUT', `placement: node '${nodeId}' is not a live node`);
  return place({ ...input, nodes: input.nodes.map((n) => (n.nodeId === nodeId ? { ...n, draining: true } : n)) });
}

function checkNodes(nodes: readonly PlacementNode[]): PlacementNode[] {
  const seen = new Set<string>();
  for (const node of nodes) {
    if (seen.has(node.nodeId)) throw new VigilError('BAD_INPUT', `placement: node '${node.nodeId}' appears twice`);
    seen.add(node.nodeId);
    if (!Number.isInteger(node.capacity) || node.capacity < 0) throw new VigilError('BAD_INPUT', `placement: node '${node.nodeId}' has capacity ${node.capacity} (a whole number >= 0)`);
  }
  return [...nodes];
}

/** Code-unit order (not locale order): the same on every node. */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
