import fs from 'node:fs';
import { Command } from 'commander';
import { VigilError } from '../../../common/errors.js';
import type { GraphDtype } from '../../model/graphFiles.js';
import { buildProbeModel, defaultProbeDir } from '../../model/probe/probeModelFolder.js';
import { needsQuantizedFiles, probeFolderDtypes, quantizedGraphsPresent } from '../../model/probe/probeQuantizedFiles.js';
import { findProbeSpec, PROBE_MODELS } from '../../model/probe/probeSpecs.js';
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
          // The weight formats its folder can hold; q8 / q4 of the float32 probes are built on request.
          dtypes: probeFolderDtypes(spec),
          ...(needsQuantizedFiles(spec, 'q8') ? { quantizedBuilt: quantizedGraphsPresent(dir) } : {}),
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
    .option(
      '--dtype <dtype>',
      'the weight format you will load: q8 or q4 also writes the int8 (_quantized) and 4-bit (_q4) files of the float32 probes ' +
        '(both together; added to a folder built without them); default: the float files only',
      parseDtypeOption,
    )
    .action((name: string, options: { out?: string; seed: number; force?: boolean; dtype?: GraphDtype }) => {
      const spec = findProbeSpec(name);
      if (spec && options.dtype && !probeFolderDtypes(spec).includes(options.dtype)) {
        throw new VigilError('BAD_INPUT', `${name} has no ${options.dtype} files (its dtypes: ${probeFolderDtypes(spec).join(', ')})`);
      }
      const progress = stageProgress(`building ${name}`);
      try {
        const built = buildProbeModel(name, {
          ...(options.out ? { outDir: options.out } : {}),
          seed: options.seed,
          force: options.force ?? false,
          ...(options.dtype ? { dtype: options.dtype } : {}),
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
