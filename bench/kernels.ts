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
import { ropeInvFreq, rotateBlockInto, rotateHeads } from '../kernels/rope.js';
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

// The engine's own call shape: one layer of one frame chunk, [3, 77, 64] (59 KiB), over and over.
const blockTokens = 77;
const blockFloats = heads * blockTokens * headDim;
const blocks = Math.floor(floats / blockFloats);
const blockPositions = Array.from({ length: blockTokens }, (_, i) => 1000 + i);
const view = (a: Float32Array | Uint16Array | Uint8Array, b: number) => a.subarray(b * blockFloats, (b + 1) * blockFloats);
const scratch = { a: new Float32Array(heads * headDim), b: new Float32Array(heads * headDim), c: new Float32Array(heads * blockTokens), d: new Float32Array(heads * blockTokens) };
const perBlock = (fn: (b: number) => void) => () => {
  for (let b = 0; b < blocks; b++) fn(b);
};

const memcpy = best(() => out.set(src));
const rows: Array<[string, number, number | undefined]> = [
  ['memcpy (Float32Array.set)', memcpy, best(perBlock((b) => (view(out, b) as Float32Array).set(view(src, b) as Float32Array)))],
  [
    'rope rotate (rotateHeads)',
    best(() => rotateHeads(src, heads, tokens, headDim, positions, invFreq, 1, out)),
    best(perBlock((b) => rotateHeads(view(src, b) as Float32Array, heads, blockTokens, headDim, blockPositions, invFreq, 1, view(out, b) as Float32Array))),
  ],
  [
    'rope rotate-and-place (rotateBlockInto)',
    best(() => rotateBlockInto(src, heads, tokens, headDim, 0, invFreq, out, tokens, 0)),
    best(perBlock((b) => rotateBlockInto(view(src, b) as Float32Array, heads, blockTokens, headDim, 1000, invFreq, view(out, b) as Float32Array, blockTokens, 0))),
  ],
  ['rope unrotate in place', best(() => rotateHeads(out, heads, tokens, headDim, positions, invFreq, -1, out)), undefined],
  ['fp32 -> fp16', best(() => float32ToFloat16(src, half)), best(perBlock((b) => float32ToFloat16(view(src, b) as Float32Array, view(half, b) as Uint16Array)))],
  ['fp16 -> fp32', best(() => float16ToFloat32(half, out)), best(perBlock((b) => float16ToFloat32(view(half, b) as Uint16Array, view(out, b) as Float32Array)))],
  [
    'int8 keys per channel',
    best(() => quantizeKeysPerChannel(src, heads, tokens, headDim, codes, new Float32Array(heads * headDim), new Float32Array(heads * headDim))),
    best(perBlock((b) => quantizeKeysPerChannel(view(src, b) as Float32Array, heads, blockTokens, headDim, view(codes, b) as Uint8Array, scratch.a, scratch.b))),
  ],
  [
    'int8 values per token',
    best(() => quantizeValuesPerToken(src, heads, tokens, headDim, codes, new Float32Array(heads * tokens), new Float32Array(heads * tokens))),
    best(perBlock((b) => quantizeValuesPerToken(view(src, b) as Float32Array, heads, blockTokens, headDim, view(codes, b) as Uint8Array, scratch.c, scratch.d))),
  ],
  ['mean pool over tokens', best(() => meanOverTokens(src, heads, tokens, headDim)), best(perBlock((b) => meanOverTokens(view(src, b) as Float32Array, heads, blockTokens, headDim, scratch.a)))],
  ['top-64 of all values', best(() => topK(src, 64)), undefined],
];
process.stdout.write(`${(bytes / 2 ** 20).toFixed(0)} MiB of float32: one [${heads}, ${tokens}, ${headDim}] array, and ${blocks} blocks of [${heads}, ${blockTokens}, ${headDim}] (one layer of a frame chunk, the engine's call shape); best of ${values.repeats}, ratios against one memcpy of the whole array\n\n`);
process.stdout.write('| kernel | one array: ms | MiB/s | vs memcpy | per block: ms | vs memcpy |\n|---|---|---|---|---|---|\n');
for (const [name, ms, blockMs] of rows) {
  const block = blockMs === undefined ? '- | -' : `${blockMs.toFixed(1)} | ${(memcpy / blockMs).toFixed(2)}`;
  process.stdout.write(`| ${name} | ${ms.toFixed(1)} | ${(bytes / 2 ** 20 / (ms / 1000)).toFixed(0)} | ${(memcpy / ms).toFixed(2)} | ${block} |\n`);
}
