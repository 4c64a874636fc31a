import { familyForModelType, NOT_YET_SUPPORTED, supportedModelTypes } from './index.js';
import type { ModelFamily } from './types.js';

/**
 * Whether Vigil can stream a model, judged from its config.json alone (no graph loaded), and if not,
 * every reason why. Vigil stores keys pre-RoPE and re-rotates them at compact positions with one
 * 1-D rotation for every layer, and assumes every layer attends to the whole context it is given;
 * so besides an unknown model_type, these make a model unsupported:
 * - M-RoPE: rope_scaling / rope_parameters with mrope_section or type 'mrope' (Qwen2-VL, Qwen2.5-VL):
 *   3-row (temporal, height, width) position ids;
 * - per-layer-type RoPE: a second theta for local layers (Gemma-3 rope_local_base_freq) or RoPE
 *   parameters keyed by layer type (transformers 5 rope_parameters {full_attention, sliding_attention});
 * - RoPE scaling other than the default (linear, dynamic, yarn, longrope, llama3): other frequencies;
 * - sliding-window layers: layer_types naming non-full attention, or sliding_window in force
 *   (use_sliding_window not false, as Qwen2 configs set it).
 */
export interface ConfigSupport {
  modelType: string;
  /** The family when model_type is one Vigil implements (even if other reasons make it unsupported). */
  family: ModelFamily | undefined;
  supported: boolean;
  /** Why not (empty when supported). */
  reasons: string[];
}

type Json = Record<string, unknown>;

function object(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

/** The text model's settings: text_config for VLMs, else the top level. */
export function textConfigOf(raw: Json): Json {
  return object(raw.text_config) ?? raw;
}

/**
 * A RoPE setting of the text config (rope_theta, partial_rotary_factor): the key itself, else the
 * same key inside rope_parameters, where transformers 5 configs keep it (not per layer type).
 */
export function ropeSetting(text: Json, key: 'rope_theta' | 'partial_rotary_factor'): number | undefined {
  const direct = text[key];
  if (typeof direct === 'number' && Number.isFinite(direct)) return direct;
  const nested = object(text.rope_parameters)?.[key];
  return typeof nested === 'number' && Number.isFinite(nested) ? nested : undefined;
}

const LAYER_TYPE_KEYS = new Set(['full_attention', 'sliding_attention', 'chunked_attention', 'linear_attention']);

function ropeReasons(where: string, rope: Json | undefined, reasons: string[]): void {
  if (!rope) return;
  // transformers 5: rope_parameters keyed by layer type.
  const perType = Object.keys(rope).filter((k) => LAYER_TYPE_KEYS.has(k) && object(rope[k]));
  if (perType.length > 1) {
    const thetas = perType.map((k) => `${k} theta ${String(object(rope[k])!.rope_theta ?? '?')}`);
    reasons.push(`per-layer-type RoPE: ${where} has parameters per layer type (${thetas.join(', ')}); Vigil re-rotates every layer's keys with one RoPE`);
    return;
  }
  const inner = perType.length === 1 ? object(rope[perType[0]!])! : rope;
  const type = typeof inner.rope_type === 'string' ? inner.rope_type : typeof inner.type === 'string' ? inner.type : undefined;
  if (Array.isArray(inner.mrope_section) || type === 'mrope') {
    const section = Array.isArray(inner.mrope_section) ? ` mrope_section [${inner.mrope_section.join(', ')}]` : '';
    reasons.push(`M-RoPE: ${where}${section} rotates by 3-row position_ids (temporal, height, width); Vigil re-rotates keys with 1-D positions`);
    return;
  }
  if (type !== undefined && type !== 'default') {
    const factor = typeof inner.factor === 'number' ? ` factor ${inner.factor}` : '';
    reasons.push(`RoPE scaling: ${where} type '${type}'${factor} changes the rotary frequencies; Vigil's re-rotation implements plain RoPE`);
  }
}

export function assessConfigSupport(raw: Json): ConfigSupport {
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : '';
  const family = familyForModelType(modelType)?.id;
  const reasons: string[] = [];
  if (!family) {
    const known = NOT_YET_SUPPORTED[modelType];
    reasons.push(
      known
        ? `model_type '${modelType}': ${known}`
        : `model_type '${modelType || '(missing)'}' is not a family Vigil implements (supported: ${supportedModelTypes().join(', ')})`,
    );
  }
  const text = textConfigOf(raw);
  const where = text === raw ? 'config.json' : 'text_config';
  const rope: string[] = [];
  ropeReasons(`${where} rope_scaling`, object(text.rope_scaling), rope);
  ropeReasons(`${where} rope_parameters`, object(text.rope_parameters), rope);
  if (text !== raw) ropeReasons('config.json rope_scaling', object(raw.rope_scaling), rope);
  // One reason per kind (a config may state the same RoPE in two places).
  const kinds = new Set<string>();
  for (const r of rope) {
    const kind = r.slice(0, r.indexOf(':'));
    if (!kinds.has(kind)) reasons.push(r);
    kinds.add(kind);
  }
  if (typeof text.rope_local_base_freq === 'number') {
    reasons.push(
      `per-layer-type RoPE: ${where} rope_local_base_freq ${text.rope_local_base_freq} for local (sliding) layers, rope_theta ${String(text.rope_theta ?? '?')} for global ones ` +
        '(Gemma-3 style); Vigil re-rotates every layer\'s keys with one theta',
    );
  }
  const layerTypes = Array.isArray(text.layer_types) ? text.layer_types.filter((t): t is string => typeof t === 'string') : [];
  const windowed = layerTypes.filter((t) => t !== 'full_attention');
  const window = typeof text.sliding_window === 'number' ? text.sliding_window : undefined;
  if (windowed.length > 0) {
    const kinds = [...new Set(windowed)].map((k) => `'${k}'`).join(', ');
    reasons.push(
      `sliding-window layers: ${windowed.length} of ${layerTypes.length} ${where} layer_types are ${kinds}${window !== undefined ? ` (window ${window})` : ''}; ` +
        'Vigil assumes every layer attends to the whole retrieved context',
    );
  } else if (layerTypes.length === 0 && window !== undefined && text.use_sliding_window !== false) {
    reasons.push(`sliding-window attention: ${where} sliding_window ${window}; Vigil assumes every layer attends to the whole retrieved context`);
  }
  return { modelType, family, supported: reasons.length === 0, reasons };
}
