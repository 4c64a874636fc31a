import fs from 'node:fs';
import { Command } from 'commander';
import { loadModelConfig } from '../../model/modelConfig.js';
import { buildProbeModel, defaultProbeDir } from '../../model/probe/probeModelFolder.js';
import { PROBE_MODELS } from '../../model/probe/probeSpecs.js';
import { streamTokensPerFrame } from '../../model/videoFrames.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import type { GraphDtype } from '../../model/graphFiles.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { DTYPE_HELP, modelLoadOptions, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import { parseInteger, printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';

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
    .description('load a model folder and describe it: family, geometry, graphs and their I/O')
    .argument('<model>', 'model folder or probe model name')
    .option('--dtype <dtype>', DTYPE_HELP, parseDtypeOption)
    .option('--query-taps <mode>', QUERY_TAPS_HELP, parseQueryTapsOption)
    .option('--json', 'print JSON')
    .action(async (model: string, options: { dtype?: GraphDtype; queryTaps?: QueryTapMode; json?: boolean }) => {
      const dir = resolveModelDir(model);
      const config = loadModelConfig(dir);
      const vlm = await VisionLanguageModel.load(dir, modelLoadOptions(options));
      try {
        const graphs = [vlm.vision, vlm.embedder, vlm.decoder.graph].map((g) => ({
          file: g.file,
          inputs: g.inputNames.filter((n) => !n.startsWith('past_key_values.') || n.startsWith('past_key_values.0.')).map((n) => ({ ...g.input(n) })),
        }));
        const info = vlm.decoder.info;
        const summary = {
          dir: config.dir,
          modelType: config.modelType,
          family: config.family,
          probe: config.probe ?? null,
          text: config.text,
          kvType: info.type,
          tokensPerImage: vlm.tokensPerImage,
          tokensPerFrame: streamTokensPerFrame(vlm),
          imageTokenId: config.imageTokenId,
          eosTokenIds: [...vlm.eosTokenIds],
          queryTaps: info.queryTapNames ? 'yes' : 'no',
          queryTapState: vlm.queryTaps.state,
          ...(vlm.queryTaps.reason ? { queryTapReason: vlm.queryTaps.reason } : {}),
          graphs,
        };
        if (options.json) return printJson(summary);
        const t = config.text;
        process.stdout.write(
          [
            `${config.dir}`,
            `  model_type ${config.modelType} (family ${config.family})${config.probe ? `, probe model ${config.probe.name} seed ${config.probe.seed}` : ''}`,
            `  decoder: ${t.numLayers} layers, hidden ${t.hiddenSize}, ${t.numHeads} heads / ${t.numKvHeads} KV heads, head_dim ${t.headDim}, rotary ${t.rotaryDim}, theta ${t.ropeTheta}, vocab ${t.vocabSize}`,
            `  KV cache ${info.type}; query taps: ${summary.queryTaps} (${vlm.queryTaps.state}${vlm.queryTaps.reason ? `: ${vlm.queryTaps.reason}` : ''}); ${summary.tokensPerImage} tokens per image, ${summary.tokensPerFrame} per stream frame; eos ${summary.eosTokenIds.join(', ')}`,
            ...graphs.map((g) => `  ${g.file}\n${g.inputs.map((i) => `    in ${i.name} ${i.type} [${i.shape.join(', ')}]`).join('\n')}`),
          ].join('\n') + '\n',
        );
      } finally {
        await vlm.dispose();
      }
    });
  return models;
}
