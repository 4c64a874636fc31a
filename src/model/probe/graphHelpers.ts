import { float32ToFloat16 } from '../../../kernels/fp16.js';
import type { GraphBuilder } from '../onnx/graphBuilder.js';
import { quantizedMatMul, type QuantizedMatMulOptions } from './quantizedMatMul.js';
import type { WeightRole, WeightSource } from './weightSource.js';

export type FloatType = 'float32' | 'float16';

/**
 * How the probe graphs compute attention. 'eager': MatMul, scale, Where-mask, Softmax, MatMul
 * (HF's eager attention, standard ONNX ops only). 'fused': onnxruntime's contrib ops
 * (com.microsoft GroupQueryAttention in the decoder, MultiHeadAttention in the vision encoder),
 * which only onnxruntime runs; bench/attention-paths.ts measures both.
 */
export type AttentionPath = 'eager' | 'fused';

/** The contrib-op domain of onnxruntime's fused kernels. */
export const MS_DOMAIN = 'com.microsoft';

/** Graph-building context shared by the probe graphs: the builder, the weight values and the float type. */
export interface ProbeGraphContext {
  g: GraphBuilder;
  weights: WeightSource;
  dtype: FloatType;
  /** Weight MatMuls (x·W, W an initializer) quantized this way (quantizedMatMul.ts); absent: float MatMul. */
  matmul?: QuantizedMatMulOptions;
}

/** Adds a named weight, stored in the model's float type. MatMul weights are laid out [in, out]. */
export function weight(ctx: ProbeGraphContext, name: string, dims: readonly number[], role: WeightRole): string {
  const values = ctx.weights(name, dims, role);
  const data = ctx.dtype === 'float16' ? float32ToFloat16(values) : values;
  return ctx.g.initializer(name, ctx.dtype, dims, data);
}

export function floatScalar(ctx: ProbeGraphContext, value: number): string {
  if (ctx.dtype === 'float32') return ctx.g.scalar('float32', value);
  return ctx.g.initializer(`/constants/half_${ctx.g.weightBytes}_${value}`, 'float16', [], float32ToFloat16(Float32Array.of(value)));
}

/** The most negative finite value of the float type: masked scores, as HF's finfo(dtype).min. */
export function maskValue(dtype: FloatType): number {
  return dtype === 'float16' ? -65504 : -3.4028234663852886e38;
}

/** Linear layer x·W (+ b), named like a torch export: `<scope>/<name>/MatMul`, `<scope>/<name>/Add`. */
export function linear(
  ctx: ProbeGraphContext,
  x: string,
  prefix: string,
  layer: string,
  inFeatures: number,
  outFeatures: number,
  bias: boolean,
  role: WeightRole = 'linear',
): string {
  const y = weightMatMul(ctx, x, `${prefix}.${layer}.weight`, inFeatures, outFeatures, role, `${layer}/MatMul`);
  if (!bias) return y;
  const b = weight(ctx, `${prefix}.${layer}.bias`, [outFeatures], 'bias');
  return ctx.g.op('Add', [y, b], {}, { name: `${layer}/Add` });
}

/** x·W for a [K, N] weight: a float MatMul node `nodeName`, or its quantized form when `ctx.matmul` says so (same output name). */
export function weightMatMul(ctx: ProbeGraphContext, x: string, weightName: string, K: number, N: number, role: WeightRole, nodeName: string): string {
  if (!ctx.matmul) return ctx.g.op('MatMul', [x, weight(ctx, weightName, [K, N], role)], {}, { name: nodeName });
  if (ctx.dtype !== 'float32') throw new Error(`${ctx.matmul.weights} weights: float32 graphs only, not ${ctx.dtype}`);
  return quantizedMatMul(ctx.g, x, weightName, ctx.weights(weightName, [K, N], role), K, N, nodeName, ctx.matmul);
}
