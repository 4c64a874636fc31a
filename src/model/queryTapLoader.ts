import type { KvTaps } from './onnx/kvTapPlan.js';
import { prepareQueryTaps, type QueryTapStatus, recordQueryTapFailure, recordQueryTapSuccess } from './onnx/queryTapSurgery.js';
import { OnnxGraph } from './onnxGraph.js';

export type QueryTapMode = 'auto' | 'off';

export const QUERY_TAP_MODES: readonly QueryTapMode[] = ['auto', 'off'];

export interface LoadedDecoderGraph {
  graph: OnnxGraph;
  /** Per-layer output names of the pre-RoPE queries; undefined when the graph has none (fallback or off). */
  tapNames: string[] | undefined;
  status: QueryTapStatus;
  /** Each layer's new key/value rows as outputs of `graph` (the same surgery adds them), when found. */
  kvTaps: KvTaps | undefined;
}

/**
 * Opens a decoder with its query taps ('auto'): the original when it already outputs them, else
 * the surgery copy. The taps are recorded as working only after onnxruntime has loaded the graph
 * and it lists every tap among its outputs; when it refuses the copy, the failure is cached (for
 * this file and surgery version) and the stock graph is loaded, with `status` saying why.
 * Errors loading the stock graph itself propagate (a broken model is not a tap problem).
 */
export async function openDecoderWithQueryTaps(
  decoderFile: string,
  mode: QueryTapMode,
  cacheDir: string,
  /** How a graph is opened (tests stand in an onnxruntime that refuses the copy). */
  open: (file: string) => Promise<OnnxGraph> = (file) => OnnxGraph.open(file, 'decoder'),
  /** Replace GroupQueryAttention by split decode attention where it applies (src/model/onnx/splitAttention.ts). */
  splitAttention = false,
): Promise<LoadedDecoderGraph> {
  if (mode === 'off') return { graph: await open(decoderFile), tapNames: undefined, status: { state: 'off' }, kvTaps: undefined };
  const kvTapsOf = (graph: OnnxGraph, kvTaps: KvTaps | undefined) =>
    kvTaps?.layers.every((l) => graph.outputNames.includes(l.key) && graph.outputNames.includes(l.value)) ? kvTaps : undefined;
  let prepared: ReturnType<typeof prepareQueryTaps>;
  try {
    prepared = prepareQueryTaps(decoderFile, cacheDir, { splitAttention });
  } catch (error) {
    // An unreadable cache or a graph Vigil cannot parse: the stock graph still loads.
    const reason = `query-tap surgery failed: ${(error as Error).message}`;
    return { graph: await open(decoderFile), tapNames: undefined, status: { state: 'fallback', reason }, kvTaps: undefined };
  }
  // The split cache entry failed (a copy onnxruntime refused, recorded below): the taps without the split.
  if (prepared.kind === 'failed' && splitAttention) return openDecoderWithQueryTaps(decoderFile, mode, cacheDir, open, false);
  if (prepared.kind === 'failed') {
    const reason = prepared.cached ? `${prepared.reason} (cached)` : prepared.reason;
    return { graph: await open(decoderFile), tapNames: undefined, status: { state: 'fallback', reason, ...(prepared.plan ? { plan: prepared.plan } : {}) }, kvTaps: undefined };
  }
  if (prepared.kind === 'cached') {
    try {
      const graph = await open(prepared.file);
      if (prepared.tapNames.every((n) => graph.outputNames.includes(n))) return { graph, tapNames: prepared.tapNames, status: { state: prepared.state }, kvTaps: kvTapsOf(graph, prepared.kvTaps) };
      await graph.dispose();
    } catch {
      // The cached copy went bad (a data file removed by hand): fall through to the stock graph.
    }
    return { graph: await open(decoderFile), tapNames: undefined, status: { state: 'fallback', reason: `the cached query-tap graph ${prepared.file} no longer loads; delete it to redo the surgery` }, kvTaps: undefined };
  }
  const { candidate } = prepared;
  let graph: OnnxGraph | undefined;
  let failure: string;
  try {
    graph = await open(candidate.file);
    const missing = candidate.tapNames.filter((n) => !graph!.outputNames.includes(n));
    if (missing.length === 0) {
      recordQueryTapSuccess(candidate);
      return { graph, tapNames: candidate.tapNames, status: { state: candidate.state, plan: candidate.plan }, kvTaps: kvTapsOf(graph, candidate.kvTaps) };
    }
    failure = `onnxruntime lists no output ${missing[0]}`;
  } catch (error) {
    if (candidate.state === 'exposed' && !candidate.copy) throw error;
    failure = `onnxruntime refused the graph with query taps: ${(error as Error).message}`;
  }
  await graph?.dispose();
  // A split-attention copy onnxruntime refuses: keep the taps, with GroupQueryAttention.
  if (candidate.splitAttention) {
    recordQueryTapFailure(candidate, failure, { always: true });
    return openDecoderWithQueryTaps(decoderFile, mode, cacheDir, open, false);
  }
  recordQueryTapFailure(candidate, failure);
  // The original already outputs its query taps: only the kv taps (added by the copy) are lost.
  if (candidate.state === 'exposed') return { graph: await open(decoderFile), tapNames: candidate.tapNames, status: { state: 'exposed', plan: candidate.plan }, kvTaps: undefined };
  return { graph: await open(decoderFile), tapNames: undefined, status: { state: 'fallback', reason: failure, plan: candidate.plan }, kvTaps: undefined };
}
