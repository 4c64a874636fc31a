import { Command, InvalidArgumentError } from 'commander';
import { type CheckReport, checkSource } from '../../../ingest/check.js';
import { killChildrenOnSignals } from '../../../ingest/processRegistry.js';
import type { DecodeMode, OutputSize } from '../../../ingest/types.js';
import { parseInteger, parseNumber, printJson } from '../options.js';

interface CheckCliOptions {
  fps: number;
  frames: number;
  json?: boolean;
  transport: 'tcp' | 'udp';
  timeout: number;
  socketTimeout: number;
  size?: OutputSize;
  decode: DecodeMode;
  ffmpeg?: string;
}

/** "640x360" (exact) or "512" (longest edge). */
export function parseSize(value: string): OutputSize {
  const exact = /^(\d+)x(\d+)$/.exec(value);
  if (exact) return { width: Number(exact[1]), height: Number(exact[2]) };
  if (/^\d+$/.test(value)) return { longestEdge: Number(value) };
  throw new InvalidArgumentError(`expected WIDTHxHEIGHT or a longest edge in pixels, got '${value}'`);
}

function choice<T extends string>(values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${values.join(', ')}, got '${value}'`);
    return value as T;
  };
}

export function sourceCommand(): Command {
  const source = new Command('source').description('inspect video sources (files, RTSP cameras, HTTP files and HLS)');
  source
    .command('check')
    .description('connect to a source, report container, codec, resolution and native fps, and sample a few frames')
    .argument('<source>', 'file path, rtsp://, rtsps://, http(s):// (progressive file or .m3u8 HLS)')
    .option('--fps <f>', 'sample rate (frames per second of stream time)', parseNumber(0.001, 240), 1)
    .option('--frames <n>', 'frames to sample', parseInteger(1, 10_000), 5)
    .option('--json', 'print the report as JSON')
    .option('--transport <tcp|udp>', 'RTSP transport', choice(['tcp', 'udp'] as const), 'tcp')
    .option('--timeout <s>', 'give up when the frames have not arrived within this many seconds', parseNumber(0.1, 3600), 30)
    .option('--socket-timeout <s>', 'RTSP/HTTP socket timeout in seconds', parseNumber(0.1, 3600), 10)
    .option('--size <WxH|N>', 'let ffmpeg scale frames to WxH, or to a longest edge of N')
    .option('--decode <mode>', 'auto, all, keyframes (keyframes only) or refs (skip non-reference frames)', choice(['auto', 'all', 'keyframes', 'refs'] as const), 'auto')
    .option('--ffmpeg <path>', "ffmpeg to use: a path, 'bundled' or 'system' (default: $VIGIL_FFMPEG, else the newer one)")
    .action(async (input: string, options: CheckCliOptions & { size?: string }) => {
      killChildrenOnSignals();
      const report = await checkSource(input, {
        fps: options.fps,
        frames: options.frames,
        rtspTransport: options.transport,
        timeoutS: options.timeout,
        socketTimeoutS: options.socketTimeout,
        decode: options.decode,
        ...(options.size ? { size: parseSize(options.size) } : {}),
        ...(options.ffmpeg ? { ffmpeg: options.ffmpeg } : {}),
      });
      if (options.json) return printJson(report);
      process.stdout.write(formatReport(report));
    });
  return source;
}

export function formatReport(r: CheckReport): string {
  const fps = r.nativeFps === null ? 'unknown fps' : `${r.nativeFps} fps`;
  const lines = [
    `source     ${r.source} (${r.kind}${r.live ? ', live' : ''})`,
    `container  ${r.container}${r.containerLongName ? ` (${r.containerLongName})` : ''}`,
    `video      ${r.codec}${r.profile ? ` (${r.profile})` : ''}, ${r.width}x${r.height}, ${fps}${r.pixFmt ? `, ${r.pixFmt}` : ''}`,
    `duration   ${r.durationS === null ? 'live (no duration)' : `${r.durationS.toFixed(2)} s`}`,
    `keyframes  ${r.keyframeIntervalS === null ? 'interval not measured' : `at most ${r.keyframeIntervalS.toFixed(2)} s apart`}; decoding ${r.decodeMode ?? '-'}`,
    `ffmpeg     ${r.ffmpeg.version} [${r.ffmpeg.origin}] ${r.ffmpeg.path}`,
    `frames     ${r.frames.length} sampled at ${r.sampleFps} fps${r.firstFrameMs === null ? '' : `, first after ${(r.firstFrameMs / 1000).toFixed(2)} s`}, ${r.stats.framesDecoded} decoded, ${(r.elapsedMs / 1000).toFixed(2)} s in all`,
    ...r.frames.map((f, i) => `  #${String(i).padEnd(4)} t=${f.t.toFixed(3).padStart(10)} s  ${f.width}x${f.height}${f.keyframe ? '  keyframe' : ''}`),
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
  return `${lines.join('\n')}\n`;
}
