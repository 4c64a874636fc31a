/**
 * A long stream, fast-forwarded (issue 15: the horizon bench and the long V-NIAH grid). Days of
 * stream at 1 frame/s cannot be encoded here (~1 s of model time a frame at smolvlm2-256m
 * geometry), so:
 *
 * - the scene's frames are encoded for real a few times (`busyVariants` distinct noise frames for
 *   the busy scene; the static scene and its event for the camera) in a scratch session, and every
 *   haystack chunk of the stream reuses one of those real chunks' KV and representatives with its
 *   own times: the same bytes per chunk, the same index rows, through the public write path
 *   (`StreamSession.addEncodedChunk`: window -> store -> index, demotion and retention as live);
 * - needle frames are encoded for real, in the stream, at their time (`StreamSession.addFrame`);
 * - history older than the KV tiers can hold is committed straight into the archive tier
 *   (`StreamSession.addArchivedChunks`, representatives + the frame's still, no KV; runs of stills
 *   coded together as H.264 still groups, as demotion codes them) when the
 *   engine has it; needles there keep the representatives of their real encode. Without it, history
 *   the budget would delete anyway is not written at all (the first chunk written starts where the
 *   KV tiers' span can reach back, with a margin), so the stream starts later but holds the same.
 *
 * What differs from a real run is stated in docs/PERFORMANCE.md ("Horizon (issue 15)").
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { FrameChunk, UnnumberedChunk } from '../../memory/frameChunk.js';
import type { TierSpan } from '../../memory/store/index.js';
import { chunkRecordBytes } from '../../memory/store/budget.js';
import { StreamSession } from '../engine/streamSession.js';
import { budgetRetention, streamBudgetPlan } from '../engine/manager/streamBudget.js';
import type { PreprocessedImage } from '../model/preprocess/imagePreprocessor.js';
import type { RgbImage } from '../engine/frameGate.js';
import { encodeStill } from '../engine/stills.js';
import { STILL_GROUP_FRAMES } from '../engine/stillGroups.js';
import { preprocessVideoFrame } from '../model/preprocess/imagePreprocessor.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { fixedSelection } from '../engine/contextLoader.js';
import { toKvCache } from '../engine/kvContext.js';
import { needleQuestion } from '../engine/needleDemo.js';
import { ArchiveRecall, DEFAULT_MAX_REENCODE } from '../engine/archiveRecall.js';
import { modelFrameSide } from '../engine/ingestToSession.js';
import { answerQuestion, type QuestionMemory } from '../engine/questionAnswerer.js';
import { cameraFrame, type CameraGatePattern, type LongNeedle, type LongScene, movingSceneFrame, needleRgb, noiseFrame, type PlannedChunk, planLongStream, type RawRgb } from './longScene.js';
import { gradeAnswer } from './metrics.js';

export interface LongStreamOptions {
  dir: string;
  scene: LongScene;
  durationS: number;
  needles: LongNeedle[];
  /** Retention budget in bytes (null: none). */
  budgetBytes: number | null;
  keepFullSec: number;
  kvShare?: number;
  /** Use the archive tier when the engine has one (default true). */
  archive?: boolean;
  windowFrames?: number;
  sinkFrames?: number;
  busyVariants?: number;
  /**
   * What the busy scene's frames look like: gray noise (default; the worst case for the archive), a
   * moving scene that compresses like footage, or `photo`: `busyPhotos`, frames of real photographs
   * (src/eval/photoFootage.ts), used in turn.
   */
  busyFrames?: 'noise' | 'scene' | 'photo';
  busyPhotos?: readonly RawRgb[];
  camera?: CameraGatePattern;
  /** Chunks per group commit (default 64). */
  groupChunks?: number;
  /** Write chunks the budget would delete anyway (default false: skipped, see the file comment). */
  writeAll?: boolean;
  /**
   * The real run the fast-forward stands for (short streams only: ~1 s of model time a frame): every
   * sampled frame drawn, checked by the stream's real frame gate (default gate) and encoded or gated.
   */
  realHaystack?: boolean;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface LongStreamBuild {
  session: StreamSession;
  plan: PlannedChunk[];
  /** chunkId of each needle's first chunk (undefined when it was not written). */
  needleChunkIds: Array<number | undefined>;
  /** Chunks written by each path. */
  written: { kv: number; archived: number; skipped: number; realEncoded: number };
  /** Stream time of the first chunk written through each path. */
  firstKvT: number | null;
  archiveAvailable: boolean;
  buildS: number;
  /** Seconds of model time: the scene templates and the needles. */
  encodeS: number;
  recordBytes: { float32: number; kivi4: number };
  /** Mean bytes of the scene templates' stills (WebP q75 at the tile side). */
  stillBytes: number;
  tokensPerChunk: number;
  /** The exact (float32, as encoded) KV of a haystack chunk by its id: the template it reused; undefined for needles. */
  exactChunk: (chunkId: number) => FrameChunk | undefined;
}

interface Template {
  chunk: FrameChunk;
  still: Uint8Array | undefined;
}

/** The frame at the model's tile side (what ingest hands the encoder; the still is made from it). */
async function tileRgb(rgb: RawRgb, tile: number): Promise<RgbImage> {
  const { data, info } = await sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } }).resize(tile, tile, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

/** The frame's still as the engine keeps it (src/engine/stills.ts: WebP q75 of the tile-size frame). */
async function stillOf(rgb: RawRgb, tile: number): Promise<Uint8Array> {
  return encodeStill(await tileRgb(rgb, tile));
}

async function preprocess(model: VisionLanguageModel, rgb: RawRgb): Promise<PreprocessedImage> {
  return preprocessVideoFrame(rgb, model.imageConfig, model.imageConfig.tileSize ?? 64);
}

/** Estimated KV span (chunks) the budget's KV share holds: keepFullSec at the stream dtype, then kivi4. */
export function kvSpanChunks(budgetBytes: number, keepFullChunks: number, f32: number, kivi4: number, kvShare: number, archive: boolean): number {
  const kvBytes = archive ? kvShare * budgetBytes : budgetBytes;
  const full = Math.min(keepFullChunks, Math.floor(kvBytes / f32));
  return full + Math.max(0, Math.floor((kvBytes - full * f32) / kivi4));
}

/** Builds the stream; the caller asks its questions and disposes `session`. */
export async function buildLongStream(model: VisionLanguageModel, options: LongStreamOptions): Promise<LongStreamBuild> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  const windowFrames = options.windowFrames ?? 16;
  const sinkFrames = options.sinkFrames ?? 1;
  const tile = model.imageConfig.tileSize ?? 64;
  let encodeMs = 0;

  // 1. The scene's frames, encoded for real once, in a scratch session.
  const scratchDir = `${options.dir}-templates`;
  fs.rmSync(scratchDir, { recursive: true, force: true });
  const scratch = await StreamSession.open(model, { dir: scratchDir, sinkFrames, windowFrames, gate: 'off', fsync: 'none' });
  const templates: Template[] = [];
  const events: Template[] = [];
  const needleArchive: Array<Template | undefined> = [];
  const base = noiseFrame(7);
  let t0 = 0;
  const encodeTemplate = async (rgb: RawRgb): Promise<Template> => {
    const s = performance.now();
    const chunk = await scratch.addFrame(await preprocess(model, rgb), t0++);
    encodeMs += performance.now() - s;
    return { chunk, still: await stillOf(rgb, tile) };
  };
  try {
    if (options.scene === 'busy') {
      for (let v = 0; v < (options.busyVariants ?? 8); v++) templates.push(await encodeTemplate(busyFrame(options, v, 1000 + v, 1000 + 37 * v)));
    } else {
      templates.push(await encodeTemplate(cameraFrame(base, 1, false)));
      events.push(await encodeTemplate(cameraFrame(base, 2, true)));
    }
  } finally {
    await scratch.dispose();
    fs.rmSync(scratchDir, { recursive: true, force: true });
  }
  const sample = templates[0]!.chunk;
  const geometry = { numLayers: sample.numLayers, numKvHeads: sample.numKvHeads, headDim: sample.headDim };
  const recordBytes = { float32: chunkRecordBytes(geometry, 'float32', sample.tokenCount), kivi4: chunkRecordBytes(geometry, 'kivi4', sample.tokenCount) };

  // 2. The plan and where its KV part starts.
  const plan = planLongStream(options.scene, options.durationS, options.needles, { busyVariants: templates.length, ...(options.camera ? { camera: options.camera } : {}) });
  fs.rmSync(options.dir, { recursive: true, force: true });
  const archive = options.archive ?? true;
  const kvShare = options.kvShare ?? 0.4;
  // As a budgeted stream of the service: segments sized from the budget, the index folders counted.
  const budgetPlan = options.budgetBytes !== null ? streamBudgetPlan(model, options.budgetBytes, 'float32', windowFrames) : null;
  const session = await StreamSession.open(model, {
    dir: options.dir,
    sinkFrames,
    windowFrames,
    gate: 'off',
    // Durability is not what is measured: rows commit right after each write, the OS flushes.
    fsync: 'none',
    ...(budgetPlan ? { segmentBytes: budgetPlan.segmentBytes, retention: { ...budgetRetention(budgetPlan, options.dir), keepFullSec: options.keepFullSec, kvShare, archive } } : {}),
  });
  const archiveAvailable = archive && budgetPlan !== null;
  const wallBase = Date.now() - options.durationS * 1000;
  const endT = options.durationS;
  const keepFullChunks = plan.filter((c) => c.tEnd >= endT - options.keepFullSec).length;
  let kvFrom = 0;
  if (options.budgetBytes !== null && !options.writeAll) {
    // 1.5x the estimate (and at least the window): the store's own demotion and retention decide the boundary.
    const span = kvSpanChunks(options.budgetBytes, keepFullChunks, recordBytes.float32, recordBytes.kivi4, kvShare, archiveAvailable);
    kvFrom = Math.max(0, plan.length - Math.max(Math.ceil(span * 1.5), windowFrames + sinkFrames + 4));
  }
  // Without an archive, what precedes the KV part would be deleted: not written. With one, so would
  // what precedes the archive's capacity (its share of the budget over a chunk's still, its int8
  // representatives in the manifest and the index, and ~1 KiB of row and record overhead), 1.5x.
  let skipBefore = kvFrom;
  if (archiveAvailable && options.budgetBytes !== null && !options.writeAll) {
    const stills = [...templates, ...events].map((t) => t.still?.length ?? 0);
    const perArchived = stills.reduce((a, b) => a + b, 0) / Math.max(1, stills.length) + 2 * geometry.numLayers * geometry.numKvHeads * geometry.headDim + 1024;
    skipBefore = Math.max(0, kvFrom - Math.ceil((1.5 * (1 - kvShare) * options.budgetBytes) / perArchived));
  } else if (archiveAvailable) {
    skipBefore = 0;
  }
  const hayOf = new Map<number, Template>();
  const spanOf = new Map<number, { tStart: number; tEnd: number }>();
  const build: LongStreamBuild = {
    session,
    plan,
    needleChunkIds: options.needles.map(() => undefined),
    written: { kv: 0, archived: 0, skipped: skipBefore, realEncoded: 0 },
    firstKvT: plan[kvFrom]?.tStart ?? null,
    archiveAvailable,
    buildS: 0,
    encodeS: 0,
    recordBytes,
    tokensPerChunk: sample.tokenCount,
    stillBytes: Math.round([...templates, ...events].reduce((n, t) => n + (t.still?.length ?? 0), 0) / (templates.length + events.length)),
    exactChunk: (id) => {
      const tpl = hayOf.get(id);
      return tpl ? { ...tpl.chunk, chunkId: id, ...(spanOf.get(id) ?? { tStart: tpl.chunk.tStart, tEnd: tpl.chunk.tEnd }) } : undefined;
    },
  };

  // Needles falling in the archive part: encoded for real (representatives, still) in a scratch session.
  if (archiveAvailable) {
    const archived = new Set(plan.slice(0, kvFrom).filter((c) => c.kind === 'needle').map((c) => c.index));
    if (archived.size > 0) {
      fs.rmSync(scratchDir, { recursive: true, force: true });
      const s2 = await StreamSession.open(model, { dir: scratchDir, sinkFrames, windowFrames, gate: 'off', fsync: 'none' });
      try {
        for (let i = 0; i < options.needles.length; i++) {
          if (!archived.has(i)) continue;
          const n = options.needles[i]!;
          const rgb = needleRgb(n.background, n.square);
          const s = performance.now();
          const chunk = await s2.addFrame(await preprocess(model, rgb), t0++);
          encodeMs += performance.now() - s;
          needleArchive[i] = { chunk, still: await stillOf(rgb, tile) };
        }
      } finally {
        await s2.dispose();
        fs.rmSync(scratchDir, { recursive: true, force: true });
      }
    }
  }

  if (options.realHaystack) {
    await session.dispose();
    fs.rmSync(options.dir, { recursive: true, force: true });
    const real = await StreamSession.open(model, {
      dir: options.dir,
      sinkFrames,
      windowFrames,
      // Busy = every frame encoded (what the fast-forward writes); per-pixel noise frames would
      // pass the gate as unchanged (its 64x64 block means move by ~4 levels, under its 12).
      ...(options.scene === 'busy' ? { gate: 'off' as const } : {}),
      fsync: 'none',
      ...(budgetPlan ? { segmentBytes: budgetPlan.segmentBytes, retention: { ...budgetRetention(budgetPlan, options.dir), keepFullSec: options.keepFullSec, kvShare, archive } } : {}),
    });
    build.session = real;
    build.written = { kv: 0, archived: 0, skipped: 0, realEncoded: 0 };
    build.firstKvT = 0;
    const needleOf = new Map<number, number>();
    options.needles.forEach((n, i) => {
      for (let k = 0; k < n.seconds; k++) needleOf.set(n.t + k, i);
    });
    const spec = options.camera?.spec;
    try {
      for (let t = 0; t < options.durationS; t++) {
        const ni = needleOf.get(t);
        const n = ni === undefined ? undefined : options.needles[ni]!;
        const event = spec !== undefined && t >= spec.firstEventAt && (t - spec.firstEventAt) % spec.eventEverySec < spec.eventSec;
        const busy = () => busyFrame(options, t, 100_000 + t, t);
        const rgb = n ? needleRgb(n.background, n.square) : options.scene === 'busy' ? busy() : cameraFrame(base, 7 * 1_000_003 + t, event);
        if (real.checkGate(rgb, t).encode) {
          const s = performance.now();
          const numbered = await real.addFrame(await preprocess(model, rgb), t, wallBase + t * 1000, await tileRgb(rgb, tile));
          encodeMs += performance.now() - s;
          build.written.realEncoded++;
          build.written.kv++;
          if (ni !== undefined) build.needleChunkIds[ni] ??= numbered.chunkId;
        } else {
          await real.skipFrame(t);
        }
        if ((t + 1) % 4 === 0) {
          await real.flush();
          await real.store.demotionIdle();
          progress(t + 1, options.durationS, `${options.scene} real ${t + 1} s`);
        }
      }
      await real.flush();
      await real.store.demotionIdle();
    } catch (error) {
      await real.dispose();
      throw error;
    }
    build.buildS = (performance.now() - started) / 1000;
    build.encodeS = encodeMs / 1000;
    return build;
  }

  // 3. The stream, in time order.
  const group = options.groupChunks ?? 64;
  const kvGroup = 4;
  const needleImages = new Map<number, { pre: PreprocessedImage; rgb: RgbImage }>();
  const asChunk = (tpl: Template, c: PlannedChunk, withKv: boolean): UnnumberedChunk => {
    const x = tpl.chunk;
    return {
      tStart: c.tStart,
      tEnd: c.tEnd,
      wallTime: wallBase + c.tStart * 1000,
      tokenCount: x.tokenCount,
      numLayers: x.numLayers,
      numKvHeads: x.numKvHeads,
      headDim: x.headDim,
      keys: withKv ? x.keys : [],
      values: withKv ? x.values : [],
      representatives: x.representatives,
      ...(tpl.still ? { still: tpl.still } : {}),
    } as UnnumberedChunk;
  };
  // Archived imports go in runs, their stills coded together as demotion codes them (still groups).
  const archiveRun: Array<{ chunk: UnnumberedChunk; done: (numbered: FrameChunk) => void }> = [];
  const flushArchive = async (): Promise<void> => {
    if (archiveRun.length === 0) return;
    const run = archiveRun.splice(0);
    const numbered = await session.addArchivedChunks(run.map((r) => r.chunk));
    numbered.forEach((x, k) => run[k]!.done(x));
  };
  const importArchived = async (chunk: UnnumberedChunk, done: (numbered: FrameChunk) => void): Promise<void> => {
    archiveRun.push({ chunk, done });
    build.written.archived++;
    if (archiveRun.length >= STILL_GROUP_FRAMES) await flushArchive();
  };
  try {
    for (let i = skipBefore; i < plan.length; i++) {
      const c = plan[i]!;
      const toArchive = archiveAvailable && i < kvFrom;
      if (!toArchive) await flushArchive();
      if (c.kind === 'needle') {
        if (toArchive) {
          await importArchived(asChunk(needleArchive[c.index]!, c, false), (x) => (build.needleChunkIds[c.index] ??= x.chunkId));
        } else {
          let image = needleImages.get(c.index);
          if (!image) {
            const n = options.needles[c.index]!;
            const rgb = needleRgb(n.background, n.square);
            image = { pre: await preprocess(model, rgb), rgb: await tileRgb(rgb, tile) };
            needleImages.set(c.index, image);
          }
          const s = performance.now();
          const numbered = await session.addFrame(image.pre, c.tStart, wallBase + c.tStart * 1000, image.rgb);
          if (c.tEnd > c.tStart) await session.skipFrame(c.tEnd);
          encodeMs += performance.now() - s;
          build.written.realEncoded++;
          build.written.kv++;
          build.needleChunkIds[c.index] ??= numbered.chunkId;
        }
      } else {
        const tpl = c.kind === 'event' ? events[0]! : templates[c.index % templates.length]!;
        if (toArchive) {
          await importArchived(asChunk(tpl, c, false), (x) => {
            hayOf.set(x.chunkId, tpl);
            spanOf.set(x.chunkId, { tStart: c.tStart, tEnd: c.tEnd });
          });
        } else {
          const x = await session.addEncodedChunk(asChunk(tpl, c, true));
          hayOf.set(x.chunkId, tpl);
          spanOf.set(x.chunkId, { tStart: c.tStart, tEnd: c.tEnd });
          build.written.kv++;
        }
      }
      // The KV part goes at a stream's pace: a few chunks, then their commit and any demotion they
      // started (a live stream gives demotion 25-50x its own rate); the archive part in big groups.
      if ((toArchive ? (i + 1) % group === 0 : (i + 1) % kvGroup === 0) || i + 1 === plan.length) {
        await flushArchive();
        await session.flush();
        // A stream's pace: background demotion keeps up with 1 frame/s by 25-50x, index sealing by
        // 170-350x; a fast-forward must not outrun either (appended back to back, archived imports
        // sealed no index block at all: 0 blocks after 20k chunks, the recent tier growing past RAM).
        if (!toArchive) await session.store.demotionIdle();
        await session.index.idle();
        progress(i + 1 - skipBefore, plan.length - skipBefore, `${options.scene} ${(c.tStart / 86400).toFixed(2)} d`);
      }
    }
    await flushArchive();
    await session.flush();
    await session.store.demotionIdle();
    await session.index.idle();
  } catch (error) {
    await session.dispose();
    throw error;
  }
  build.buildS = (performance.now() - started) / 1000;
  build.encodeS = encodeMs / 1000;
  return build;
}

/** The tier holding a chunk now: the store's tier span containing it, 'window' if not committed yet, 'forgotten' if deleted. */
export function tierOf(spans: readonly TierSpan[], chunkId: number | undefined, lastStoredId: number | null): string {
  if (chunkId === undefined) return 'forgotten';
  const span = spans.find((s) => chunkId >= s.firstChunkId && chunkId <= s.lastChunkId);
  if (span) return span.dtype;
  if (lastStoredId === null || chunkId > lastStoredId) return 'window';
  return 'forgotten';
}

export interface NeedleAnswer {
  answer: string;
  correct: boolean;
  /** Expected token's logit minus the best other token's over the rekv answer's own context (null if it could not be rebuilt). */
  margin: number | null;
  ttftMs: number;
  retrievalMs: number;
  loadMs: number;
  prefillMs: number;
  /** The answer's finer split (pass 1, index search, chunk reads, assembly). */
  phases: { pass1Ms: number; searchMs: number; chunkLoadMs: number; assembleMs: number };
  evidenceTimes: number[];
  /** The archive tier's report when the engine gives one. */
  archive: { retrieved: number; reencoded: number; skipped: number; reencodeMs: number } | null;
}

/**
 * Asks a needle question the way StreamSession.ask answers rekv (pending commits settled, then
 * answerQuestion over an ArchiveRecall: archived chunks retrieval picks are re-encoded, at most
 * `maxReencode`), then reads the answer-logit margin over the very same per-layer context (the
 * answer's layerChunkIds loaded again through the same recall, re-encoded chunks served from it,
 * and pass 2 prefilled once more). ask() itself exposes no logits; its code path is this one.
 */
export async function askNeedle(session: StreamSession, background: string, expected: string, retrieve: number, maxReencode = DEFAULT_MAX_REENCODE): Promise<NeedleAnswer> {
  const question = needleQuestion(background);
  await session.flush();
  const memory = session.memory;
  const plain: QuestionMemory = {
    window: memory.window,
    select: (queries, r, exclude) => memory.select(queries, r, exclude),
    fixed: (ids) => memory.fixed(ids),
    load: (selection, includeWindow) => memory.load(selection, includeWindow),
  };
  const recall = new ArchiveRecall(
    {
      store: memory.store,
      encoder: session.encoder,
      memory: plain,
      selectIn: (queries, r, exclude, range) => memory.select(queries, r, exclude, range),
      loadWith: (selection, includeWindow, recalled) => memory.load(selection, includeWindow, recalled),
      range: undefined,
      frameSide: modelFrameSide(session),
    },
    { maxReencode },
  );
  const a = await answerQuestion(session.encoder, recall, { question, retrieve, maxNewTokens: 2 });
  const graded = gradeAnswer(a.text, expected);
  let margin: number | null = null;
  const model = session.model;
  const ids = model.tokenizer.encode(` ${expected}`);
  if (ids.length === 1) {
    const want = ids[0]!;
    const numLayers = model.decoder.info.numLayers;
    const selection = { ...fixedSelection([], numLayers), chunkIds: a.layerChunkIds, scores: a.layerChunkIds.map((l) => l.map(() => 0)) };
    const loaded = await recall.load(selection, false);
    try {
      const promptIds = model.tokenizer.encode(session.encoder.format.question(question));
      // Only the logits: no `present` fetched (onnxruntime-node would copy the whole context out).
      const { logits } = await model.decoder.stepRows({ inputsEmbeds: await model.embed(promptIds), past: toKvCache(loaded.context, model.decoder.info), logits: 'last', kv: 'none' });
      let other = -Infinity;
      for (let v = 0; v < logits.length; v++) if (v !== want && logits[v]! > other) other = logits[v]!;
      margin = logits[want]! - other;
    } finally {
      loaded.dispose();
    }
  }
  return {
    answer: graded.answer,
    correct: graded.correct,
    margin,
    ttftMs: a.ttftMs,
    retrievalMs: a.retrievalMs,
    loadMs: a.loadMs,
    prefillMs: a.prefillMs,
    phases: a.phases,
    evidenceTimes: a.evidence.map((e) => e.tStart),
    archive: { ...recall.report },
  };
}

export function longStreamDirs(root: string, name: string): string {
  return path.join(root, name);
}

/** The busy scene's frame number `index` (noise and scene frames drawn from their seeds). */
function busyFrame(options: Pick<LongStreamOptions, 'busyFrames' | 'busyPhotos'>, index: number, noiseSeed: number, sceneSeed: number): RawRgb {
  if (options.busyFrames === 'photo') {
    const photos = options.busyPhotos;
    if (!photos || photos.length === 0) throw new Error("busyFrames 'photo' needs busyPhotos");
    return photos[index % photos.length]!;
  }
  return options.busyFrames === 'scene' ? movingSceneFrame(sceneSeed) : noiseFrame(noiseSeed);
}
