// Archive stills: bytes per frame and fidelity of per-frame WebP (what ingest writes) against H.264
// still groups (what demotion to the archive writes: src/engine/stillGroups.ts), on footage built
// from real photographs, and the busy-scene horizon in a budget that follows from them (issue 15).
//
//   node --import tsx bench/archive-stills.ts [--photos A.jpg,B.jpg] [--frames 128] [--crf 33,35,37] [--model probe-random-smolvlm2-256m|none]
//
// Footage (512x512, 1 frame/s, made with ffmpeg): the first photo is the background; the second,
// scaled to two sizes, moves across it 50-140 px a frame (every frame distinct: the busy scene);
// `busy` adds temporal sensor noise (ffmpeg noise, strength 4), `busy-clean` has none. Without
// --photos the two JPEGs of the Rust embedded book on this machine are used when present.
// Every still goes the real path: raw frame -> WebP (encodeStill, ingest's quality) -> group (packStillGroups)
// -> decoded (readArchivedFrames); PSNR is against the raw frame.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chunkMetaBytes } from '../memory/store/budget.js';
import { DEFAULT_KEEP_FULL_SEC } from '../memory/store/options.js';
import { payloadLayout, recordLength, STILL_LENGTH_BYTES } from '../memory/store/recordFormat.js';
import type { RgbImage } from '../src/engine/frameGate.js';
import { packStillGroups, readArchivedFrames, STILL_GROUP_CRF, STILL_GROUP_FRAMES, STILL_GROUP_PRESET } from '../src/engine/stillGroups.js';
import { decodeStill, encodeStill, STILL_QUALITY } from '../src/engine/stills.js';
import { locateFfmpeg } from '../ingest/ffmpegBinary.js';
import { DEFAULT_PHOTOS, photoFootage } from '../src/eval/photoFootage.js';
import { resolveModelDir } from '../src/cli/resolveModel.js';
import { VisionLanguageModel } from '../src/model/visionLanguageModel.js';

const SIDE = 512;
/** smolvlm2-256m geometry, 64 image tokens and the frame prompt's 13 text tokens a frame. */
const GEOMETRY = { numLayers: 30, numKvHeads: 3, headDim: 64 };
const TOKENS = 77;
const BUDGET = 20e9;
const KV_SHARE = 0.4;

const { values } = parseArgs({
  options: {
    photos: { type: 'string' },
    frames: { type: 'string', default: '128' },
    crf: { type: 'string', default: [...new Set([33, 35, 37, STILL_GROUP_CRF])].join(',') },
    // The archive-tier allowance: a recall's group decode against one frame's vision encode ('none': skip).
    model: { type: 'string', default: 'probe-random-smolvlm2-256m' },
  },
});
const photos = values.photos?.split(',') ?? DEFAULT_PHOTOS;
if (photos === undefined || photos.length !== 2) {
  console.error('archive-stills: give --photos BACKGROUND.jpg,OBJECT.jpg (two photographs; none found on this machine)');
  process.exit(2);
}
const frameCount = Number(values.frames);
const crfs = values.crf.split(',').map(Number);

/** The scene's raw frames (src/eval/photoFootage.ts). */
function footage(noise: boolean): RgbImage[] {
  return photoFootage({ frames: frameCount, width: SIDE, height: SIDE, noise, photos: [photos![0]!, photos![1]!] });
}

function psnr(a: RgbImage, b: RgbImage): number {
  let se = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i]! - b.data[i]!;
    se += d * d;
  }
  return 10 * Math.log10((255 * 255) / (se / a.data.length));
}

const mean = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;

/**
 * Days of a busy stream (every frame stored) in the budget, as the default tiers hold it: the newest
 * keepFullSec in float32, then kivi4 up to kvShare of the budget (the still riding along in both),
 * the archive after.
 */
function horizonDays(stillBytes: number, archiveStillBytes: number, kvShare = KV_SHARE): number {
  const meta = chunkMetaBytes(GEOMETRY);
  const kvFrame = (dtype: 'float32' | 'kivi4') => recordLength(payloadLayout(dtype, GEOMETRY, TOKENS).totalBytes + STILL_LENGTH_BYTES + stillBytes) + meta;
  const archiveFrame = recordLength(STILL_LENGTH_BYTES + archiveStillBytes) + meta;
  const fullBytes = Math.min(kvShare * BUDGET, DEFAULT_KEEP_FULL_SEC * kvFrame('float32'));
  const fullFrames = fullBytes / kvFrame('float32');
  const kiviFrames = (kvShare * BUDGET - fullBytes) / kvFrame('kivi4');
  return (fullFrames + kiviFrames + ((1 - kvShare) * BUDGET) / archiveFrame) / 86_400;
}

interface Row {
  scene: string;
  codec: string;
  bytesPerFrame: number;
  psnr: number;
  encodeMsPerFrame: number;
  recallMs: number;
  days: number;
  /** With tiers.kvShare 0.1: a tenth of the budget for KV (about an hour of a busy stream), the rest archive. */
  daysSmallKv: number;
}

async function measure(scene: string, frames: RgbImage[]): Promise<Row[]> {
  const rows: Row[] = [];
  // Per-frame stills: q75 (the archive before groups) and the ingest quality (what groups start from).
  const perFrame = async (quality: number) => {
    let t = performance.now();
    const stills = [];
    for (const f of frames) stills.push(await encodeStill(f, quality));
    const encodeMs = (performance.now() - t) / frames.length;
    const decoded = [];
    t = performance.now();
    for (const s of stills) decoded.push(await decodeStill(s));
    const decodeMs = (performance.now() - t) / stills.length;
    const bytes = mean(stills.map((s) => s.length));
    return { stills, encodeMs, decodeMs, bytes, psnr: mean(decoded.map((d, i) => psnr(d, frames[i]!))) };
  };
  const ingest = await perFrame(STILL_QUALITY);
  for (const q of [...new Set([75, STILL_QUALITY])]) {
    const p = q === STILL_QUALITY ? ingest : await perFrame(q);
    rows.push({ scene, codec: `WebP q${q} per frame`, bytesPerFrame: p.bytes, psnr: p.psnr, encodeMsPerFrame: p.encodeMs, recallMs: p.decodeMs, days: horizonDays(p.bytes, p.bytes), daysSmallKv: horizonDays(p.bytes, p.bytes, 0.1) });
  }
  for (const crf of crfs) {
    const items = ingest.stills.map((still, chunkId) => ({ chunkId, still }));
    let t = performance.now();
    const packed = await packStillGroups(items, { crf });
    const packMs = (performance.now() - t) / frames.length;
    const stored = new Map(packed.map((s, i) => [i, s] as const));
    const read = async (ids: readonly number[]) => ({ stills: new Map(ids.flatMap((id) => (stored.has(id) ? [[id, stored.get(id)!] as const] : []))), failed: [] });
    const all = await readArchivedFrames(read, frames.map((_, i) => i));
    if (all.failed.length > 0) throw new Error(`crf ${crf}: ${all.failed.length} frames did not decode`);
    // A question's recall: one frame in the middle of a group (its holder read too, the group decoded up to it).
    const mid = Math.min(frames.length - 1, Math.floor(STILL_GROUP_FRAMES / 2));
    const recalls = [];
    for (let r = 0; r < 5; r++) {
      t = performance.now();
      await readArchivedFrames(read, [mid]);
      recalls.push(performance.now() - t);
    }
    const bytes = mean(packed.map((s) => s.length));
    rows.push({
      scene,
      codec: `H.264 groups of ${STILL_GROUP_FRAMES} from q${STILL_QUALITY}, ${STILL_GROUP_PRESET} CRF ${crf}`,
      bytesPerFrame: bytes,
      psnr: mean(frames.map((f, i) => psnr(all.frames.get(i)!, f))),
      encodeMsPerFrame: packMs,
      recallMs: recalls.sort((a, b) => a - b)[2]!,
      days: horizonDays(ingest.bytes, bytes),
      daysSmallKv: horizonDays(ingest.bytes, bytes, 0.1),
    });
  }
  return rows;
}

console.log(`archive stills: ${frameCount} frames of ${SIDE}x${SIDE} from ${photos.map((p) => path.basename(p)).join(' + ')}; ffmpeg ${locateFfmpeg().version.text}; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
const rows = [...(await measure('busy', footage(true))), ...(await measure('busy-clean', footage(false)))];
console.log('| scene | archive still | bytes/frame | PSNR dB | pack ms/frame | recall ms | busy horizon in 20 GB | with kvShare 0.1 |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.scene} | ${r.codec} | ${(r.bytesPerFrame / 1024).toFixed(1)} KiB | ${r.psnr.toFixed(2)} | ${r.encodeMsPerFrame.toFixed(1)} | ${r.recallMs.toFixed(0)} | ${r.days.toFixed(1)} d | ${r.daysSmallKv.toFixed(1)} d |`);
}
const base = rows.filter((r) => r.codec.startsWith('WebP q75'));
for (const r of rows.filter((x) => !x.codec.startsWith('WebP q75'))) {
  const b = base.find((x) => x.scene === r.scene)!;
  console.log(`${r.scene}, ${r.codec}: ${(b.bytesPerFrame / r.bytesPerFrame).toFixed(2)}x smaller than WebP q75, ${(r.psnr - b.psnr).toFixed(2)} dB PSNR, horizon ${(r.days / b.days).toFixed(2)}x`);
}
console.log(`(horizon: smolvlm2-256m geometry, ${TOKENS} tokens a frame, ${BUDGET / 1e9} GB: the newest ${DEFAULT_KEEP_FULL_SEC} s in float32, kivi4 up to kvShare (${KV_SHARE} by default) of the budget, the still riding along, the archive after; ${chunkMetaBytes(GEOMETRY)} B of representatives and rows a chunk; arithmetic from the measured still sizes)`);

/**
 * A question that retrieves an archived frame pays its group's decode on top of the frame's encode;
 * the issue allows re-encoding + 20%. Interleaved rounds in one process: the decode of a frame in the
 * middle of a group (default CRF) against one vision-encoder call at the model's geometry.
 */
async function recallAgainstEncode(modelName: string, frames: RgbImage[]): Promise<void> {
  const webp = [];
  for (const f of frames.slice(0, STILL_GROUP_FRAMES)) webp.push(await encodeStill(f));
  const packed = await packStillGroups(webp.map((still, chunkId) => ({ chunkId, still })));
  const stored = new Map(packed.map((s, i) => [i, s] as const));
  const read = async (ids: readonly number[]) => ({ stills: new Map(ids.map((id) => [id, stored.get(id)!] as const)), failed: [] });
  const model = await VisionLanguageModel.load(resolveModelDir(modelName));
  try {
    const side = model.imageConfig.tileSize ?? SIDE;
    const frame = { pixelValues: new Float32Array(3 * side * side).fill(0.1), count: 1, height: side, width: side, rows: 0, cols: 0 };
    await model.encodeImages(frame);
    const decode: number[] = [];
    const encode: number[] = [];
    for (let r = 0; r < 7; r++) {
      let t = performance.now();
      await readArchivedFrames(read, [Math.floor(STILL_GROUP_FRAMES / 2)]);
      decode.push(performance.now() - t);
      t = performance.now();
      await model.encodeImages(frame);
      encode.push(performance.now() - t);
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const d = med(decode);
    const e = med(encode);
    console.log(`recall of frame ${Math.floor(STILL_GROUP_FRAMES / 2)} of a group: ${d.toFixed(0)} ms; one ${side}x${side} vision encode (${modelName}): ${e.toFixed(0)} ms; decode = ${((100 * d) / e).toFixed(0)}% of a frame's encode (the allowance: 20%) [medians of 7 interleaved rounds, load ${os.loadavg()[0]!.toFixed(1)}]`);
  } finally {
    await model.dispose();
  }
}

if (values.model !== 'none') await recallAgainstEncode(values.model, footage(true));
