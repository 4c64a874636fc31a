// The native kernels (kernels/native/vigil_kernels.c, built by node-gyp at install): the same
// arithmetic as the JavaScript kernels, bit for bit, vectorized. The JS kernels stay the
// reference and the fallback; VIGIL_KERNELS=js selects them, VIGIL_KERNELS=native makes a
// missing build an error instead of a fallback.
import { createRequire } from 'node:module';

/** The addon's functions. Argument checks mirror the JS wrappers'; the addon re-checks every extent. */
export interface NativeKernels {
  rotateRows(
    src: Float32Array,
    srcTokens: number,
    dst: Float32Array,
    dstTotal: number,
    dstOffset: number,
    heads: number,
    tokens: number,
    headDim: number,
    half: number,
    cos: Float64Array,
    sin: Float64Array,
    rows: Int32Array,
    sign: number,
  ): void;
  float32ToFloat16(src: Float32Array, dst: Uint16Array): void;
  float16ToFloat32(src: Uint16Array, dst: Float32Array): void;
  /** -1, or the head whose values include NaN/Inf (nothing of that head is written). */
  quantizeKeysPerChannel(src: Float32Array, heads: number, tokens: number, headDim: number, codes: Uint8Array, scales: Float32Array, zeros: Float32Array): number;
  /** -1, or the (head * tokens + token) row whose values include NaN/Inf. */
  quantizeValuesPerToken(src: Float32Array, heads: number, tokens: number, headDim: number, codes: Uint8Array, scales: Float32Array, zeros: Float32Array): number;
  dequantizeKeysPerChannel(codes: Uint8Array, scales: Float32Array, zeros: Float32Array, heads: number, tokens: number, headDim: number, dst: Float32Array): void;
  dequantizeValuesPerToken(codes: Uint8Array, scales: Float32Array, zeros: Float32Array, heads: number, tokens: number, headDim: number, dst: Float32Array): void;
  meanOverTokens(src: Float32Array, heads: number, tokens: number, headDim: number, dst: Float32Array): void;
  /** Fills vals/idx with the k best scores, sorted best-first; k in [1, scores.length]. */
  topK(scores: Float32Array | Float64Array, k: number, vals: Float64Array, idx: Int32Array): void;
  /** out[r] = query . row r of a [rows, dim] matrix, summed as retrieval's exact store does. */
  dotRows(matrix: Float32Array, rows: number, dim: number, query: Float32Array, out: Float64Array): void;
  /** out[r] = scales[from + r] * (query . int8 row from + r), summed as kernels/int8Rows.ts dotRowsInt8 does; dim <= 4096. */
  dotRowsInt8(codes: Int8Array, scales: Float32Array, from: number, rows: number, dim: number, query: Float32Array, out: Float64Array): void;
  /** out[r] = scales[from + r] * queryScale * (int16 query . int8 row from + r), as dotRowsInt16; dim <= 516. */
  dotRowsInt16(codes: Int8Array, scales: Float32Array, from: number, rows: number, dim: number, query: Int16Array, queryScale: number, out: Float64Array): void;
  /** A page-cache hint (posix_fadvise WILLNEED) for each [offsets[i], offsets[i] + lengths[i]) of fds[i]; errors ignored. */
  prefetchRanges(fds: Int32Array, offsets: Float64Array, lengths: Float64Array): void;
  /** glibc's malloc_trim(0): true when free heap pages went back to the OS. */
  trimHeap(): boolean;
}

export type KernelBackend = 'native' | 'js';

const ADDON = './native/build/Release/vigil_kernels.node';

function load(): { addon?: NativeKernels; error?: string } {
  try {
    return { addon: createRequire(import.meta.url)(ADDON) as NativeKernels };
  } catch (error) {
    return { error: (error as Error).message.split('\n')[0] };
  }
}

const requested = process.env.VIGIL_KERNELS;
if (requested !== undefined && requested !== 'js' && requested !== 'native') {
  throw new Error(`VIGIL_KERNELS must be "js" or "native", got "${requested}"`);
}
const loaded = requested === 'js' ? {} : load();
if (requested === 'native' && !loaded.addon) {
  throw new Error(`VIGIL_KERNELS=native but the native kernels did not load (${loaded.error}); build them with \`npm run build:kernels\``);
}
if (!loaded.addon && requested === undefined) {
  process.emitWarning(`native kernels not loaded, using the JavaScript ones (slower, same results): ${loaded.error}`, { code: 'VIGIL_KERNELS' });
}
let active: NativeKernels | undefined = loaded.addon;

/** The native kernels when in use; each JS kernel calls them when this is defined. */
export function nativeKernels(): NativeKernels | undefined {
  return active;
}

/**
 * Asks the OS to start reading these file ranges into the page cache, so reads that follow overlap
 * on the device (the sealed index's list reads; see vigil_kernels.c). Only a hint, and the one
 * function here that is not arithmetic: nothing happens without the addon or off Linux, and no
 * result depends on it.
 */
export function prefetchRanges(fds: Int32Array, offsets: Float64Array, lengths: Float64Array): void {
  if (fds.length < 2 || offsets.length < fds.length || lengths.length < fds.length) return;
  // The hint helps reads from a device and the addon's, not the JS kernels' choice: loaded.addon.
  loaded.addon?.prefetchRanges?.(fds, offsets, lengths);
}

/**
 * Hands the C heap's free pages back to the OS (glibc's malloc_trim; see vigil_kernels.c). Not
 * arithmetic either: false without the addon (an older build included), off glibc, or when
 * nothing was released.
 */
export function trimHeap(): boolean {
  return loaded.addon?.trimHeap?.() ?? false;
}

/** Which implementation the kernels run now. */
export function kernelBackend(): KernelBackend {
  return active ? 'native' : 'js';
}

/** Why the native kernels are not available (undefined when they loaded, or when js was asked for). */
export function nativeLoadError(): string | undefined {
  return loaded.error;
}

/**
 * Switches implementation (for tests and benchmarks that compare the two in one process).
 * Throws when 'native' is asked for and the addon did not load.
 */
export function useKernelBackend(backend: KernelBackend): void {
  if (backend === 'native' && !loaded.addon) throw new Error(`native kernels not loaded: ${loaded.error ?? 'VIGIL_KERNELS=js'}`);
  active = backend === 'native' ? loaded.addon : undefined;
}
