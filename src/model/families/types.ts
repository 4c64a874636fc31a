/**
 * What Vigil needs to know about a model family, in one place: how its prompts are laid out (chat
 * turn end, image placeholders, a stream's frame blocks), how its images and video frames are
 * prepared, and the RoPE facts its decoder follows. One file per family (idefics3.ts,
 * llavaOnevision.ts); index.ts maps config.json's model_type to a family.
 */

/** Model families whose prompt format, preprocessing and decoder I/O Vigil implements. */
export type ModelFamily = 'idefics3' | 'llava_onevision';

/**
 * The text around a stream's frames: a prefix (the attention sinks), one block per frame (with the
 * family's image placeholders), and the question turn that follows the frames.
 */
export interface StreamPromptFormat {
  prefix: string;
  frame(seconds: number): string;
  /** The chat-formatted question with the answer prefix (ReKV pass 2). */
  question(question: string): string;
}

/** How a family's processor turns images into pixel tiles (src/model/preprocess/). */
export interface PreprocessingRules {
  /** The preprocessing pipeline (preprocessImage dispatches on it). */
  pipeline: ModelFamily;
  /** PIL resample code used when preprocessor_config.json names none (1 LANCZOS, 3 BICUBIC). */
  defaultResample: number;
  /** What happens to an alpha channel: flattened onto white (Idefics3's convert_to_rgb) or dropped. */
  alpha: 'flatten-white' | 'drop';
  /** Whether large images are split into tiles (per preprocessor_config do_image_splitting). */
  imageSplitting: boolean;
  /**
   * Sizes used when preprocessor_config.json states none: Idefics3's longest edge after the first
   * resize (`size.longest_edge`) and tile side (`max_image_size.longest_edge`); LLaVA-OV's square
   * output side (`size`).
   */
  defaultSizes: { longestEdge?: number; tileSize?: number; side?: number };
  /** One line for `vigil models inspect` and docs. */
  summary: string;
}

/** How a stream (video) frame's vision features reach the language model. */
export interface StreamFrameRule {
  /**
   * 'image-block': a frame is one unsplit image (its tokensPerImage rows);
   * 'pooled-2x': the frame's patch grid is pooled bilinearly to ceil(side/2)^2 rows (LLaVA-OV video).
   */
  kind: 'image-block' | 'pooled-2x';
  summary: string;
}

/** RoPE facts of the family's language model (config.json can override theta and the partial factor). */
export interface RopeFacts {
  /** rope_theta when the text config states none (the HF config class default). */
  defaultTheta: number;
  /** partial_rotary_factor when the text config states none. */
  defaultPartialRotaryFactor: number;
  /** Rotation layout Vigil's kernels apply (kernels/rope.ts). */
  layout: 'rotate-half';
  summary: string;
}

export interface ModelFamilyDescriptor {
  id: ModelFamily;
  /** Human name, e.g. 'SmolVLM / SmolVLM2 (Idefics3)'. */
  name: string;
  /** config.json model_type values of this family. */
  modelTypes: readonly string[];
  /** The end-of-turn token the family's chat template emits; generation stops on it too. */
  turnEndToken: string;
  /**
   * A chat-templated prompt with one `<image>` placeholder, expanded to exactly as many image tokens
   * as the vision encoder returned rows: `image.rows` x `image.cols` is its tile grid (0x0 unsplit),
   * `image.featureRows` the rows the encoder returned for it; `tokensPerImage()` the rows per tile
   * (asked only by families that need it: the model may not be able to tell).
   */
  expandImagePrompt(templated: string, image: { rows: number; cols: number; featureRows: number }, tokensPerImage: () => number): string;
  /** The stream prompt layout for frames of `tokensPerFrame` tokens. */
  streamPrompt(tokensPerFrame: number): StreamPromptFormat;
  /** One line describing the image / frame prompt, for `vigil models inspect` and docs. */
  promptSummary: string;
  preprocessing: PreprocessingRules;
  streamFrames: StreamFrameRule;
  rope: RopeFacts;
}

/**
 * Stream time as the frame prompt shows it. Minutes wrap after 99:59 so that every frame chunk has
 * the same token count (digits are one token each): per-layer retrieval needs chunks of one size,
 * since all layers' contexts must have the same length. Evidence times come from chunk metadata,
 * not from this text, so they stay exact; only the model's view of time repeats every 100 minutes.
 */
export function promptSeconds(seconds: number): number {
  return seconds % 6000;
}
