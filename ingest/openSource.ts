/**
 * Opening a source: check the input (scheme, file), pick the ffmpeg build, spool an upload, and
 * start the source's connect loop. Returns at once; frames follow asynchronously.
 */
import path from 'node:path';
import { VigilError } from '../common/errors.js';
import { resolveFfmpeg } from './ffmpegBinary.js';
import { type OpenSourceOptions, resolveOptions } from './options.js';
import { parseSource } from './sourceSpec.js';
import { isUploadInput, spoolUpload, type UploadInput } from './upload.js';
import { VideoSource } from './videoSource.js';

export type SourceInput = string | UploadInput;

/**
 * Opens a file path, `file://`, `rtsp(s)://`, `http(s)://` (progressive file or HLS) URL, or an
 * upload. Bad input that can be seen without ffmpeg (scheme, missing file, options) throws a
 * VigilError here; everything else is reported through the source's state, stats and frame stream.
 */
export async function openSource(input: SourceInput, options: OpenSourceOptions = {}): Promise<VideoSource> {
  const resolved = resolveOptions(options);
  const binary = resolveFfmpeg(options.ffmpeg);
  if (isUploadInput(input)) {
    const file = await spoolUpload(input);
    // The display never names the spool path (it would reach API errors and statuses).
    const spec = { ...parseSource(file), kind: 'upload' as const, display: `upload:${input.name ?? path.basename(file)}` };
    return new VideoSource(spec, binary, resolved, file);
  }
  if (typeof input !== 'string') throw new VigilError('BAD_INPUT', 'A source is a path, a URL or an upload.');
  const spec = parseSource(input, options.allowedSchemes ? { allowedSchemes: options.allowedSchemes } : {});
  return new VideoSource(spec, binary, resolved, options.deleteOnStop);
}
