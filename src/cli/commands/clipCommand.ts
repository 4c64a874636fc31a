import { Command, InvalidArgumentError } from 'commander';
import { makeProbeClip, type Needle, parseNeedle, PALETTE } from '../../../ingest/probeClip.js';
import { killChildrenOnSignals } from '../../../ingest/processRegistry.js';
import { isVigilError } from '../../../common/errors.js';
import { parseInteger, parseNumber, printJson } from '../options.js';
import { stageProgress } from '../progress.js';

interface ClipCliOptions {
  out: string;
  duration: number;
  size: string;
  fps: number;
  gop: number;
  needle: Needle[];
  truth?: string;
  crf: number;
  ffmpeg?: string;
  json?: boolean;
}

function collectNeedle(value: string, previous: Needle[]): Needle[] {
  try {
    return [...previous, parseNeedle(value)];
  } catch (error) {
    throw new InvalidArgumentError(isVigilError(error) ? error.message : String(error));
  }
}

function parseWxH(value: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected WIDTHxHEIGHT, got '${value}'`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

export function clipCommand(): Command {
  const clip = new Command('clip').description('make V-NIAH probe clips (haystack video with needle scenes) with their ground truth');
  clip
    .command('make')
    .description('generate a probe clip with ffmpeg and a JSON sidecar with the needle times and colours')
    .requiredOption('--out <file>', 'output video (e.g. clip.mp4)')
    .option('--duration <s>', 'clip length in seconds', parseNumber(1, 86_400), 600)
    .option('--size <WxH>', 'frame size (even numbers)', '640x360')
    .option('--fps <n>', 'frame rate of the clip', parseNumber(1, 120), 10)
    .option('--gop <s>', 'keyframe interval in seconds', parseNumber(0.01, 60), 1)
    .option('--crf <n>', 'x264 quality (lower = bigger, better)', parseInteger(0, 51), 28)
    .option(
      '--needle <time:background:square[:duration]>',
      `a needle scene, repeatable (colours: ${Object.keys(PALETTE).join(', ')}; duration default 4 s)`,
      collectNeedle,
      [] as Needle[],
    )
    .option('--truth <file>', 'sidecar path (default: the output with .json)')
    .option('--ffmpeg <path>', "ffmpeg to use: a path, 'bundled' or 'system'")
    .option('--json', 'print the ground truth as JSON')
    .addHelpText('after', '\nExample: vigil clip make --out clip.mp4 --duration 600 --needle 120:red:green --needle 430:blue:yellow:6')
    .action(async (options: ClipCliOptions) => {
      killChildrenOnSignals();
      const { width, height } = parseWxH(options.size);
      const progress = stageProgress('clip', options.json ?? false);
      let lastPct = -1;
      try {
        const made = await makeProbeClip({
          out: options.out,
          durationS: options.duration,
          width,
          height,
          fps: options.fps,
          gopS: options.gop,
          crf: options.crf,
          needles: options.needle,
          ...(options.truth ? { truthPath: options.truth } : {}),
          ...(options.ffmpeg ? { ffmpeg: options.ffmpeg } : {}),
          onProgress: (done, total) => {
            const pct = Math.min(100, Math.floor((100 * done) / total));
            if (pct === lastPct) return;
            lastPct = pct;
            progress.update(pct, 100, pct < 100 ? 'encoding' : 'done');
          },
        });
        progress.stop();
        if (options.json) return printJson({ ...made.truth, clipPath: made.clip, truthPath: made.truthPath });
        process.stdout.write(`${made.clip}\n${made.truthPath}\n`);
        for (const n of made.truth.needles) {
          process.stderr.write(`needle ${n.start}-${n.end} s: ${n.square} square on ${n.background}\n`);
        }
      } finally {
        progress.stop();
      }
    });
  return clip;
}
