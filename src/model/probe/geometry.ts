/** Sizes of a Llama/Qwen2-style text decoder. */
export interface TextGeometry {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  ropeTheta: number;
  /** Dims of each head that RoPE rotates (the rest are position-free); headDim for full rotary. */
  rotaryDim: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
}

/** Sizes of a SigLIP-style vision encoder followed by Idefics3's pixel-shuffle connector. */
export interface VisionGeometry {
  imageSize: number;
  patchSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  /** Pixel-shuffle factor: (imageSize/patchSize)^2 / scaleFactor^2 tokens per image. */
  scaleFactor: number;
  layerNormEps: number;
}

export function tokensPerImage(vision: VisionGeometry): number {
  const side = vision.imageSize / vision.patchSize;
  return (side * side) / (vision.scaleFactor * vision.scaleFactor);
}

export function validateGeometry(text: TextGeometry, vision: VisionGeometry): void {
  const problems: string[] = [];
  if (text.numHeads % text.numKvHeads !== 0) problems.push('numHeads must be a multiple of numKvHeads');
  if (text.rotaryDim % 2 !== 0 || text.rotaryDim > text.headDim) problems.push('rotaryDim must be even and <= headDim');
  const side = vision.imageSize / vision.patchSize;
  if (!Number.isInteger(side)) problems.push('imageSize must be a multiple of patchSize');
  if (side % vision.scaleFactor !== 0) problems.push('patches per side must be a multiple of scaleFactor');
  if (vision.hiddenSize % vision.numHeads !== 0) problems.push('vision hiddenSize must be a multiple of numHeads');
  if (problems.length > 0) throw new Error(`invalid probe geometry: ${problems.join('; ')}`);
}
