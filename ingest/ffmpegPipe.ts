/**
 * Runs ffmpeg as a pure filter: bytes in on stdin, bytes out on stdout, nothing else opened. Used to
 * code still groups for the archive (src/engine/stillGroups.ts). The input is limited to the `pipe`
 * protocol (`-protocol_whitelist pipe`), so the command cannot be steered to a file or a URL: the
 * outbound/file policy has nothing to check because ffmpeg opens nothing. The child is registered
 * in the process registry, killed on timeout, and its stdout is bounded.
 */
import { spawn } from 'node:child_process';
import { VigilError } from '../common/errors.js';
import { bundledFfmpegPath, locateFfmpeg } from './ffmpegBinary.js';
import { LineSplitter } from './lineSplitter.js';
import { trackChild } from './processRegistry.js';

export interface FfmpegPipeOptions {
  /** Input format options, placed before `-i pipe:0` (e.g. ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', '512x512']). */
  input: string[];
  /** Output options, placed before `pipe:1` (codec, format). */
  output: string[];
  label: string;
  timeoutMs: number;
  /** Most stdout bytes accepted; more is an error (the output was not what the caller sized for). */
  maxOutputBytes: number;
}

/**
 * The binary for short pipe jobs: the static build shipped in npm when present (it starts in ~10 ms;
 * Debian's dynamically linked ffmpeg loads ~215 libraries, ~0.2 s of CPU a start, which would be
 * most of a still group's decode), unless VIGIL_FFMPEG names one. Both have libx264.
 */
let pipePath: string | null = null;
function pipeFfmpegPath(): string {
  if (process.env.VIGIL_FFMPEG) return locateFfmpeg().ffmpegPath;
  pipePath ??= bundledFfmpegPath() ?? locateFfmpeg().ffmpegPath;
  return pipePath;
}

/** ffmpeg reading `input` from stdin and writing to stdout; resolves with everything it wrote. */
export function runFfmpegPipe(input: Uint8Array, options: FfmpegPipeOptions): Promise<Buffer> {
  const ffmpegPath = pipeFfmpegPath();
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-protocol_whitelist', 'pipe', ...options.input, '-i', 'pipe:0', ...options.output, 'pipe:1'];
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath, args, { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    trackChild(child, options.label);
    const out: Buffer[] = [];
    let outBytes = 0;
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => {
      lines.push(line);
      if (lines.length > 20) lines.shift();
    });
    let failure: VigilError | null = null;
    const fail = (message: string) => {
      failure ??= new VigilError('INTERNAL', `${options.label}: ${message}`);
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => fail(`ffmpeg did not finish in ${options.timeoutMs} ms`), options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > options.maxOutputBytes) fail(`ffmpeg wrote more than ${options.maxOutputBytes} bytes`);
      else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => splitter.push(chunk));
    // EPIPE when ffmpeg exits early (bad input): its exit code and stderr say why.
    child.stdin.on('error', () => undefined);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new VigilError('FFMPEG_MISSING', `${options.label}: cannot start ${ffmpegPath}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      splitter.end();
      if (failure) reject(failure);
      else if (code !== 0) reject(new VigilError('INTERNAL', `${options.label}: ffmpeg exited with ${code ?? signal}: ${lines.join(' | ') || 'no message'}`));
      else resolve(Buffer.concat(out, outBytes));
    });
    child.stdin.end(input);
  });
}
