/**
 * Resident memory of a stream's memory side over stream time, at the smolvlm2-256m geometry
 * (30 layers x 3 KV heads x 64, 74 tokens per frame chunk, 1 frame/s): the window, write-through
 * chunk store and retrieval index fed with synthetic chunks as the encoder produces them.
 *
 *   node --expose-gc --import tsx bench/memory-rss.ts [--minutes 60] [--sample-minutes 10] [--window 16] [--with-model]
 *
 * --with-model also loads the probe-random-smolvlm2-256m sessions first, so the figures include the
 * model's resident weights as a real server's would. Prints RSS at each sample and the ratio of the
 * last sample to the one at 10 minutes (design target: within 1.10).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';
import { removeDir, runSyntheticStream, SMOLVLM2_256M_CHUNK } from '../test/helpers/syntheticStream.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    'sample-minutes': { type: 'string', default: '10' },
    window: { type: 'string', default: '16' },
    'with-model': { type: 'boolean', default: false },
    dir: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const sampleEvery = Number(values['sample-minutes']) * 60;
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
if (!(globalThis as { gc?: unknown }).gc) process.stderr.write('note: run with --expose-gc for stable figures\n');

const model = values['with-model'] ? await VisionLanguageModel.load(resolveModelDir('probe-random-smolvlm2-256m')) : undefined;
const dir = values.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-memory-rss-'));
process.stdout.write(
  `smolvlm2-256m chunk geometry, ${minutes} min at 1 frame/s, window ${values.window} frames, model loaded: ${model ? 'yes' : 'no'}\n\n` +
    '| stream time | chunks | RSS MiB | heap MiB | array buffers MiB | on disk MiB |\n|---|---|---|---|---|---|\n',
);
const started = performance.now();
const samples = await runSyntheticStream({
  dir,
  geometry: SMOLVLM2_256M_CHUNK,
  chunks: minutes * 60,
  windowFrames: Number(values.window),
  sampleEvery,
  onSample: (s) =>
    process.stdout.write(`| ${s.chunks / 60} min | ${s.chunks} | ${mib(s.rssBytes)} | ${mib(s.heapUsedBytes)} | ${mib(s.arrayBuffersBytes)} | ${mib(s.diskBytes)} |\n`),
});
const first = samples[0]!;
const last = samples.at(-1)!;
process.stdout.write(
  `\nRSS at ${last.chunks / 60} min / RSS at ${first.chunks / 60} min = ${(last.rssBytes / first.rssBytes).toFixed(3)} ` +
    `(+${mib(last.rssBytes - first.rssBytes)} MiB, ${((last.rssBytes - first.rssBytes) / (last.chunks - first.chunks) / 1024).toFixed(1)} KiB per frame); ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s\n`,
);
removeDir(dir);
await model?.dispose();
