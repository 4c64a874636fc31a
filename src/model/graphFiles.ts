import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';

/** Weight formats of the transformers.js ONNX exports, keyed by their file-name suffix. */
export const GRAPH_DTYPE_SUFFIX = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const;

export type GraphDtype = keyof typeof GRAPH_DTYPE_SUFFIX;
export type GraphName = 'vision_encoder' | 'embed_tokens' | 'decoder_model_merged';

export function isGraphDtype(value: string): value is GraphDtype {
  return Object.hasOwn(GRAPH_DTYPE_SUFFIX, value);
}

export const GRAPH_DTYPES = Object.keys(GRAPH_DTYPE_SUFFIX) as GraphDtype[];

/** A weight format asked for by name: an unknown name is an error (BAD_INPUT), never ignored. */
export function parseGraphDtype(value: string, where = 'dtype'): GraphDtype {
  if (isGraphDtype(value)) return value;
  throw new VigilError('BAD_INPUT', `unknown ${where} '${value}' (${GRAPH_DTYPES.join(', ')})`);
}

/**
 * Which file to load for a graph: the dtype asked for, else the one the folder's
 * `transformers.js_config.dtype` names (a string or a per-graph map), else fp32.
 */
export function resolveGraphFile(
  modelDir: string,
  graph: GraphName,
  requested: GraphDtype | undefined,
  transformersJsConfig: Record<string, unknown>,
): string {
  const configured = transformersJsConfig.dtype;
  const fromConfig =
    typeof configured === 'string'
      ? configured
      : typeof configured === 'object' && configured !== null
        ? (configured as Record<string, unknown>)[graph]
        : undefined;
  if (requested !== undefined) parseGraphDtype(requested);
  const dtype = requested ?? (typeof fromConfig === 'string' && isGraphDtype(fromConfig) ? fromConfig : 'fp32');
  const file = path.join(modelDir, 'onnx', `${graph}${GRAPH_DTYPE_SUFFIX[dtype]}.onnx`);
  if (fs.existsSync(file)) return file;
  const onnxDir = path.join(modelDir, 'onnx');
  const available = fs.existsSync(onnxDir)
    ? fs.readdirSync(onnxDir).filter((f) => f.startsWith(graph) && f.endsWith('.onnx'))
    : [];
  throw new VigilError(
    'FILE_NOT_FOUND',
    `${file} not found (dtype ${dtype}); ${available.length > 0 ? `available: ${available.join(', ')}` : `no ${graph}*.onnx in ${onnxDir}`}`,
  );
}
