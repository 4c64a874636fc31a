import fs from 'node:fs';
import protobuf from 'protobufjs';

/**
 * The structure of an ONNX model without its weights: nodes, graph inputs/outputs, value_info,
 * initializer names and types, opsets. The schema below declares no weight-bytes field
 * (raw_data, float_data, ...), so protobuf skips them while decoding: reading the structure of a
 * decoder with inline weights costs a pass over the bytes, not a copy of every weight.
 */
const STRUCTURE_PROTO = `
syntax = "proto3";
package vigil_structure;
message StringStringEntryProto { string key = 1; string value = 2; }
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message TensorProto { repeated int64 dims = 1; int32 data_type = 2; string name = 8; repeated StringStringEntryProto external_data = 13; }
message AttributeProto {
  string name = 1; float f = 2; int64 i = 3; bytes s = 4; TensorProto t = 5; GraphProto g = 6;
  repeated float floats = 7; repeated int64 ints = 8; repeated GraphProto graphs = 11; int32 type = 20;
}
message NodeProto { repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4; repeated AttributeProto attribute = 5; string domain = 7; }
message GraphProto {
  repeated NodeProto node = 1; string name = 2; repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12; repeated ValueInfoProto value_info = 13;
}
message ModelProto { int64 ir_version = 1; GraphProto graph = 7; repeated OperatorSetIdProto opset_import = 8; }
`;

let structureType: protobuf.Type | undefined;

/** ONNX TensorProto.DataType codes this module names. */
export const ELEM_TYPE = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, bfloat16: 16 } as const;

const ELEM_TYPE_NAME: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16', 21: 'uint4', 22: 'int4',
};

export function elemTypeName(code: number | undefined): string {
  return code === undefined ? 'unknown' : (ELEM_TYPE_NAME[code] ?? `type ${code}`);
}

export type Dim = number | string;

export interface TensorType {
  elemType: number;
  /** Absent when the file declares no shape. */
  dims?: Dim[];
}

export type AttributeValue = number | number[] | string | undefined;

export interface StructureNode {
  /** Position in the top-level graph's node list (ONNX requires topological order). */
  index: number;
  name: string;
  opType: string;
  /** '' for the default ONNX domain ('ai.onnx' is normalized to ''). */
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, AttributeValue>;
  /** Node types found inside this node's subgraphs (If / Loop / Scan bodies), by op type. */
  subgraphOps: string[];
}

interface DecodedValueInfo {
  name: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: Array<{ dim_value?: number; dim_param?: string }> } } };
}
interface DecodedAttribute {
  name: string;
  f?: number;
  i?: number;
  s?: Uint8Array;
  floats?: number[];
  ints?: number[];
  type?: number;
  g?: DecodedGraph;
  graphs?: DecodedGraph[];
}
interface DecodedNode {
  name?: string;
  op_type: string;
  domain?: string;
  input?: string[];
  output?: string[];
  attribute?: DecodedAttribute[];
}
interface DecodedGraph {
  node?: DecodedNode[];
  initializer?: Array<{ name: string; data_type?: number; dims?: number[]; external_data?: Array<{ key: string; value: string }> }>;
  input?: DecodedValueInfo[];
  output?: DecodedValueInfo[];
  value_info?: DecodedValueInfo[];
}

function tensorType(info: DecodedValueInfo): TensorType | undefined {
  const t = info.type?.tensor_type;
  if (!t?.elem_type) return undefined;
  const dims = t.shape?.dim?.map((d) => (d.dim_param ? d.dim_param : (d.dim_value ?? 0)));
  return dims ? { elemType: t.elem_type, dims } : { elemType: t.elem_type };
}

function attributeValue(a: DecodedAttribute): AttributeValue {
  switch (a.type) {
    case 1:
      return a.f ?? 0;
    case 2:
      return a.i ?? 0;
    case 3:
      return a.s ? new TextDecoder().decode(a.s) : '';
    case 6:
      return a.floats ?? [];
    case 7:
      return a.ints ?? [];
    default:
      return undefined;
  }
}

function subgraphOpTypes(attributes: readonly DecodedAttribute[]): string[] {
  const found: string[] = [];
  const visit = (graph: DecodedGraph | undefined) => {
    for (const node of graph?.node ?? []) {
      found.push(node.op_type);
      for (const a of node.attribute ?? []) {
        visit(a.g);
        for (const g of a.graphs ?? []) visit(g);
      }
    }
  };
  for (const a of attributes) {
    visit(a.g);
    for (const g of a.graphs ?? []) visit(g);
  }
  return found;
}

/** Ops whose output element type is fixed whatever the inputs. */
const FIXED_OUTPUT_TYPE: Record<string, number> = {
  Shape: ELEM_TYPE.int64, Size: ELEM_TYPE.int64, NonZero: ELEM_TYPE.int64, ArgMax: ELEM_TYPE.int64, ArgMin: ELEM_TYPE.int64,
  Equal: ELEM_TYPE.bool, Less: ELEM_TYPE.bool, LessOrEqual: ELEM_TYPE.bool, Greater: ELEM_TYPE.bool, GreaterOrEqual: ELEM_TYPE.bool,
  And: ELEM_TYPE.bool, Or: ELEM_TYPE.bool, Xor: ELEM_TYPE.bool, Not: ELEM_TYPE.bool, IsNaN: ELEM_TYPE.bool, IsInf: ELEM_TYPE.bool,
  MatMulInteger: ELEM_TYPE.int32, ConvInteger: ELEM_TYPE.int32, DynamicQuantizeMatMul: ELEM_TYPE.float32,
};

/** A decoded model's top-level graph, indexed for walking it backwards (producer of each value) and forwards. */
export class GraphStructure {
  readonly nodes: StructureNode[];
  readonly producer = new Map<string, StructureNode>();
  readonly consumers = new Map<string, StructureNode[]>();
  /** Graph inputs that are not initializers, with their declared types. */
  readonly inputs = new Map<string, TensorType | undefined>();
  readonly outputs: string[];
  readonly initializers = new Map<string, TensorType>();
  /** External data files the initializers name (relative to the model's folder). */
  readonly externalDataLocations = new Set<string>();
  /** Opset version per domain ('' = default ONNX domain). */
  readonly opsets = new Map<string, number>();
  private readonly declared = new Map<string, TensorType>();
  private readonly inferred = new Map<string, number>();
  private readonly dynamic = new Set<string>();

  constructor(model: { graph?: DecodedGraph; opset_import?: Array<{ domain?: string; version?: number }> }) {
    for (const o of model.opset_import ?? []) this.opsets.set(o.domain === 'ai.onnx' ? '' : (o.domain ?? ''), Number(o.version ?? 0));
    const graph = model.graph ?? {};
    for (const init of graph.initializer ?? []) {
      this.initializers.set(init.name, { elemType: init.data_type ?? 0, dims: (init.dims ?? []).map(Number) });
      for (const e of init.external_data ?? []) if (e.key === 'location') this.externalDataLocations.add(e.value);
    }
    for (const info of graph.input ?? []) {
      if (this.initializers.has(info.name)) continue;
      const type = tensorType(info);
      this.inputs.set(info.name, type);
      if (type) this.declared.set(info.name, type);
      this.dynamic.add(info.name);
    }
    for (const info of [...(graph.value_info ?? []), ...(graph.output ?? [])]) {
      const type = tensorType(info);
      if (type && !this.declared.has(info.name)) this.declared.set(info.name, type);
    }
    this.outputs = (graph.output ?? []).map((o) => o.name);
    this.nodes = (graph.node ?? []).map((n, index) => ({
      index,
      name: n.name ?? '',
      opType: n.op_type,
      domain: n.domain === 'ai.onnx' ? '' : (n.domain ?? ''),
      inputs: n.input ?? [],
      outputs: n.output ?? [],
      attributes: new Map((n.attribute ?? []).map((a) => [a.name, attributeValue(a)])),
      subgraphOps: subgraphOpTypes(n.attribute ?? []),
    }));
    for (const node of this.nodes) {
      for (const out of node.outputs) if (out) this.producer.set(out, node);
      for (const input of node.inputs) {
        if (!input) continue;
        const list = this.consumers.get(input);
        if (list) list.push(node);
        else this.consumers.set(input, [node]);
      }
      this.inferNode(node);
    }
  }

  /** The element type of a value: declared (input, value_info, output, initializer), else inferred from its producer. */
  elemType(name: string): number | undefined {
    return this.declared.get(name)?.elemType ?? this.initializers.get(name)?.elemType ?? this.inferred.get(name);
  }

  /** Declared dims of a value, when the file states them. */
  dims(name: string): Dim[] | undefined {
    return this.declared.get(name)?.dims ?? this.initializers.get(name)?.dims;
  }

  /** True when the value depends on a graph input other than through Shape/Size (i.e. on data, not only on shapes). */
  isDynamic(name: string): boolean {
    return this.dynamic.has(name);
  }

  isInitializer(name: string): boolean {
    return this.initializers.has(name);
  }

  private inferNode(node: StructureNode): void {
    const dataDependent = node.opType !== 'Shape' && node.opType !== 'Size' && node.inputs.some((i) => i && this.dynamic.has(i));
    for (const out of node.outputs) if (out && dataDependent) this.dynamic.add(out);
    const fixed = FIXED_OUTPUT_TYPE[node.opType];
    let type: number | undefined;
    if (fixed !== undefined) type = fixed;
    else if (node.opType === 'Cast') type = Number(node.attributes.get('to'));
    else if (node.opType === 'Where' || node.opType === 'CastLike') type = this.elemType(node.inputs[1] ?? '');
    else if (node.opType === 'DequantizeLinear') type = this.elemType(node.inputs[1] ?? '');
    else if (node.opType === 'QuantizeLinear') type = node.inputs[2] ? this.elemType(node.inputs[2]) : ELEM_TYPE.uint8;
    else if (node.opType === 'Constant' || node.opType === 'ConstantOfShape') type = undefined;
    else type = node.inputs.map((i) => (i ? this.elemType(i) : undefined)).find((t) => t !== undefined);
    // Multi-output ops (norms with saved statistics, attention with present KV) type only their first output here.
    const first = node.outputs[0];
    if (first && type !== undefined && Number.isFinite(type)) this.inferred.set(first, type);
    if (type !== undefined && fixed === undefined && node.opType !== 'Cast') {
      for (const out of node.outputs.slice(1)) if (out && !this.inferred.has(out)) this.inferred.set(out, type);
    }
  }
}

function structureRoot(): protobuf.Root {
  structureRootCache ??= protobuf.parse(STRUCTURE_PROTO, { keepCase: true }).root;
  return structureRootCache;
}

let structureRootCache: protobuf.Root | undefined;

const TO_OBJECT = { longs: Number, defaults: false, arrays: true } as const;

/** Decodes a serialized ModelProto's structure (weights' bytes are skipped). */
export function readGraphStructure(bytes: Uint8Array): GraphStructure {
  structureType ??= structureRoot().lookupType('vigil_structure.ModelProto');
  const decoded = structureType.toObject(structureType.decode(bytes), TO_OBJECT) as {
    graph?: DecodedGraph;
    opset_import?: Array<{ domain?: string; version?: number }>;
  };
  return new GraphStructure(decoded);
}

/** Reads of a file by protobuf wire format through a 64 KiB window, seeking over what is not needed. */
export class WireFileReader {
  pos = 0;
  private readonly window = Buffer.alloc(1 << 16);
  private windowStart = 0;
  private windowLength = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  private fill(at: number): void {
    this.windowStart = at;
    this.windowLength = fs.readSync(this.fd, this.window, 0, this.window.length, at);
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos < this.windowStart || this.pos >= this.windowStart + this.windowLength) this.fill(this.pos);
      if (this.windowLength === 0) throw new Error(`truncated protobuf at byte ${this.pos}`);
      const byte = this.window[this.pos - this.windowStart]!;
      this.pos++;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Error(`bad varint at byte ${this.pos}`);
  }

  bytes(start: number, end: number): Buffer {
    const length = end - start;
    if (length <= this.window.length) {
      if (start < this.windowStart || end > this.windowStart + this.windowLength) this.fill(start);
      if (end > this.windowStart + this.windowLength) throw new Error(`truncated protobuf at byte ${this.windowStart + this.windowLength}`);
      return Buffer.from(this.window.subarray(start - this.windowStart, end - this.windowStart));
    }
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, out, done, length - done, start + done);
      if (n <= 0) throw new Error(`truncated protobuf at byte ${start + done}`);
      done += n;
    }
    return out;
  }

  /** Skips a field's payload after its tag. */
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) {
      const length = this.varint();
      this.pos += length;
    }
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType} at byte ${this.pos}`);
  }
}

/**
 * The structure of an .onnx file read without loading it: the graph's fields are read from disk
 * except the initializers' weight bytes, which are seeked over (a decoder that keeps 500 MB of
 * weights inline costs a few MB of reads here). Same result as readGraphStructure on the bytes.
 */
export function readGraphStructureFromFile(file: string): GraphStructure {
  const fd = fs.openSync(file, 'r');
  try {
    const r = new WireFileReader(fd, fs.fstatSync(fd).size);
    const root = structureRoot();
    const graphType = root.lookupType('vigil_structure.GraphProto');
    const opsetType = root.lookupType('vigil_structure.OperatorSetIdProto');
    const entryType = root.lookupType('vigil_structure.StringStringEntryProto');
    const opsets: Array<{ domain?: string; version?: number }> = [];
    let graph: DecodedGraph = {};
    while (r.pos < r.size) {
      const tag = r.varint();
      const field = Math.floor(tag / 8);
      const wireType = tag & 7;
      if (wireType === 2 && (field === 7 || field === 8)) {
        const length = r.varint();
        const end = r.pos + length;
        if (field === 8) opsets.push(opsetType.toObject(opsetType.decode(r.bytes(r.pos, end)), TO_OBJECT) as { domain?: string; version?: number });
        // A graph field that appears again (a surgery copy's appendix) merges as protobuf merges it: repeated fields append.
        else graph = mergeGraphs(graph, readGraph(r, end, graphType, entryType));
        r.pos = end;
      } else {
        r.skip(wireType);
      }
    }
    return new GraphStructure({ graph, opset_import: opsets });
  } finally {
    fs.closeSync(fd);
  }
}

function mergeGraphs(a: DecodedGraph, b: DecodedGraph): DecodedGraph {
  const join = <T>(x: T[] | undefined, y: T[] | undefined): T[] => [...(x ?? []), ...(y ?? [])];
  return { node: join(a.node, b.node), initializer: join(a.initializer, b.initializer), input: join(a.input, b.input), output: join(a.output, b.output), value_info: join(a.value_info, b.value_info) };
}

/** GraphProto fields between r.pos and end: initializers (5) parsed header by header, the rest decoded. */
function readGraph(r: WireFileReader, end: number, graphType: protobuf.Type, entryType: protobuf.Type): DecodedGraph {
  const kept: Buffer[] = [];
  const initializers: NonNullable<DecodedGraph['initializer']> = [];
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 5 && wireType === 2) {
      const length = r.varint();
      const tensorEnd = r.pos + length;
      initializers.push(readTensorHeader(r, tensorEnd, entryType));
      r.pos = tensorEnd;
    } else if (field === 15 && wireType === 2) {
      r.skip(wireType); // sparse_initializer: not used by the plan
    } else {
      r.skip(wireType);
      kept.push(r.bytes(start, r.pos));
    }
  }
  const graph = graphType.toObject(graphType.decode(Buffer.concat(kept)), TO_OBJECT) as DecodedGraph;
  graph.initializer = initializers;
  return graph;
}

/** A TensorProto's name, type, dims and external data records; its data fields are seeked over. */
function readTensorHeader(r: WireFileReader, end: number, entryType: protobuf.Type): NonNullable<DecodedGraph['initializer']>[number] {
  const tensor: NonNullable<DecodedGraph['initializer']>[number] = { name: '', dims: [], external_data: [] };
  while (r.pos < end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 1 && wireType === 0) tensor.dims!.push(r.varint());
    else if (field === 1 && wireType === 2) {
      const length = r.varint();
      const fieldEnd = r.pos + length;
      while (r.pos < fieldEnd) tensor.dims!.push(r.varint());
    } else if (field === 2 && wireType === 0) tensor.data_type = r.varint();
    else if ((field === 8 || field === 13) && wireType === 2) {
      const length = r.varint();
      const bytes = r.bytes(r.pos, r.pos + length);
      r.pos += length;
      if (field === 8) tensor.name = bytes.toString('utf8');
      else tensor.external_data!.push(entryType.toObject(entryType.decode(bytes), TO_OBJECT) as { key: string; value: string });
    } else {
      r.skip(wireType);
    }
  }
  return tensor;
}
