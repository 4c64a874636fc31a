import { IDEFICS3 } from './idefics3.js';
import { LLAVA_ONEVISION } from './llavaOnevision.js';
import type { ModelFamily, ModelFamilyDescriptor } from './types.js';

export type { ModelFamily, ModelFamilyDescriptor, PreprocessingRules, RopeFacts, StreamFrameRule, StreamPromptFormat } from './types.js';
export { promptSeconds } from './types.js';

/** Every family Vigil implements. */
export const MODEL_FAMILIES: readonly ModelFamilyDescriptor[] = [IDEFICS3, LLAVA_ONEVISION];

const BY_ID: Record<ModelFamily, ModelFamilyDescriptor> = { idefics3: IDEFICS3, llava_onevision: LLAVA_ONEVISION };

/** The descriptor of a family. */
export function modelFamily(id: ModelFamily): ModelFamilyDescriptor {
  return BY_ID[id];
}

/** The family a config.json model_type belongs to, if Vigil implements it. */
export function familyForModelType(modelType: string): ModelFamilyDescriptor | undefined {
  return MODEL_FAMILIES.find((f) => f.modelTypes.includes(modelType));
}

/** Every model_type Vigil accepts. */
export function supportedModelTypes(): string[] {
  return MODEL_FAMILIES.flatMap((f) => f.modelTypes);
}

/** Known model types Vigil does not implement, with why. */
export const NOT_YET_SUPPORTED: Readonly<Record<string, string>> = {
  qwen2_vl: 'Qwen2-VL uses M-RoPE (3-row position ids), which Vigil does not implement yet',
  qwen2_5_vl: 'Qwen2.5-VL uses M-RoPE (3-row position ids), which Vigil does not implement yet',
  florence2: 'Florence-2 is an encoder-decoder model; Vigil needs a decoder-only VLM',
  moondream1: 'Moondream exports use a single kv_cache tensor, not the past_key_values contract',
};
