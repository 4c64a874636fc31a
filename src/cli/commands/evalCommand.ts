import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { writeVniahOutputs } from '../../eval/vniahOutputs.js';
import { runVniah } from '../../eval/vniahRunner.js';
import { DEFAULT_VNIAH_SETTINGS as D, STORAGE_DTYPES, type VniahFlags, vniahSettingsFromFlags } from '../../eval/vniahSettings.js';
import { longVniahSettingsFromFlags, longVniahTable, runLongVniah, writeLongVniahOutputs } from '../../eval/vniahLong.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';

interface VniahOptions extends VniahFlags {
  days?: string;
  scene?: string;
  budget?: string;
  scale?: string;
  keepFullSec?: string;
  kvShare?: string;
  busyFrames?: string;
  model: string;
  out: string;
  keepMemory?: boolean;
  json?: boolean;
}

/** The command line as typed, for the record (arguments with spaces quoted). */
function commandLine(): string {
  return ['vigil', ...process.argv.slice(2)].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function vniahCommand(): Command {
  return new Command('vniah')
    .description('V-NIAH: needle questions on probe clips of several lengths, every retrieval mode, table + heatmap')
    .option('--lengths <minutes>', 'clip lengths in minutes (comma list, fractions allowed)', D.lengthsMin.join(','))
    .option('--depths <percent>', 'needle depths in % of the clip (comma list, 0..100)', D.depthsPct.join(','))
    .option('--modes <modes>', 'answer modes: full, window, uniform, rekv, oracle', D.modes.join(','))
    .option('--dtypes <dtypes>', `KV storage dtypes rekv is measured on (${STORAGE_DTYPES.join(', ')})`, D.dtypes.join(','))
    .option('--baseline-dtypes <dtypes>', 'KV storage dtypes the other modes are measured on', D.baselineDtypes.join(','))
    .option('--retrieve <r>', 'chunks per layer (rekv) / frames (uniform)', String(D.retrieve))
    .option('--window <frames>', 'recent frames kept in context', String(D.windowFrames))
    .option('--sinks <frames>', 'first frames kept in context forever', String(D.sinkFrames))
    .option('--full-limit <tokens>', 'run full only when frames x tokens per frame is at most this', String(D.fullLimitTokens))
    .option('--needle-seconds <s>', 'length of each needle scene (frames at 1 fps)', String(D.needleSeconds))
    .option('--repeats <n>', 'times each question is asked; timings are the median', String(D.repeats))
    .option('--signal-layer <i>', 'layer whose retrieved set recall is read at (probe-needle: 1)', String(D.signalLayer))
    .option('--model <model>', 'a needle model: probe-needle, probe-needle-256m (SmolVLM2-256M geometry) or a folder', 'probe-needle')
    .option('--out <dir>', 'where results.json, table.md and heatmap.png go', './vniah-results')
    .option('--keep-memory', 'keep each stream memory under OUT/memory (default: a temp folder, removed)')
    .option('--json', 'print results.json on stdout')
    .option('--days <days>', 'long-horizon grid instead: one fast-forwarded stream of this many days (needles at --depths, default 0,25,50,75,100, plus one in the float32 and one in the kivi4 band)')
    .option('--scene <scene>', 'long grid: busy (every frame encoded) or camera (static scene, an event every 4 min, real frame gate)', 'busy')
    .option('--budget <bytes>', 'long grid: the stream budget at full scale', '20GB')
    .option('--scale <factor>', 'long grid: divide budget, keepFullSec and stream length by this (tiers keep their proportions)', '1')
    .option('--keep-full-sec <s>', 'long grid: seconds kept at the stream dtype before kivi4 (full scale)', '1800')
    .option('--kv-share <share>', 'long grid: share of the budget KV tiers may take before the archive', '0.4')
    .option('--busy-frames <kind>', 'long grid, busy scene: noise (the archive stills\' worst case) or scene (moving objects, compresses like footage)', 'noise')
    .addHelpText(
      'after',
      '\nEach clip is generated once into the Vigil cache and ingested once per storage dtype.\n' +
        "Answers come from the probe-needle model: the square's color only when the needle frame's KV is in context.",
    )
    .action(async (options: VniahOptions, command: Command) => {
      if (options.days !== undefined) return longGrid(options, command);
      const settings = vniahSettingsFromFlags(options);
      const quiet = options.json ?? false;
      const out = path.resolve(options.out);
      const modelDir = resolveModelDir(options.model, { quiet });
      const model = await VisionLanguageModel.load(modelDir);
      const progress = stageProgress('eval vniah', quiet);
      const memoryRoot = options.keepMemory ? path.join(out, 'memory') : fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-vniah-'));
      try {
        const results = await runVniah(model, {
          settings,
          modelDir,
          memoryRoot,
          keepMemory: options.keepMemory ?? false,
          commandLine: commandLine(),
          onStage: (label, done, total) => progress.update(done, total, label),
        });
        progress.stop();
        const files = await writeVniahOutputs(out, results);
        if (options.json) return printJson(results);
        process.stderr.write(`wrote ${files.resultsJson}, ${files.tableMd}, ${files.heatmapPng} (${results.totalSeconds.toFixed(0)} s)\n`);
      } finally {
        progress.stop();
        if (!options.keepMemory) fs.rmSync(memoryRoot, { recursive: true, force: true });
        await model.dispose();
      }
    });
}

/** `vigil eval vniah --days N`: the long-horizon grid (src/eval/vniahLong.ts). */
async function longGrid(options: VniahOptions, command: Command): Promise<void> {
  const given = (name: string) => command.getOptionValueSource(name) !== 'default';
  const settings = longVniahSettingsFromFlags({
    days: options.days!,
    scene: options.scene!,
    budget: options.budget!,
    scale: options.scale!,
    keepFullSec: options.keepFullSec!,
    kvShare: options.kvShare!,
    busyFrames: options.busyFrames!,
    ...(given('depths') ? { depths: options.depths! } : {}),
    ...(given('retrieve') ? { retrieve: options.retrieve! } : {}),
    ...(given('window') ? { window: options.window! } : {}),
    ...(given('sinks') ? { sinks: options.sinks! } : {}),
  });
  const quiet = options.json ?? false;
  const out = path.resolve(options.out);
  const modelDir = resolveModelDir(options.model, { quiet });
  const model = await VisionLanguageModel.load(modelDir);
  const progress = stageProgress('eval vniah (long)', quiet);
  try {
    const results = await runLongVniah(model, {
      settings,
      modelDir,
      ...(options.keepMemory ? { memoryDir: path.join(out, 'memory') } : {}),
      commandLine: commandLine(),
      onStage: (label, done, total) => progress.update(done, total, label),
    });
    progress.stop();
    const files = await writeLongVniahOutputs(out, results);
    if (options.json) return printJson(results);
    process.stdout.write(longVniahTable(results));
    process.stderr.write(`wrote ${files.resultsJson}, ${files.tableMd}, ${files.heatmapPng} (${results.totalSeconds.toFixed(0)} s)\n`);
  } finally {
    progress.stop();
    await model.dispose();
  }
}

export function evalCommand(): Command {
  return new Command('eval').description('evaluations with baselines, tables and charts').addCommand(vniahCommand());
}
