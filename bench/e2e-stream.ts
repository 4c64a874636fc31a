/**
 * End-to-end ingest of a generated 1080p clip at 1 frame/s through the whole pipeline (ffmpeg
 * sampling and scaling, preprocessing, vision encoder, decoder over [prefix | sinks | window],
 * pre-RoPE extraction, write-through store, index) with a probe model at real geometry; prints the
 * mean time per frame by phase and the share spent outside onnxruntime calls.
 *
 *   node --import tsx bench/e2e-stream.ts [--minutes 1] [--model probe-random-smolvlm2-256m] [--window 16]
 *
 * Design target: everything but the onnxruntime calls (vision, embed, decoder) < 5% of frame time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeProbeClip } from '../ingest/index.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { ingestIntoSession } from '../src/engine/ingestToSession.js';
import { StreamSession } from '../src/engine/streamSession.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
    window: { type: 'string', default: '16' },
  },
});
const durationS = Math.round(Number(values.minutes) * 60);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-e2e-'));
try {
  const { clip } = await makeProbeClip({ out: path.join(dir, 'clip.mp4'), durationS, width: 1920, height: 1080, needles: [{ start: Math.floor(durationS / 3), duration: 4, background: 'red', square: 'green' }] });
  const model = await VisionLanguageModel.load(resolveModelDir(values.model!));
  const session = await StreamSession.open(model, { dir: path.join(dir, 'memory'), windowFrames: Number(values.window) });
  const started = performance.now();
  const result = await ingestIntoSession(session, clip, { fps: 1 });
  await session.flush();
  const wallPerFrame = (performance.now() - started) / result.framesEncoded;
  const phases = session.stats().meanPhaseMs;
  await session.close();
  await model.dispose();

  const onnx = (phases.visionMs ?? 0) + (phases.decoderMs ?? 0);
  const rows = Object.entries(phases).sort((a, b) => b[1] - a[1]);
  process.stdout.write(`${values.model}, ${durationS} s of 1080p at 1 frame/s (${result.framesEncoded} frames), window ${values.window}\n\n`);
  process.stdout.write('| phase | ms per frame | share of wall time |\n|---|---|---|\n');
  for (const [phase, ms] of rows) process.stdout.write(`| ${phase} | ${ms.toFixed(2)} | ${((ms / wallPerFrame) * 100).toFixed(1)}% |\n`);
  process.stdout.write(`| wall time per frame (all of ingest) | ${wallPerFrame.toFixed(1)} | 100% |\n\n`);
  process.stdout.write(
    `outside the vision encoder and decoder calls: ${(wallPerFrame - onnx).toFixed(1)} ms per frame = ${(((wallPerFrame - onnx) / wallPerFrame) * 100).toFixed(1)}% ` +
      `(embedMs is an onnxruntime call too: ${(phases.embedMs ?? 0).toFixed(2)} ms)\n`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
