import { InvalidArgumentError } from 'commander';
import { GRAPH_DTYPES, type GraphDtype, isGraphDtype } from '../model/graphFiles.js';
import { QUERY_TAP_MODES, type QueryTapMode } from '../model/queryTapLoader.js';
import type { LoadModelOptions } from '../model/visionLanguageModel.js';

export const DTYPE_HELP = `weight format to load (${GRAPH_DTYPES.join(', ')}; default from the folder)`;

export const QUERY_TAPS_HELP =
  "query taps for retrieval: 'auto' (default) finds each layer's pre-RoPE query in the decoder graph and exposes it on a cached copy, " +
  "falling back to the question's keys when that fails; 'off' always scores with the keys";

/** --dtype: one of the export weight formats; anything else is refused before the model loads. */
export function parseDtypeOption(value: string): GraphDtype {
  if (!isGraphDtype(value)) throw new InvalidArgumentError(`unknown dtype '${value}' (${GRAPH_DTYPES.join(', ')})`);
  return value;
}

/** --query-taps: auto or off. */
export function parseQueryTapsOption(value: string): QueryTapMode {
  if (!(QUERY_TAP_MODES as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected ${QUERY_TAP_MODES.join(' or ')}, got '${value}'`);
  return value as QueryTapMode;
}

/** The load options the --dtype / --query-taps flags ask for (absent flags keep the defaults). */
export function modelLoadOptions(options: { dtype?: GraphDtype; queryTaps?: QueryTapMode }): LoadModelOptions {
  return { ...(options.dtype ? { dtype: options.dtype } : {}), ...(options.queryTaps ? { queryTaps: options.queryTaps } : {}) };
}
