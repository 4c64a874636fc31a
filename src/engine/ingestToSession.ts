import { frameToModelInput, modelFrameSize } from '../../ingest/modelAdapter.js';
import { openSource, type OpenSourceOptions, type SourceInput, type VideoSource } from '../../ingest/index.js';
import { VigilError } from '../../common/errors.js';
import type { StreamSession } from './streamSession.js';

export interface IngestProgress {
  framesEncoded: number;
  /** Frames the gate turned away (not encoded: the previous chunk's span covers them). */
  framesGated: number;
  /** Stream time of the last sampled frame (encoded or gated). */
  t: number;
  /** Known length of a finite source in seconds, else null. */
  durationS: number | null;
}

export interface IngestOptions extends Omit<OpenSourceOptions, 'size'> {
  onProgress?: (progress: IngestProgress) => void;
  /** Resuming: frames at or before this stream time are already in memory and are skipped. */
  skipUntilAfter?: number;
  /** Stops the ingest (the source is stopped, its ffmpeg killed). */
  signal?: AbortSignal;
}

export interface IngestResult {
  framesEncoded: number;
  framesGated: number;
  source: ReturnType<VideoSource['stats']>;
}

/** The side of the square frame the model's vision encoder takes. */
export function modelFrameSide(session: StreamSession): number {
  const config = session.model.imageConfig;
  return config.tileSize ?? config.height ?? 512;
}

/**
 * Feeds a source into a stream session until it ends (files) or is stopped: ffmpeg scales each
 * sampled frame to the encoder's size, then the frame gate (a frame that barely differs from the
 * last encoded one only extends the previous chunk's span), then normalization, vision encoder,
 * decoder, store, index.
 */
export async function ingestIntoSession(session: StreamSession, input: SourceInput, options: IngestOptions = {}): Promise<IngestResult> {
  const side = modelFrameSide(session);
  // One pixel buffer for every frame: each is encoded before the next is preprocessed.
  let pixels: Float32Array | undefined;
  const { onProgress, signal, skipUntilAfter, ...sourceOptions } = options;
  const source = await openSource(input, { ...sourceOptions, size: modelFrameSize(side) });
  // The same stop promise is awaited in `finally` below, which reports its error; here it only must
  // not be an unhandled rejection in between.
  const stop = (): void => {
    source.dispose().catch(() => undefined);
  };
  signal?.addEventListener('abort', stop, { once: true });
  let framesEncoded = 0;
  let framesGated = 0;
  try {
    for await (const frame of source) {
      if (signal?.aborted) break;
      if (skipUntilAfter !== undefined && frame.t <= skipUntilAfter) continue;
      if (session.checkGate(frame, frame.t).encode) {
        const image = await frameToModelInput(frame, session.model.imageConfig, side, { out: (pixels ??= new Float32Array(3 * side * side)) });
        await session.addFrame(image, frame.t, frame.wallTime, frame);
        framesEncoded++;
      } else {
        await session.skipFrame(frame.t);
        framesGated++;
      }
      onProgress?.({ framesEncoded, framesGated, t: frame.t, durationS: source.probe?.durationS ?? null });
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    await source.dispose();
  }
  const stats = source.stats();
  if (stats.state === 'failed' && stats.lastError) {
    throw new VigilError(stats.lastError.code, stats.lastError.message);
  }
  return { framesEncoded, framesGated, source: stats };
}
