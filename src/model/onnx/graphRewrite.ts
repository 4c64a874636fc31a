import fs from 'node:fs';
import { onnxRoot } from './onnxSchema.js';
import { WireFileReader } from './onnxStructure.js';
import type { NodeProtoObject } from './splitAttention.js';

/** What to change in a model's top-level graph: nodes replaced (by index in the node list) and outputs removed. */
export interface GraphEdit {
  replaceNodes: ReadonlyMap<number, readonly NodeProtoObject[]>;
  removeOutputs: ReadonlySet<string>;
}

type Segment = { start: number; end: number } | Uint8Array;

const MODEL_GRAPH_FIELD = 7;
const GRAPH_NODE_FIELD = 1;
const GRAPH_OUTPUT_FIELD = 12;

/**
 * Writes `source` with `edit` applied and `appendix` (a serialized ModelProto, merged by protobuf)
 * after it, to `target`. Works on the wire format: every field it does not edit (weights, value_info,
 * fields unknown to Vigil's schema subset) is copied byte for byte from the file, never decoded, so a
 * decoder with hundreds of MB of inline weights costs a streamed copy, not a second copy in memory.
 * Replacement nodes take the removed node's place in the list (ONNX wants topological order).
 */
export function writeEditedModel(source: string, target: string, edit: GraphEdit, appendix: Uint8Array): void {
  const nodeType = onnxRoot().lookupType('onnx.NodeProto');
  const valueInfoType = onnxRoot().lookupType('onnx.ValueInfoProto');
  const fd = fs.openSync(source, 'r');
  const out = fs.openSync(target, 'w');
  try {
    const r = new WireFileReader(fd, fs.fstatSync(fd).size);
    const top: Segment[] = [];
    let sawGraph = false;
    while (r.pos < r.size) {
      const start = r.pos;
      const tag = r.varint();
      if (tag >>> 3 === MODEL_GRAPH_FIELD && (tag & 7) === 2 && !sawGraph) {
        sawGraph = true;
        const length = r.varint();
        const graph = editGraph(r, r.pos + length, edit, (node) => nodeType.encode(nodeType.fromObject(node)).finish(), (bytes) => String((valueInfoType.decode(bytes) as unknown as { name: string }).name));
        const size = graph.reduce((sum, s) => sum + segmentLength(s), 0);
        top.push(varint(tag), varint(size), ...graph);
      } else {
        r.skip(tag & 7);
        top.push({ start, end: r.pos });
      }
    }
    if (!sawGraph) throw new Error(`${source} has no graph`);
    for (const segment of [...top, appendix]) copySegment(fd, out, segment);
    fs.fsyncSync(out);
  } finally {
    fs.closeSync(out);
    fs.closeSync(fd);
  }
}

function editGraph(r: WireFileReader, end: number, edit: GraphEdit, encodeNode: (node: NodeProtoObject) => Uint8Array, outputName: (bytes: Uint8Array) => string): Segment[] {
  const segments: Segment[] = [];
  let nodeIndex = 0;
  const replaced = new Set<number>();
  const removed = new Set<string>();
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.varint();
    const field = tag >>> 3;
    const lengthDelimited = (tag & 7) === 2;
    // A length-delimited field's payload starts after its length varint.
    let payload = r.pos;
    if (lengthDelimited) {
      const length = r.varint();
      payload = r.pos;
      r.pos += length;
    } else {
      r.skip(tag & 7);
    }
    if (field === GRAPH_NODE_FIELD && lengthDelimited) {
      const replacement = edit.replaceNodes.get(nodeIndex++);
      if (replacement) {
        replaced.add(nodeIndex - 1);
        for (const node of replacement) {
          const bytes = encodeNode(node);
          segments.push(varint(tag), varint(bytes.length), bytes);
        }
        continue;
      }
    } else if (field === GRAPH_OUTPUT_FIELD && lengthDelimited) {
      const name = outputName(r.bytes(payload, r.pos));
      if (edit.removeOutputs.has(name)) {
        removed.add(name);
        continue;
      }
    }
    segments.push({ start, end: r.pos });
  }
  const missingNode = [...edit.replaceNodes.keys()].find((i) => !replaced.has(i));
  if (missingNode !== undefined) throw new Error(`graph has no node ${missingNode} to replace`);
  const missingOutput = [...edit.removeOutputs].find((n) => !removed.has(n));
  if (missingOutput !== undefined) throw new Error(`graph has no output '${missingOutput}' to remove`);
  return segments;
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

function segmentLength(s: Segment): number {
  return s instanceof Uint8Array ? s.length : s.end - s.start;
}

function copySegment(fd: number, out: number, s: Segment): void {
  if (s instanceof Uint8Array) {
    fs.writeSync(out, s);
    return;
  }
  const chunk = Buffer.alloc(Math.min(1 << 20, s.end - s.start));
  for (let at = s.start; at < s.end; ) {
    const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, s.end - at), at);
    if (n <= 0) throw new Error(`truncated model file at byte ${at}`);
    fs.writeSync(out, chunk.subarray(0, n));
    at += n;
  }
}
