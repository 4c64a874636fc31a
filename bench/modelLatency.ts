/**
 * Per-call model latency at a probe geometry: the vision encoder on one frame, then the decoder's
 * prefill of N new tokens on top of a past of P tokens (P = 1k, 4k, 16k by default) and a
 * single-token decode step at the same past lengths.
 *
 *   node --import tsx bench/modelLatency.ts [--model probe-random-smolvlm2-256m] [--new 64] [--past 1024,4096,16384] [--repeats 5]
 *
 * Prints median milliseconds per call and the ratio to the shortest past, measured in the same run.
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { KvCache } from '../src/model/kvCache.js';
import { floatTensor } from '../src/model/tensors.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    new: { type: 'string', default: '64' },
    past: { type: 'string', default: '1024,4096,16384' },
    repeats: { type: 'string', default: '5' },
  },
});
const newTokens = Number(values.new);
const pasts = values.past!.split(',').map(Number);
const repeats = Number(values.repeats);

function randomValues(count: number, random: () => number, scale: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const model = await VisionLanguageModel.load(resolveModelDir(values.model!));
const info = model.decoder.info;
const random = mulberry32(1);

const side = model.imageConfig.tileSize ?? 512;
const frame = { pixelValues: randomValues(3 * side * side, random, 1), count: 1, height: side, width: side, rows: 0, cols: 0 };
await model.encodeImages(frame);
const visionSamples: number[] = [];
for (let r = 0; r < Math.max(3, Math.ceil(repeats / 2)); r++) {
  const started = performance.now();
  await model.encodeImages(frame);
  visionSamples.push(performance.now() - started);
}
process.stdout.write(`vision encoder, one ${side}x${side} frame: ${median(visionSamples).toFixed(0)} ms (median of ${visionSamples.length} after a warm-up)\n`);
process.stdout.write(
  `model ${values.model}: ${info.numLayers} layers, ${info.numKvHeads} KV heads x ${info.headDim}, hidden ${info.hiddenSize}, KV ${info.type}; ` +
    `${repeats} timed calls after 1 warm-up, median\n\n`,
);
process.stdout.write('| past tokens | prefill ' + newTokens + ' tokens (ms) | ratio | decode 1 token (ms) | ratio |\n|---|---|---|---|---|\n');
let basePrefill = 0;
let baseDecode = 0;
for (const past of pasts) {
  // Random KV of the right shape: latency does not depend on the values.
  const layers = Array.from({ length: info.numLayers }, () => ({
    key: floatTensor(info.type, randomValues(info.numKvHeads * past * info.headDim, random, 1), [1, info.numKvHeads, past, info.headDim]),
    value: floatTensor(info.type, randomValues(info.numKvHeads * past * info.headDim, random, 1), [1, info.numKvHeads, past, info.headDim]),
  }));
  const cache = new KvCache(layers);
  const embeds = (n: number): ort.Tensor => floatTensor(info.embedType, randomValues(n * info.hiddenSize, random, 0.05), [1, n, info.hiddenSize]);
  const time = async (n: number) => {
    const input = embeds(n);
    await model.decoder.step({ inputsEmbeds: input, past: cache, logits: 'last' });
    const samples: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const started = performance.now();
      await model.decoder.step({ inputsEmbeds: input, past: cache, logits: 'last' });
      samples.push(performance.now() - started);
    }
    return median(samples);
  };
  const prefill = await time(newTokens);
  const decode = await time(1);
  basePrefill ||= prefill;
  baseDecode ||= decode;
  process.stdout.write(
    `| ${past} | ${prefill.toFixed(1)} | ${(prefill / basePrefill).toFixed(2)} | ${decode.toFixed(1)} | ${(decode / baseDecode).toFixed(2)} |\n`,
  );
}
await model.dispose();
