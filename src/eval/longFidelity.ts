/**
 * Pass-2 logits per tier against the exact KV (issue 15, V-NIAH over days, the random-geometry
 * model): in a long stream built by fast-forward (src/eval/longStream.ts), `perTier` haystack chunks
 * of each tier are put in every layer's context (sinks + those chunks, a fixed selection) and the
 * question's pass-2 logits are compared with the same context built from the chunks' exact float32
 * KV (the encoded template each one reused). KV tiers are read from the store (kivi4 dequantized);
 * archived chunks are re-encoded from their stills exactly as a question's ArchiveRecall does
 * (vision encoder + prefill over [prefix | sink frames], at the chunk's time). Reported with the
 * difference of dropping those chunks altogether, the scale the tier's error should be read on.
 */
import type { FrameChunk } from '../../memory/frameChunk.js';
import { fixedSelection, type Selection } from '../engine/contextLoader.js';
import { modelFrameSide } from '../engine/ingestToSession.js';
import { toKvCache } from '../engine/kvContext.js';
import { readArchivedFrames } from '../engine/stillGroups.js';
import type { StreamSession } from '../engine/streamSession.js';
import { preprocessVideoFrame } from '../model/preprocess/imagePreprocessor.js';
import type { LongStreamBuild } from './longStream.js';

export interface TierFidelity {
  tier: string;
  chunkIds: number[];
  questions: number;
  /** Largest |logit(tier) - logit(exact)| over the vocabulary and questions. */
  maxAbsLogit: number;
  /** Mean over questions of KL(exact || tier), nats. */
  meanKl: number;
  /** The same for dropping the chunks (sinks only): the scale. */
  meanKlDropped: number;
  argmaxKept: number;
  reencodeMs: number;
}

function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i]! - max);
  for (let i = 0; i < p.length; i++) p[i]! /= sum;
  return p;
}

function kl(p: Float64Array, q: Float64Array): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) s += p[i]! * Math.log(p[i]! / Math.max(q[i]!, 1e-300));
  return s;
}

const argmax = (x: Float32Array) => x.reduce((best, v, i) => (v > x[best]! ? i : best), 0);

async function pass2(session: StreamSession, question: string, selection: Selection, recalled: ReadonlyMap<number, FrameChunk>): Promise<Float32Array> {
  const model = session.model;
  const loaded = await session.memory.load(selection, false, recalled);
  try {
    const ids = model.tokenizer.encode(session.encoder.format.question(question));
    // Only the logits: no `present` fetched (onnxruntime-node would copy the whole context out).
    const { logits } = await model.decoder.stepRows({ inputsEmbeds: await model.embed(ids), past: toKvCache(loaded.context, model.decoder.info), logits: 'last', kv: 'none' });
    return Float32Array.from(logits);
  } finally {
    loaded.dispose();
  }
}

/** Re-encodes archived chunks from their stills (still groups decoded) as ArchiveRecall does. */
async function reencode(session: StreamSession, ids: readonly number[]): Promise<Map<number, FrameChunk>> {
  const { encoder, memory } = session;
  const { frames } = await readArchivedFrames((wanted) => memory.store.readStills(wanted), ids);
  const window = encoder.newWindow(memory.window.options);
  window.restore(memory.window.sinkChunks, []);
  const out = new Map<number, FrameChunk>();
  for (const id of ids) {
    const span = memory.store.chunkSpan(id);
    const rgb = frames.get(id);
    if (!span || !rgb) continue;
    const image = await preprocessVideoFrame({ data: rgb.data, width: rgb.width, height: rgb.height, channels: 3 }, encoder.model.imageConfig, modelFrameSide(session));
    const { chunk } = await encoder.encodeFrame(image, span.tStart, window);
    out.set(id, { ...chunk, chunkId: id, tStart: span.tStart, tEnd: span.tEnd });
  }
  return out;
}

export async function tierFidelity(build: LongStreamBuild, questions: readonly string[], perTier = 4): Promise<TierFidelity[]> {
  const session = build.session;
  const numLayers = session.model.decoder.info.numLayers;
  const out: TierFidelity[] = [];
  const none = new Map<number, FrameChunk>();
  for (const span of session.store.tierSpans()) {
    // Haystack chunks of the span (their exact KV is known), evenly spaced, still held.
    const candidates: number[] = [];
    for (let id = span.firstChunkId; id <= span.lastChunkId; id++) if (build.exactChunk(id) && session.store.chunkSpan(id)) candidates.push(id);
    if (candidates.length === 0) continue;
    const k = Math.min(perTier, candidates.length);
    const ids = Array.from({ length: k }, (_, i) => candidates[Math.floor(((i + 0.5) * candidates.length) / k)]!);
    const selection = fixedSelection(ids, numLayers);
    const exact = new Map(ids.map((id) => [id, build.exactChunk(id)!]));
    const started = performance.now();
    const recalled = span.dtype === 'archive' ? await reencode(session, ids) : none;
    const reencodeMs = performance.now() - started;
    let maxAbs = 0;
    let klSum = 0;
    let klDrop = 0;
    let kept = 0;
    for (const q of questions) {
      const e = await pass2(session, q, selection, exact);
      const t = await pass2(session, q, selection, recalled);
      const d = await pass2(session, q, fixedSelection([], numLayers), none);
      for (let i = 0; i < e.length; i++) maxAbs = Math.max(maxAbs, Math.abs(e[i]! - t[i]!));
      const pe = softmax(e);
      klSum += kl(pe, softmax(t));
      klDrop += kl(pe, softmax(d));
      if (argmax(e) === argmax(t)) kept++;
    }
    out.push({ tier: span.dtype, chunkIds: ids, questions: questions.length, maxAbsLogit: maxAbs, meanKl: klSum / questions.length, meanKlDropped: klDrop / questions.length, argmaxKept: kept, reencodeMs });
  }
  return out;
}
