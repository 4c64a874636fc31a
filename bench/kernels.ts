/**
 * Throughput of the hot kernels on one layer of a smolvlm2-256m frame chunk's worth of data,
 * repeated to ~64 MiB, against a plain copy (TypedArray.set) of the same bytes in the same run.
 *
 *   node --import tsx bench/kernels.ts [--mib 64] [--repeats 5]
 *
 * Design target (issue 7): every kernel >= 25% of memcpy bandwidth.
 */
import { parseArgs } from 'node:util';
import { float16ToFloat32, float32ToFloat16 } from '../kernels/fp16.js';
import { meanOverTokens } from '../kernels/pool.js';
import { quantizeKeysPerChannel, quantizeValuesPerToken } from '../kernels/quantize.js';
import { ropeInvFreq, rotateHeads } from '../kernels/rope.js';
import { mulberry32 } from '../kernels/sampling.js';
import { topK } from '../kernels/topk.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, repeats: { type: 'string', default: '5' } } });
const heads = 3;
const headDim = 64;
const tokens = Math.floor((Number(values.mib) * 2 ** 20) / 4 / heads / headDim);
const floats = heads * tokens * headDim;
const random = mulberry32(7);
const src = Float32Array.from({ length: floats }, () => random() * 4 - 2);
const out = new Float32Array(floats);
const half = new Uint16Array(floats);
const codes = new Uint8Array(floats);
// Compact positions as the engine uses them (contexts of a few thousand tokens), repeating.
const positions = Array.from({ length: tokens }, (_, i) => i % 8192);
const invFreq = ropeInvFreq(headDim, 100000);
const bytes = floats * 4;

function best(fn: () => void): number {
  fn();
  let fastest = Infinity;
  for (let r = 0; r < Number(values.repeats); r++) {
    const started = performance.now();
    fn();
    fastest = Math.min(fastest, performance.now() - started);
  }
  return fastest;
}

const memcpy = best(() => out.set(src));
const rows: Array<[string, number]> = [
  ['memcpy (Float32Array.set)', memcpy],
  ['rope rotate (rotateHeads)', best(() => rotateHeads(src, heads, tokens, headDim, positions, invFreq, 1, out))],
  ['rope unrotate in place', best(() => rotateHeads(out, heads, tokens, headDim, positions, invFreq, -1, out))],
  ['fp32 -> fp16', best(() => float32ToFloat16(src, half))],
  ['fp16 -> fp32', best(() => float16ToFloat32(half, out))],
  ['int8 keys per channel', best(() => quantizeKeysPerChannel(src, heads, tokens, headDim, codes, new Float32Array(heads * headDim), new Float32Array(heads * headDim)))],
  ['int8 values per token', best(() => quantizeValuesPerToken(src, heads, tokens, headDim, codes, new Float32Array(heads * tokens), new Float32Array(heads * tokens)))],
  ['mean pool over tokens', best(() => meanOverTokens(src, heads, tokens, headDim))],
  ['top-64 of all values', best(() => topK(src, 64))],
];
process.stdout.write(`${(bytes / 2 ** 20).toFixed(0)} MiB of float32 ([${heads}, ${tokens}, ${headDim}]), best of ${values.repeats}\n\n`);
process.stdout.write('| kernel | ms | MiB/s (float32 input) | vs memcpy |\n|---|---|---|---|\n');
for (const [name, ms] of rows) {
  process.stdout.write(`| ${name} | ${ms.toFixed(1)} | ${(bytes / 2 ** 20 / (ms / 1000)).toFixed(0)} | ${(memcpy / ms).toFixed(2)} |\n`);
}
