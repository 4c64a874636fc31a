/**
 * Vision encoder throughput by batch size and onnxruntime thread setting (issue 7): does encoding
 * several queued frames in one call (when ingest falls behind) cost less per frame than one at a
 * time, and which intra-op thread count / spinning setting is fastest on this machine?
 *
 *   node --import tsx bench/vision-batch.ts [--model probe-random-smolvlm2-256m] [--batch 1,2,4]
 *                                           [--threads 0,1,2] [--spinning 1,0] [--rounds 3]
 *
 * Opens the model's vision_encoder.onnx once per (threads, spinning) setting (threads 0:
 * onnxruntime's default, one per physical core) and, in each of --rounds rounds, times one call per
 * batch size with the sizes in alternating order, so machine load hits them alike. Per frame =
 * call time / batch. Prints best ms per frame and the ratio to batch 1 of the same setting, and each
 * setting's batch-1 time as a ratio to the first setting, all measured in this run.
 * VIGIL_EXECUTION_PROVIDERS (e.g. "cuda,cpu") picks the execution providers, as for Vigil itself.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../kernels/sampling.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    batch: { type: 'string', default: '1,2,4' },
    threads: { type: 'string', default: '0,1,2' },
    spinning: { type: 'string', default: '1,0' },
    rounds: { type: 'string', default: '3' },
  },
});
const list = (text: string) => text.split(',').map((s) => Number(s.trim()));
const batches = list(values.batch!);
const threadCounts = list(values.threads!);
const spinnings = list(values.spinning!);
const rounds = Number(values.rounds);
if (batches.some((b) => !(b >= 1)) || threadCounts.some((t) => !(t >= 0)) || !(rounds >= 1)) {
  throw new Error('--batch sizes >= 1, --threads >= 0, --rounds >= 1');
}

const file = path.join(resolveModelDir(values.model!), 'onnx', 'vision_encoder.onnx');

async function openSession(threads: number, spinning: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, {
    executionProviders: (process.env.VIGIL_EXECUTION_PROVIDERS ?? 'cpu').split(',').map((p) => p.trim()),
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
    extra: { session: { intra_op: { allow_spinning: String(spinning) } } },
  });
}

function pixelFeeds(session: ort.InferenceSession, count: number): Record<string, ort.Tensor> {
  const meta = session.inputMetadata.find((m) => m.name === 'pixel_values');
  const shape = meta && 'shape' in meta ? meta.shape : [];
  const side = 512;
  const random = mulberry32(count);
  const pixels = Float32Array.from({ length: count * 3 * side * side }, () => random() * 2 - 1);
  const fiveDims = shape.length === 5;
  const feeds: Record<string, ort.Tensor> = {
    pixel_values: new ort.Tensor('float32', pixels, fiveDims ? [1, count, 3, side, side] : [count, 3, side, side]),
  };
  if (session.inputNames.includes('pixel_attention_mask')) {
    feeds.pixel_attention_mask = new ort.Tensor('bool', new Uint8Array(count * side * side).fill(1), [1, count, side, side]);
  }
  return feeds;
}

interface Row {
  setting: string;
  perFrame: Map<number, number>;
}

const rows: Row[] = [];
for (const threads of threadCounts) {
  for (const spinning of spinnings) {
    const session = await openSession(threads, spinning);
    const feeds = new Map(batches.map((b) => [b, pixelFeeds(session, b)]));
    for (const b of batches) await session.run(feeds.get(b)!); // warm-up: allocations, first-run costs
    const best = new Map<number, number>();
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? batches : [...batches].reverse();
      for (const b of order) {
        const started = performance.now();
        await session.run(feeds.get(b)!);
        const perFrame = (performance.now() - started) / b;
        best.set(b, Math.min(best.get(b) ?? Infinity, perFrame));
      }
    }
    await session.release();
    const setting = `threads ${threads === 0 ? 'default' : threads}, spinning ${spinning ? 'on' : 'off'}`;
    rows.push({ setting, perFrame: best });
    process.stdout.write(`${setting}: ${batches.map((b) => `batch ${b} ${best.get(b)!.toFixed(0)} ms/frame`).join(', ')}\n`);
  }
}

const first = rows[0]!.perFrame.get(batches[0]!)!;
process.stdout.write(`\n${values.model}, vision encoder, best of ${rounds} per cell (ms per frame; ratio to batch ${batches[0]} of the same setting)\n\n`);
process.stdout.write(`| setting | ${batches.map((b) => `batch ${b}`).join(' | ')} | batch ${batches[0]} vs first setting |\n`);
process.stdout.write(`|---|${batches.map(() => '---:').join('|')}|---:|\n`);
for (const row of rows) {
  const base = row.perFrame.get(batches[0]!)!;
  const cells = batches.map((b) => `${row.perFrame.get(b)!.toFixed(0)} (${(row.perFrame.get(b)! / base).toFixed(2)})`);
  process.stdout.write(`| ${row.setting} | ${cells.join(' | ')} | ${(base / first).toFixed(2)} |\n`);
}
