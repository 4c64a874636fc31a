// Public surface of the numeric kernels (explicit names, no export *).
export { float32ToFloat16, float16ToFloat32, toHalfBits, fromHalfBits } from './fp16.js';
export { ropeInvFreq, rotateHeads, rerotateHeads } from './rope.js';
export { meanOverTokens, meanRows } from './pool.js';
export { dot, dotRows, l2Norm, cosine } from './similarity.js';
export { topK, argmax } from './topk.js';
export { softmaxInPlace, sampleTopP, mulberry32 } from './sampling.js';
export { kernelBackend, useKernelBackend } from './native.js';
export type { KernelBackend } from './native.js';
export { quantizeRowsInt8, dotRowsInt8, quantizeQueryInt16, dotRowsInt16, INT8_ROW_MAX, INT16_QUERY_MAX } from './int8Rows.js';
export { kMeans, assignNearest } from './kmeans.js';
export type { KMeansResult } from './kmeans.js';
export { lumaThumbnail, lumaChange } from './frameDiff.js';
export type { LumaChange } from './frameDiff.js';
export { quantizeKivi4, dequantizeKivi4, kivi4Bytes, kivi4Groups, packNibbles, unpackNibbles } from './kivi.js';
export type { Kivi4Tensor, KiviAxis } from './kivi.js';
export { tokenNorms, attentionReceived, keepTopTokens, gatherTokens } from './tokenPruning.js';
export { resizeBilinear, poolFrameGrids, pooledGridSide } from './bilinearResize.js';
export { fnv1a32 } from './hash.js';
