/**
 * probe-needle-256m's answer margin against the scale of its random layers (docs/needle-model.md).
 *
 *   node --import tsx bench/needle-margin.ts [--scales 0,0.1,0.3,1] [--write-circuit-dims] [--token-energy E] [--frames 8]
 *
 * Per scale: the registered probe-needle-256m spec with `needleRandomLayers.outputScale` set to it is
 * built into a temp folder (removed after), a stream of --frames real 640x360 frames (one red-screen /
 * green-square needle at frame 3, noisy gray haystack elsewhere; window 2 frames + 1 sink) is encoded,
 * and the question's first token is read from the decoder's logits over three contexts:
 *   needle in context  [sink | window | needle chunk], 'red' asked: ' green' expected;
 *   needle absent      [sink | window], 'red' asked: ' unknown' expected;
 *   all frames, blue   every frame, 'blue' asked (no blue screen): ' unknown' expected.
 * Margin = the top logit minus the best other token's. `--write-circuit-dims` lets the random layers
 * write into the circuit's residual dims too (off in the registered model); `--token-energy` overrides
 * the registered model's per-token random energy (needleWeights.ts `tokenEnergy`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { FrameChunk } from '../memory/frameChunk.js';
import { buildProbeFolder } from '../src/model/probe/probeModelFolder.js';
import { findProbeSpec, type ProbeModelSpec } from '../src/model/probe/probeSpecs.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame } from '../test/helpers/needleFrames.js';
import { RamStream } from '../test/helpers/ramStream.js';

const NEEDLE_AT = 3;

const { values: args } = parseArgs({
  options: {
    scales: { type: 'string', default: '0,0.1,0.3,1' },
    'write-circuit-dims': { type: 'boolean', default: false },
    'token-energy': { type: 'string' },
    frames: { type: 'string', default: '8' },
  },
});
const scales = args.scales.split(',').map(Number);
const frames = Number(args.frames);
if (scales.some((s) => !Number.isFinite(s) || s < 0) || !Number.isInteger(frames) || frames <= NEEDLE_AT + 3) {
  throw new Error('--scales: comma list of numbers >= 0; --frames: an integer > 6');
}

interface First {
  token: string;
  margin: number;
}

async function measure(spec: ProbeModelSpec): Promise<{ buildS: number; bytes: number; cases: First[] }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-needle-margin-'));
  try {
    const started = performance.now();
    const { dir } = buildProbeFolder(spec, { outDir: path.join(root, 'model') });
    const buildS = (performance.now() - started) / 1000;
    const bytes = fs.readdirSync(path.join(dir, 'onnx')).reduce((n, f) => n + fs.statSync(path.join(dir, 'onnx', f)).size, 0);
    const model = await VisionLanguageModel.load(dir);
    try {
      const haystack = await preprocessFrame(model, await haystackFrame());
      const needle = await preprocessFrame(model, await needleFrame({ background: 'red', square: 'green' }));
      const stream = await RamStream.create(model, { sinkFrames: 1, windowFrames: 2 });
      const chunks: FrameChunk[] = [];
      for (let i = 0; i < frames; i++) chunks.push((await stream.encodeFrame(i === NEEDLE_AT ? needle : haystack, i)).chunk);
      const first = async (context: readonly FrameChunk[], color: string): Promise<First> => {
        const ids = model.tokenizer.encode(stream.format.question(`What color was the square on the ${color} screen?`));
        const { logits } = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past: stream.toCache(stream.assembleContext(context)), logits: 'last' });
        let top = 0;
        for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[top]!) top = v;
        let other = -Infinity;
        for (let v = 0; v < logits.length; v++) if (v !== top && logits[v]! > other) other = logits[v]!;
        return { token: model.tokenizer.decode([top]), margin: logits[top]! - other };
      };
      const window = stream.window.contextChunks;
      const cases = [
        await first([...window, chunks[NEEDLE_AT]!].sort((a, b) => a.chunkId - b.chunkId), 'red'),
        await first(window, 'red'),
        await first(chunks.slice(1), 'blue'),
      ];
      return { buildS, bytes, cases };
    } finally {
      await model.dispose();
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const base = findProbeSpec('probe-needle-256m')!;
const tokenEnergy = args['token-energy'] !== undefined ? Number(args['token-energy']) : base.needleRandomLayers?.tokenEnergy;
const cell = (f: First, expected: string) => `'${f.token}' by ${f.margin.toFixed(2)}${f.token === expected ? '' : ' (WRONG)'}`;
console.log(
  `probe-needle-256m, ${frames} frames, random layers ${args['write-circuit-dims'] ? 'write every dim' : 'kept off the circuit dims'}, token energy ${tokenEnergy ?? 0}\n`,
);
console.log('| scale | needle in context (red asked) | needle absent (red asked) | all frames, blue asked | build s | onnx MB |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const outputScale of scales) {
  // fp32 files only (no _quantized / _q4), so build time and MB compare with the figures of before.
  const spec: ProbeModelSpec = { ...base, quantizedGraphs: false, needleRandomLayers: { outputScale, writeCircuitDims: args['write-circuit-dims'], ...(tokenEnergy ? { tokenEnergy } : {}) } };
  const { buildS, bytes, cases } = await measure(spec);
  const [withNeedle, absent, blue] = cases as [First, First, First];
  console.log(`| ${outputScale} | ${cell(withNeedle, ' green')} | ${cell(absent, ' unknown')} | ${cell(blue, ' unknown')} | ${buildS.toFixed(1)} | ${(bytes / 1e6).toFixed(0)} |`);
}
