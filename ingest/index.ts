/**
 * ingest/: every source becomes an async stream of sampled frames `Frame{t, wallTime, pixels}`.
 * Model-free; `ingest/modelAdapter.ts` turns a Frame into the vision encoder's input.
 *
 *   const source = await openSource('rtsp://cam/stream', { fps: 1, size: { width: 512, height: 512 } });
 *   for await (const frame of source) { ... }   // leaving the loop stops the source
 *   source.stats(); await source.dispose();
 */
export { openSource, type SourceInput } from './openSource.js';
export { VideoSource } from './videoSource.js';
export type { OpenSourceOptions } from './options.js';
export type { UploadInput } from './upload.js';
export type {
  BackoffOptions, DecodeMode, RunDecodeMode, Frame, Gap, KeyframeInfo, OutputSize, ProbeInfo, QueueOptions, QueuePolicy,
  SourceErrorInfo, SourceKind, SourceState, SourceStats, VideoInfo,
} from './types.js';
export { checkSource, type CheckReport, type CheckOptions } from './check.js';
export { locateFfmpeg, bundledFfmpeg, systemFfmpeg, resolveFfmpeg, describeVersion, type FfmpegBinary } from './ffmpegBinary.js';
export { parseSource, redactUrl, type SourceSpec } from './sourceSpec.js';
export { makeProbeClip, cachedProbeClip, parseNeedle, PALETTE, type ProbeClip, type ProbeClipOptions, type ProbeClipTruth, type Needle, type ColorName } from './probeClip.js';
export { runningChildren, startedChildren, killChildrenOnSignals } from './processRegistry.js';
