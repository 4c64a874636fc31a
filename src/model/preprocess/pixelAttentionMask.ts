/**
 * `pixel_attention_mask` data for the SmolVLM / Idefics3 vision encoder, shape [1, N, H, W], bool.
 * onnxruntime-node takes bool tensor data as a Uint8Array of 0/1.
 *
 * All ones: every image we feed is real (tiles, global image, video frames); zero masks belong only
 * to the filler images HF adds to even out a batch, which we never build. The bars of a padded video
 * frame are marked real too: HF stretches frames instead of padding them, so there is no trained-on
 * masking to reproduce, and the bars are plain black image content.
 */
export function fullPixelMask(count: number, height: number, width: number): Uint8Array {
  for (const [name, value] of [['count', count], ['height', height], ['width', width]] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`fullPixelMask: ${name} must be a non-negative integer (got ${value}).`);
    }
  }
  return new Uint8Array(count * height * width).fill(1);
}
