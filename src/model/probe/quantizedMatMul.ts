import type { GraphBuilder } from '../onnx/graphBuilder.js';
import { quantizeInt8, type Int8Granularity } from './quantizeInt8.js';
import { quantizeQ4 } from './quantizeQ4.js';

/**
 * How a probe graph stores the weights of its x·W MatMuls (W an initializer), named by the file
 * suffix it is written under (src/model/graphFiles.ts): 'fp32' MatMul; 'q8' (`_quantized`) the node
 * pattern onnxruntime's quantize_dynamic writes; 'q4' (`_q4`) com.microsoft MatMulNBits.
 */
export type MatMulWeights = 'fp32' | 'q8' | 'q4';

export interface QuantizedMatMulOptions {
  weights: Exclude<MatMulWeights, 'fp32'>;
  /** q8: one weight scale per tensor (quantize_dynamic's default) or per output column. */
  granularity?: Int8Granularity;
  /** q4: MatMulNBits block size (32, as the model builder and quantizeQ4 default). */
  blockSize?: number;
  /** q4: MatMulNBits accuracy_level 4 = int8 activations (the CPU int4 path); 0 = float. */
  accuracyLevel?: 0 | 4;
  /**
   * q8: also quantize MatMuls of two activations (eager attention's Q·K^T and P·V), as quantize_dynamic
   * does by default (its MatMulConstBOnly option is off in dynamic mode): u8 x u8 MatMulInteger.
   */
  activationMatMuls?: boolean;
}

/** Each activation is quantized once however many MatMuls read it (q, k and v share their input), as quantize_dynamic does. */
const quantizedInputs = new WeakMap<GraphBuilder, Map<string, [string, string, string]>>();

function dynamicQuantize(g: GraphBuilder, x: string): [string, string, string] {
  let cache = quantizedInputs.get(g);
  if (!cache) quantizedInputs.set(g, (cache = new Map()));
  const hit = cache.get(x);
  if (hit) return hit;
  const outputs = [`${x}_quantized`, `${x}_scale`, `${x}_zero_point`];
  const made = g.opMulti('DynamicQuantizeLinear', [x], 3, {}, { name: 'input_QuantizeLinear', outputs }) as [string, string, string];
  cache.set(x, made);
  return made;
}

/**
 * x [.., K] · W [K, N] with W quantized, producing the same output value name a float MatMul node
 * called `nodeName` would (`<scope>/<nodeName>_output_0`), so outputs and taps keep their names.
 *
 * q8, onnxruntime quantize_dynamic's pattern (which its optimizer fuses into com.microsoft
 * DynamicQuantizeMatMul at load): DynamicQuantizeLinear(x) -> uint8 xq, x_scale, x_zero_point;
 * MatMulInteger(xq, Wq int8, x_zero_point, W_zero_point 0) -> int32; Cast to float; Mul by
 * (x_scale · W_scale). u8 activations x s8 weights is the form onnxruntime's CPU MatMulInteger
 * and its VNNI kernels take.
 * q4: MatMulNBits(x, packed, scales), symmetric 4-bit blocks (quantizeQ4.ts).
 */
export function quantizedMatMul(
  g: GraphBuilder,
  x: string,
  weightName: string,
  values: Float32Array,
  K: number,
  N: number,
  nodeName: string,
  options: QuantizedMatMulOptions,
): string {
  const out = `${g.scopedName(nodeName)}_output_0`;
  if (options.weights === 'q4') {
    const blockSize = options.blockSize ?? 32;
    const q = quantizeQ4(values, K, N, blockSize);
    const packed = g.initializer(`${weightName}_Q4`, 'uint8', [N, q.blocks, blockSize / 2], q.packed);
    const scales = g.initializer(`${weightName}_scales`, 'float32', [N * q.blocks], q.scales as Float32Array);
    return g.op(
      'MatMulNBits',
      [x, packed, scales],
      { K, N, bits: 4, block_size: blockSize, accuracy_level: options.accuracyLevel ?? 4 },
      { name: `${nodeName}_Q4`, domain: 'com.microsoft', outputs: [out] },
    );
  }
  const granularity = options.granularity ?? 'tensor';
  const q = quantizeInt8(values, K, N, granularity);
  const scaleDims = granularity === 'tensor' ? [] : [N];
  const wq = g.initializer(`${weightName}_quantized`, 'int8', [K, N], q.values);
  const wScale = g.initializer(`${weightName}_scale`, 'float32', scaleDims, q.scales);
  const wZero = g.initializer(`${weightName}_zero_point`, 'int8', scaleDims, new Int8Array(q.scales.length));
  const [xq, xScale, xZero] = dynamicQuantize(g, x);
  const product = g.op('MatMulInteger', [xq, wq, xZero, wZero], {}, { name: `${nodeName}_quant`, outputs: [`${out}_quantized`] });
  const asFloat = g.op('Cast', [product], { to: 1 }, { name: `${nodeName}_quant_output_quantized_cast` });
  const scale = g.op('Mul', [xScale, wScale], {}, { name: `${nodeName}_quant_scales_mul` });
  return g.op('Mul', [asFloat, scale], {}, { name: `${nodeName}_quant_output_scale_mul`, outputs: [out] });
}

/**
 * a · b of two activations as quantize_dynamic writes it when MatMulConstBOnly is off: both inputs
 * by DynamicQuantizeLinear (uint8, own scale and zero point), u8 x u8 MatMulInteger, Cast, Mul by
 * (a_scale · b_scale). Same output name as a float MatMul node called `nodeName`.
 */
export function quantizedActivationMatMul(g: GraphBuilder, a: string, b: string, nodeName: string): string {
  const out = `${g.scopedName(nodeName)}_output_0`;
  const [aq, aScale, aZero] = dynamicQuantize(g, a);
  const [bq, bScale, bZero] = dynamicQuantize(g, b);
  const product = g.op('MatMulInteger', [aq, bq, aZero, bZero], {}, { name: `${nodeName}_quant`, outputs: [`${out}_quantized`] });
  const asFloat = g.op('Cast', [product], { to: 1 }, { name: `${nodeName}_quant_output_quantized_cast` });
  const scale = g.op('Mul', [aScale, bScale], {}, { name: `${nodeName}_quant_scales_mul` });
  return g.op('Mul', [asFloat, scale], {}, { name: `${nodeName}_quant_output_scale_mul`, outputs: [out] });
}
