import fs from 'node:fs';
import { Command } from 'commander';
import { buildProbeModel, defaultProbeDir } from '../../model/probe/probeModelFolder.js';
import { PROBE_MODELS } from '../../model/probe/probeSpecs.js';
import { DTYPE_HELP, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import { parseInteger, printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { type InspectOptions, inspectModelCommand } from './modelsInspect.js';

export function modelsCommand(): Command {
  const models = new Command('models').description('list, build and inspect models (probe models are generated, never downloaded)');

  models
    .command('list')
    .description('list the probe models Vigil can build, and whether each is in the cache')
    .option('--json', 'print JSON')
    .action((options: { json?: boolean }) => {
      const rows = PROBE_MODELS.map((spec) => {
        const dir = defaultProbeDir(spec.name, 0);
        return {
          name: spec.name,
          description: spec.description,
          dtype: spec.dtype,
          layers: spec.text.numLayers,
          built: fs.existsSync(dir),
          dir,
        };
      });
      if (options.json) return printJson(rows);
      for (const row of rows) {
        process.stdout.write(`${row.name.padEnd(34)} ${row.built ? 'built ' : '      '} ${row.description}\n`);
      }
    });

  models
    .command('build')
    .description('build a probe model folder (Hugging Face ONNX layout) and print its path')
    .argument('<name>', 'probe model name (see `vigil models list`)')
    .option('--out <dir>', 'output folder (default: the cache, ~/.cache/vigil/models/<name>-seed<N>)')
    .option('--seed <n>', 'weight seed', parseInteger(0, 0xffffffff), 0)
    .option('--force', 'rebuild even if the folder is already complete')
    .action((name: string, options: { out?: string; seed: number; force?: boolean }) => {
      const progress = stageProgress(`building ${name}`);
      try {
        const built = buildProbeModel(name, {
          ...(options.out ? { outDir: options.out } : {}),
          seed: options.seed,
          force: options.force ?? false,
          onProgress: (p) => progress.update(p.done, p.total, p.stage),
        });
        progress.stop();
        if (built.reused) process.stderr.write(`${name}: already built (use --force to rebuild)\n`);
        process.stdout.write(`${built.dir}\n`);
      } finally {
        progress.stop();
      }
    });

  models
    .command('inspect')
    .description(
      'describe a model folder, supported or not (then why not): every ONNX file\'s inputs/outputs, attention op, RoPE inside or outside, ' +
        'KV dtype and per-layer query-tap plan, read without onnxruntime; a supported folder is then loaded for its runtime facts',
    )
    .argument('<model>', 'model folder or probe model name')
    .option('--dtype <dtype>', `${DTYPE_HELP}; also limits the report to that format's files (default: every file in onnx/)`, parseDtypeOption)
    .option('--query-taps <mode>', QUERY_TAPS_HELP, parseQueryTapsOption)
    .option('--no-load', 'only the static report: do not load the model into onnxruntime')
    .option('--json', 'print JSON')
    .action((model: string, options: InspectOptions) => inspectModelCommand(model, options));
  return models;
}
