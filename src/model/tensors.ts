import ort from 'onnxruntime-node';
import { float16ToFloat32, float32ToFloat16 } from '../../kernels/fp16.js';
import { VigilError } from '../../common/errors.js';

/** Float element types a graph may declare; float16 data travels as Uint16Array bits (Node 20 has no Float16Array). */
export type FloatType = 'float32' | 'float16';

export function asFloatType(type: string, where: string): FloatType {
  if (type === 'float32' || type === 'float16') return type;
  throw new VigilError('DTYPE_MISMATCH', `${where} has element type ${type}; Vigil handles float32 and float16`);
}

/** A tensor of the graph's float type from float32 values (converted when the graph wants float16). */
export function floatTensor(type: FloatType, values: Float32Array, dims: readonly number[]): ort.Tensor {
  return type === 'float16'
    ? new ort.Tensor('float16', float32ToFloat16(values), dims)
    : new ort.Tensor('float32', values, dims);
}

/** float32 view of a float tensor: the tensor's own buffer for float32, a converted copy for float16. */
export function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') return float16ToFloat32(tensor.data as Uint16Array);
  throw new VigilError('DTYPE_MISMATCH', `expected a float tensor, got ${tensor.type}`);
}

/** Re-types a float tensor (no copy when the type already matches). */
export function castFloat(tensor: ort.Tensor, type: FloatType): ort.Tensor {
  if (tensor.type === type) return tensor;
  return floatTensor(type, toFloat32(tensor), tensor.dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return new ort.Tensor('int64', data, dims);
}

export function emptyFloatTensor(type: FloatType, dims: readonly number[]): ort.Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  return type === 'float16' ? new ort.Tensor('float16', new Uint16Array(count), dims) : new ort.Tensor('float32', new Float32Array(count), dims);
}
