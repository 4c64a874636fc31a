import path from 'node:path';
import { Command } from 'commander';
import { vigilCacheDir } from '../../cacheDir.js';
import { runNeedleDemo } from '../../engine/needleDemo.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { parseInteger, parseSetting, printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';

interface DemoOptions {
  duration: number;
  window: number;
  retrieve: number;
  json?: boolean;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('stream a generated needle clip through Vigil and ask about frames that left the window long ago')
    .option('--duration <s>', 'clip length in seconds', parseInteger(30, 3600), 120)
    .option('--window <frames>', 'recent frames kept in context (1 frame per second)', parseSetting('window'), 8)
    .option('--retrieve <n>', 'frames retrieved per layer for each question', parseSetting('r'), 8)
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nUses the probe-needle model (built on first use): its answer is the square color only when the\n' +
        "needle frame's KV is back in context, so a right answer means retrieval worked.",
    )
    .action(async (options: DemoOptions) => {
      const dir = resolveModelDir('probe-needle', { quiet: options.json ?? false });
      const model = await VisionLanguageModel.load(dir);
      const progress = stageProgress('demo', options.json ?? false);
      try {
        const result = await runNeedleDemo(model, {
          workDir: path.join(vigilCacheDir(), 'demo'),
          durationS: options.duration,
          windowFrames: options.window,
          retrieve: options.retrieve,
          onStage: (stage, done, total) => progress.update(done, total, stage),
        });
        progress.stop();
        if (options.json) return printJson(result);
        const out = process.stdout;
        out.write(`clip: ${result.clip} (${result.truth.durationS} s, needles at ${result.truth.needles.map((n) => `${n.start}s`).join(', ')})\n`);
        out.write(`streamed ${result.framesEncoded} frames in ${result.ingestSeconds.toFixed(1)} s; window ${options.window} frames, the rest offloaded to disk\n\n`);
        out.write('| question | truth | Vigil (retrieval) | window only | evidence (s) | first token |\n|---|---|---|---|---|---|\n');
        for (const r of result.rows) {
          out.write(
            `| ${r.question} | ${r.expected} | ${r.answer} ${r.correct ? 'ok' : 'WRONG'} | ${r.windowOnlyAnswer} | ` +
              `${r.evidence.map((e) => e.t).join(', ') || '-'} | ${r.firstTokenMs.toFixed(0)} ms |\n`,
          );
        }
        out.write(`\n${result.correct}/${result.rows.length} answers correct\n`);
        if (result.correct !== result.rows.length) process.exitCode = 1;
      } finally {
        progress.stop();
        await model.dispose();
      }
    });
}
