import { ATTRIBUTE_TYPE, ONNX_DATA_TYPE, type OnnxDataType } from './onnxSchema.js';
import type { ExternalDataFile } from './externalDataFile.js';

/** A dimension: a fixed size, or a symbolic name such as 'batch_size' (Optimum's names). */
export type Dim = number | string;

export type TensorData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

export type AttributeValue = number | number[] | string | { floats: number[] } | { float: number };

export interface OpOptions {
  /** Node name relative to the current scope, e.g. 'q_proj/MatMul'. Defaults to the op type. */
  name?: string;
  domain?: string;
  /** Output value names (default `<node name>_output_<k>`): a rewrite that replaces a node keeps its output's name. */
  outputs?: readonly string[];
}

interface TensorProtoObject {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
  data_location?: number;
  external_data?: Array<{ key: string; value: string }>;
}

interface NodeProtoObject {
  name: string;
  op_type: string;
  domain: string;
  input: string[];
  output: string[];
  attribute: Array<Record<string, unknown>>;
}

interface ValueInfoObject {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: Array<{ dim_value?: number; dim_param?: string }> } } };
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function valueInfo(name: string, dtype: OnnxDataType, dims: readonly Dim[]): ValueInfoObject {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: ONNX_DATA_TYPE[dtype],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttributeValue): Record<string, unknown> {
  if (typeof value === 'string') return { name, type: ATTRIBUTE_TYPE.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: use { float: x } for float attributes`);
    return { name, type: ATTRIBUTE_TYPE.INT, i: value };
  }
  if (Array.isArray(value)) return { name, type: ATTRIBUTE_TYPE.INTS, ints: value };
  if ('float' in value) return { name, type: ATTRIBUTE_TYPE.FLOAT, f: value.float };
  return { name, type: ATTRIBUTE_TYPE.FLOATS, floats: value.floats };
}

/**
 * Builds an ONNX graph with torch.onnx-style names: a node `/model/layers.0/self_attn/q_proj/MatMul`
 * produces `/model/layers.0/self_attn/q_proj/MatMul_output_0`, so the intermediate values of Vigil's
 * probe models carry the names an export of a real model would give them.
 */
export class GraphBuilder {
  private readonly nodes: NodeProtoObject[] = [];
  private readonly initializers: TensorProtoObject[] = [];
  private readonly inputs: ValueInfoObject[] = [];
  private readonly outputs: ValueInfoObject[] = [];
  private readonly usedNodeNames = new Map<string, number>();
  private readonly constantCache = new Map<string, string>();
  private readonly scopes: string[] = [];
  private readonly customDomains = new Set<string>();
  private initializerBytes = 0;

  constructor(
    readonly name: string,
    private readonly externalData?: ExternalDataFile,
    private readonly externalThresholdBytes = 1024,
  ) {}

  /** Operator domains other than the default ONNX one that nodes use (e.g. 'com.microsoft'). */
  get domains(): string[] {
    return [...this.customDomains].sort();
  }

  /** Total bytes of initializer data written so far (inline and external). */
  get weightBytes(): number {
    return this.initializerBytes;
  }

  input(name: string, dtype: OnnxDataType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  /** Declares `value` as a graph output named `name` (an Identity node renames it when they differ). */
  output(value: string, name: string, dtype: OnnxDataType, dims: readonly Dim[]): void {
    if (value !== name) this.nodes.push(this.makeNode('Identity', [value], [name], {}, name));
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  /** Puts the graph outputs in the given order (every declared output must be named once). */
  orderOutputs(names: readonly string[]): void {
    const byName = new Map(this.outputs.map((o) => [o.name, o]));
    if (names.length !== this.outputs.length || names.some((n) => !byName.has(n))) {
      throw new Error(`orderOutputs: [${names.join(', ')}] does not match the declared outputs`);
    }
    this.outputs.splice(0, this.outputs.length, ...names.map((n) => byName.get(n)!));
  }

  initializer(name: string, dtype: OnnxDataType, dims: readonly number[], data: TensorData): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) {
      throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
    }
    const bytes = bytesOf(data);
    const tensor: TensorProtoObject = { name, dims: [...dims], data_type: ONNX_DATA_TYPE[dtype] };
    if (this.externalData && bytes.byteLength >= this.externalThresholdBytes) {
      const { offset, length } = this.externalData.append(bytes);
      tensor.data_location = 1;
      tensor.external_data = [
        { key: 'location', value: this.externalData.location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ];
    } else {
      // Copy: the caller may reuse its buffer for the next tensor.
      tensor.raw_data = new Uint8Array(bytes);
    }
    this.initializerBytes += bytes.byteLength;
    this.initializers.push(tensor);
    return name;
  }

  /** A small constant, shared between all uses of the same value. */
  constant(dtype: OnnxDataType, dims: readonly number[], values: readonly number[]): string {
    const key = `${dtype}|${dims.join(',')}|${values.join(',')}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    const name = `/constants/${dtype}_${this.constantCache.size}`;
    this.constantCache.set(key, name);
    return this.initializer(name, dtype, dims, typedArrayFor(dtype, values));
  }

  int64s(values: readonly number[]): string {
    return this.constant('int64', [values.length], values);
  }

  scalar(dtype: OnnxDataType, value: number): string {
    return this.constant(dtype, [], [value]);
  }

  scope<T>(prefix: string, build: () => T): T {
    this.scopes.push(prefix);
    try {
      return build();
    } finally {
      this.scopes.pop();
    }
  }

  /** The full name a node called `name` gets in the current scope (before any de-duplicating suffix). */
  scopedName(name: string): string {
    return `${this.scopes.join('')}/${name}`;
  }

  op(opType: string, inputs: readonly string[], attrs: Record<string, AttributeValue> = {}, options: OpOptions = {}): string {
    return this.opMulti(opType, inputs, 1, attrs, options)[0]!;
  }

  opMulti(
    opType: string,
    inputs: readonly string[],
    outputCount: number,
    attrs: Record<string, AttributeValue> = {},
    options: OpOptions = {},
  ): string[] {
    const nodeName = this.uniqueNodeName(this.scopedName(options.name ?? opType));
    if (options.outputs && options.outputs.length !== outputCount) throw new Error(`${nodeName}: ${options.outputs.length} output names for ${outputCount} outputs`);
    const outputs = options.outputs ? [...options.outputs] : Array.from({ length: outputCount }, (_, k) => `${nodeName}_output_${k}`);
    const node = this.makeNode(opType, inputs, outputs, attrs, nodeName);
    if (options.domain) {
      node.domain = options.domain;
      this.customDomains.add(options.domain);
    }
    this.nodes.push(node);
    return outputs;
  }

  toProto(): Record<string, unknown> {
    return {
      name: this.name,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
    };
  }

  private makeNode(
    opType: string,
    inputs: readonly string[],
    outputs: string[],
    attrs: Record<string, AttributeValue>,
    name: string,
  ): NodeProtoObject {
    return {
      name,
      op_type: opType,
      domain: '',
      input: [...inputs],
      output: outputs,
      attribute: Object.entries(attrs).map(([key, value]) => attribute(key, value)),
    };
  }

  private uniqueNodeName(base: string): string {
    const seen = this.usedNodeNames.get(base) ?? 0;
    this.usedNodeNames.set(base, seen + 1);
    return seen === 0 ? base : `${base}_${seen}`;
  }
}

function typedArrayFor(dtype: OnnxDataType, values: readonly number[]): TensorData {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values);
    case 'int64':
      return BigInt64Array.from(values, (v) => BigInt(v));
    case 'int32':
      return Int32Array.from(values);
    case 'bool':
    case 'uint8':
      return Uint8Array.from(values);
    case 'int8':
      return Int8Array.from(values);
    case 'float16':
      throw new Error('float16 constants: convert with kernels/fp16 and use initializer()');
  }
}
