import { Command } from 'commander';
import type { GraphDtype } from '../../model/graphFiles.js';
import { answerAboutImage } from '../../model/imageQuestion.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { defaultTestImage } from '../defaultImage.js';
import { DTYPE_HELP, modelLoadOptions, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import { parseInteger, parseNumber, parseSetting, printJson } from '../options.js';
import { DEFAULT_MODEL, resolveModelDir } from '../resolveModel.js';

interface ChatOptions {
  model: string;
  image?: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  dtype?: GraphDtype;
  queryTaps?: QueryTapMode;
  json?: boolean;
}

export function chatCommand(): Command {
  return new Command('chat')
    .description('answer one question about one image (checks a model folder end to end)')
    .argument('<question>', 'the question')
    .option('--model <model>', 'model folder, or a probe model name (built on first use)', DEFAULT_MODEL)
    .option('--image <file>', 'image file (default: a generated test card, a red square on a blue screen)')
    .option('--max-new-tokens <n>', 'most tokens to generate', parseSetting('maxTokens'), 32)
    .option('--temperature <t>', '0 = greedy; > 0 samples', parseSetting('temperature'), 0)
    .option('--top-p <p>', 'nucleus mass when sampling', parseNumber(Number.MIN_VALUE, 1), 1)
    .option('--seed <n>', 'sampling seed', parseInteger(0, 0xffffffff), 0)
    .option('--dtype <dtype>', DTYPE_HELP, parseDtypeOption)
    .option('--query-taps <mode>', QUERY_TAPS_HELP, parseQueryTapsOption)
    .option('--json', 'print the answer and timings as JSON')
    .addHelpText('after', '\nWith a probe-random model the answer is meaningless text; the command still runs every stage and reports speed.')
    .action(async (question: string, options: ChatOptions) => {
      const dir = resolveModelDir(options.model, { quiet: options.json ?? false, dtype: options.dtype });
      const image = options.image ?? (await defaultTestImage());
      const loadStarted = performance.now();
      const model = await VisionLanguageModel.load(dir, modelLoadOptions(options));
      const loadMs = performance.now() - loadStarted;
      try {
        const answer = await answerAboutImage(model, {
          image,
          question,
          maxNewTokens: options.maxNewTokens,
          temperature: options.temperature,
          topP: options.topP,
          seed: options.seed,
          ...(options.json ? {} : { onText: (piece: string) => process.stdout.write(piece) }),
        });
        const stats = {
          loadMs: Math.round(loadMs),
          visionMs: Math.round(answer.visionMs),
          promptTokens: answer.promptTokens,
          imageTokens: answer.imageTokens,
          prefillMs: Math.round(answer.prefillMs),
          generatedTokens: answer.tokenIds.length,
          decodeTokensPerSecond: Number(answer.decodeTokensPerSecond.toFixed(2)),
          stopReason: answer.stopReason,
        };
        if (options.json) return printJson({ model: dir, image, question, answer: answer.text, tokenIds: answer.tokenIds, ...stats });
        process.stdout.write('\n');
        process.stderr.write(
          `${stats.generatedTokens} tokens at ${stats.decodeTokensPerSecond} token/s (prompt ${stats.promptTokens} tokens, ` +
            `${stats.imageTokens} from the image; vision ${stats.visionMs} ms, prefill ${stats.prefillMs} ms; stop: ${stats.stopReason})\n`,
        );
      } finally {
        await model.dispose();
      }
    });
}
