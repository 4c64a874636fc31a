import { Command } from 'commander';
import { vigilDataDir } from '../../cacheDir.js';
import { openOfflineVideo } from '../../engine/offlineVideo.js';
import { type GraphDtype, isGraphDtype } from '../../model/graphFiles.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { VigilError } from '../../errors.js';
import { parseInteger, parseNumber, printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';

interface AskOptions {
  model: string;
  data: string;
  fps: number;
  window: number;
  retrieve: number;
  includeWindow?: boolean;
  maxNewTokens: number;
  storage: string;
  rebuild?: boolean;
  dtype?: string;
  json?: boolean;
}

const clock = (t: number) => `${Math.floor(t / 60)}:${(t % 60).toFixed(0).padStart(2, '0')}`;

export function askCommand(): Command {
  return new Command('ask')
    .description('answer questions about a video file, keeping its memory on disk for the next question')
    .argument('<video>', 'video file')
    .argument('<questions...>', 'one or more questions')
    .option('--model <model>', 'model folder or probe model name', 'probe-needle')
    .option('--data <dir>', 'where video memories are kept', vigilDataDir())
    .option('--fps <f>', 'frames sampled per second', parseNumber(0.01, 30), 1)
    .option('--window <frames>', 'recent frames kept in context while encoding', parseInteger(1, 10000), 16)
    .option('--retrieve <n>', 'frames retrieved per layer for each question', parseInteger(0, 1024), 64)
    .option('--include-window', 'also put the last window of frames in the answer context')
    .option('--max-new-tokens <n>', 'most tokens per answer', parseInteger(1, 4096), 64)
    .option('--storage <dtype>', 'KV storage on disk: float32, float16, int8', 'float32')
    .option('--rebuild', 're-encode the video even if its memory exists')
    .option('--dtype <dtype>', 'model weight format (fp32, fp16, q8, q4, ...)')
    .option('--json', 'print JSON')
    .action(async (video: string, questions: string[], options: AskOptions) => {
      if (!['float32', 'float16', 'int8'].includes(options.storage)) throw new VigilError('BAD_INPUT', `--storage must be float32, float16 or int8, got '${options.storage}'`);
      if (options.dtype && !isGraphDtype(options.dtype)) throw new VigilError('BAD_INPUT', `unknown --dtype '${options.dtype}'`);
      const quiet = options.json ?? false;
      const model = await VisionLanguageModel.load(resolveModelDir(options.model, { quiet }), options.dtype ? { dtype: options.dtype as GraphDtype } : {});
      const progress = stageProgress('encoding', quiet);
      try {
        const memory = await openOfflineVideo(model, video, {
          dataDir: options.data,
          fps: options.fps,
          windowFrames: options.window,
          storageDtype: options.storage as 'float32',
          rebuild: options.rebuild ?? false,
          onProgress: (p) => progress.update(Math.round(p.t), Math.max(Math.round(p.durationS ?? p.t), Math.round(p.t)), `${p.framesEncoded} frames`),
        });
        progress.stop();
        try {
          const answers = [];
          for (const question of questions) {
            const answer = await memory.session.ask({
              question,
              retrieve: options.retrieve,
              includeWindow: options.includeWindow ?? false,
              maxNewTokens: options.maxNewTokens,
            });
            answers.push({ question, answer: answer.text.trim(), evidence: answer.evidence, firstTokenMs: Math.round(answer.retrievalMs + answer.prefillMs), contextTokens: answer.contextTokens });
          }
          if (options.json) return printJson({ video, memory: memory.dir, reused: memory.reused, framesEncoded: memory.framesEncoded, answers });
          if (!quiet) process.stderr.write(`${memory.reused ? 'reused' : 'built'} memory of ${memory.framesEncoded} frames in ${memory.dir}\n`);
          for (const a of answers) {
            const strongest = [...a.evidence].sort((x, y) => y.meanScore - x.meanScore).slice(0, 5).sort((x, y) => x.tStart - y.tStart);
            const cited = strongest.map((e) => `${clock(e.tStart)} (${e.meanScore.toFixed(2)})`).join(', ') || '-';
            process.stdout.write(`Q: ${a.question}\nA: ${a.answer}\n   strongest evidence at ${cited}; first token ${a.firstTokenMs} ms\n`);
          }
        } finally {
          await memory.session.close();
        }
      } finally {
        progress.stop();
        await model.dispose();
      }
    });
}
