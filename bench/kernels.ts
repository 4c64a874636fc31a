/**
 * Throughput of the hot kernels on one layer of a smolvlm2-256m frame chunk's worth of data,
 * repeated to ~64 MiB, against a plain copy (TypedArray.set) of the same bytes in the same run.
 *
 *   node --import tsx bench/kernels.ts [--mib 64] [--repeats 5]
 *
 * Each kernel runs as JavaScript and as the native addon (kernels/native), alternating in the same run.
 * Design target (issue 7): every kernel >= 25% of memcpy bandwidth.
 */
import { parseArgs } from 'node:util';
import { float16ToFloat32, float32ToFloat16 } from '../kernels/fp16.js';
import { meanOverTokens } from '../kernels/pool.js';
import { dequantizeKeysPerChannel, dequantizeValuesPerToken, quantizeKeysPerChannel, quantizeValuesPerToken } from '../kernels/quantize.js';
import { nativeKernels, nativeLoadError, useKernelBackend, type KernelBackend } from '../kernels/native.js';
import { dotRows } from '../kernels/similarity.js';
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

interface Kernel {
  name: string;
  whole: () => void;
  perBlock?: () => void;
}
const keyScales = new Float32Array(heads * headDim);
const keyZeros = new Float32Array(heads * headDim);
const valueScales = new Float32Array(heads * tokens);
const valueZeros = new Float32Array(heads * tokens);
// Exact search's shape: one row of 3 heads x 64 per chunk, scored against a question's query.
const searchDim = heads * headDim;
const searchRows = Math.floor(floats / searchDim);
const searchQuery = src.subarray(0, searchDim);
const searchScores = new Float64Array(searchRows);
const kernels: Kernel[] = [
  {
    name: 'rope rotate (rotateHeads)',
    whole: () => rotateHeads(src, heads, tokens, headDim, positions, invFreq, 1, out),
    perBlock: perBlock((b) => rotateHeads(view(src, b) as Float32Array, heads, blockTokens, headDim, blockPositions, invFreq, 1, view(out, b) as Float32Array)),
  },
  {
    name: 'rope rotate-and-place (rotateBlockInto)',
    whole: () => rotateBlockInto(src, heads, tokens, headDim, 0, invFreq, out, tokens, 0),
    perBlock: perBlock((b) => rotateBlockInto(view(src, b) as Float32Array, heads, blockTokens, headDim, 1000, invFreq, view(out, b) as Float32Array, blockTokens, 0)),
  },
  { name: 'rope unrotate in place', whole: () => rotateHeads(out, heads, tokens, headDim, positions, invFreq, -1, out) },
  {
    name: 'fp32 -> fp16',
    whole: () => float32ToFloat16(src, half),
    perBlock: perBlock((b) => float32ToFloat16(view(src, b) as Float32Array, view(half, b) as Uint16Array)),
  },
  {
    name: 'fp16 -> fp32',
    whole: () => float16ToFloat32(half, out),
    perBlock: perBlock((b) => float16ToFloat32(view(half, b) as Uint16Array, view(out, b) as Float32Array)),
  },
  {
    name: 'int8 keys per channel',
    whole: () => quantizeKeysPerChannel(src, heads, tokens, headDim, codes, keyScales, keyZeros),
    perBlock: perBlock((b) => quantizeKeysPerChannel(view(src, b) as Float32Array, heads, blockTokens, headDim, view(codes, b) as Uint8Array, scratch.a, scratch.b)),
  },
  {
    name: 'int8 values per token',
    whole: () => quantizeValuesPerToken(src, heads, tokens, headDim, codes, valueScales, valueZeros),
    perBlock: perBlock((b) => quantizeValuesPerToken(view(src, b) as Float32Array, heads, blockTokens, headDim, view(codes, b) as Uint8Array, scratch.c, scratch.d)),
  },
  { name: 'int8 keys -> fp32', whole: () => dequantizeKeysPerChannel(codes, keyScales, keyZeros, heads, tokens, headDim, out) },
  { name: 'int8 values -> fp32', whole: () => dequantizeValuesPerToken(codes, valueScales, valueZeros, heads, tokens, headDim, out) },
  {
    name: 'mean pool over tokens',
    whole: () => meanOverTokens(src, heads, tokens, headDim),
    perBlock: perBlock((b) => meanOverTokens(view(src, b) as Float32Array, heads, blockTokens, headDim, scratch.a)),
  },
  { name: 'top-64 of all values', whole: () => topK(src, 64) },
  { name: `exact search scores (dotRows, ${searchRows} rows x ${searchDim})`, whole: () => dotRows(src, searchRows, searchDim, searchQuery, searchScores) },
];

const backends: KernelBackend[] = nativeKernels() ? ['js', 'native'] : ['js'];
if (backends.length === 1) process.stdout.write(`native kernels not loaded (${nativeLoadError() ?? 'VIGIL_KERNELS=js'}): JavaScript only\n`);
/** Best time of fn under each backend; rounds alternate between the backends so both see the same machine state. */
function bestOfEach(fn: () => void): Map<KernelBackend, number> {
  const times = new Map<KernelBackend, number>(backends.map((b) => [b, Infinity]));
  for (let r = 0; r <= Number(values.repeats); r++) {
    for (const backend of backends) {
      useKernelBackend(backend);
      const started = performance.now();
      fn();
      const ms = performance.now() - started;
      if (r > 0) times.set(backend, Math.min(times.get(backend)!, ms)); // round 0 warms up
    }
  }
  return times;
}

const memcpy = best(() => out.set(src));
const memcpyBlocks = best(perBlock((b) => (view(out, b) as Float32Array).set(view(src, b) as Float32Array)));
process.stdout.write(`${(bytes / 2 ** 20).toFixed(0)} MiB of float32: one [${heads}, ${tokens}, ${headDim}] array, and ${blocks} blocks of [${heads}, ${blockTokens}, ${headDim}] (one layer of a frame chunk, the engine's call shape); best of ${values.repeats}, backends alternating, ratios against one memcpy of the whole array (${memcpy.toFixed(1)} ms, ${(bytes / 2 ** 20 / (memcpy / 1000)).toFixed(0)} MiB/s; per block ${memcpyBlocks.toFixed(1)} ms)\n\n`);
const last = backends[backends.length - 1]!;
process.stdout.write(`| kernel | js ms | ${last === 'native' ? 'native ms | native / js speed-up | ' : ''}vs memcpy | per block: ${last} ms | vs memcpy |\n|---|---|${last === 'native' ? '---|---|' : ''}---|---|---|\n`);
for (const kernel of kernels) {
  const whole = bestOfEach(kernel.whole);
  const block = kernel.perBlock ? bestOfEach(kernel.perBlock) : undefined;
  const js = whole.get('js')!;
  const fastest = whole.get(last)!;
  const nativeColumns = last === 'native' ? `${fastest.toFixed(1)} | ${(js / fastest).toFixed(1)}x | ` : '';
  const blockColumns = block ? `${block.get(last)!.toFixed(1)} | ${(memcpy / block.get(last)!).toFixed(2)}` : '- | -';
  process.stdout.write(`| ${kernel.name} | ${js.toFixed(1)} | ${nativeColumns}${(memcpy / fastest).toFixed(2)} | ${blockColumns} |\n`);
}
useKernelBackend(backends.includes('native') ? 'native' : 'js');
