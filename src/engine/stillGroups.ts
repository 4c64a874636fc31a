// Archive stills coded against each other (issue 15): when a segment goes to the archive tier, runs
// of up to STILL_GROUP_FRAMES consecutive stills become one H.264 stream, so a camera's static
// background is stored once per group instead of once per frame. Busy photo-like footage: 4.6-5 KiB
// a frame against WebP q75's 52-54 KiB at the same PSNR (docs/PERFORMANCE.md, "Archive still groups").
// The stream is kept in the group's newest chunk (the holder: retention deletes oldest
// first, so the holder outlives its members); every other member's still names the holder's chunk
// and its frame index. The memory store treats these bytes as opaque stills.
import { ARCHIVE_STILL_RUN } from '../../memory/store/demotion.js';
import type { ChunkFailure } from '../../memory/store/types.js';
import { runFfmpegPipe } from '../../ingest/ffmpegPipe.js';
import type { RgbImage } from './frameGate.js';
import { decodeStill } from './stills.js';

/**
 * x264 constant rate factor of still groups (lower: larger and closer to the frame), with preset
 * medium: from q90 stills about the PSNR of the per-frame WebP q75 archive they replaced, at a
 * fraction of its bytes on busy photo-like footage (bench/archive-stills.ts). Medium, not veryfast:
 * a third fewer bytes at equal PSNR for ~13 ms of one core a 512-px frame, in background demotion.
 */
export const STILL_GROUP_CRF = 35;
export const STILL_GROUP_PRESET = 'medium';
/** Most frames in one group (one keyframe each; the store's runs): a recall decodes up to this many frames to reach one. */
export const STILL_GROUP_FRAMES = ARCHIVE_STILL_RUN;

const HOLDER_MAGIC = 0x31475356; // 'VSG1'
const MEMBER_MAGIC = 0x31525356; // 'VSR1'
const HOLDER_HEADER_BYTES = 16; // magic, frames, width, height
const MEMBER_BYTES = 16; // magic, holder chunk id (f64), frame index
const CODEC_TIMEOUT_MS = 60_000;

export interface StillItem {
  chunkId: number;
  still: Uint8Array;
}

/** What a stored still is: an image of its own (WebP), a group's holder, or a member naming its holder. */
export type StillKind =
  | { kind: 'image' }
  | { kind: 'holder'; frames: number; width: number; height: number; video: Uint8Array }
  | { kind: 'member'; holder: number; index: number };

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function stillKind(still: Uint8Array): StillKind {
  if (still.length < 4) return { kind: 'image' };
  const v = view(still);
  const magic = v.getUint32(0, true);
  if (magic === HOLDER_MAGIC && still.length > HOLDER_HEADER_BYTES) {
    return { kind: 'holder', frames: v.getUint32(4, true), width: v.getUint32(8, true), height: v.getUint32(12, true), video: still.subarray(HOLDER_HEADER_BYTES) };
  }
  if (magic === MEMBER_MAGIC && still.length === MEMBER_BYTES) return { kind: 'member', holder: v.getFloat64(4, true), index: v.getUint32(12, true) };
  return { kind: 'image' };
}

function holderStill(frames: number, width: number, height: number, video: Uint8Array): Uint8Array {
  const out = new Uint8Array(HOLDER_HEADER_BYTES + video.length);
  const v = view(out);
  v.setUint32(0, HOLDER_MAGIC, true);
  v.setUint32(4, frames, true);
  v.setUint32(8, width, true);
  v.setUint32(12, height, true);
  out.set(video, HOLDER_HEADER_BYTES);
  return out;
}

function memberStill(holder: number, index: number): Uint8Array {
  const out = new Uint8Array(MEMBER_BYTES);
  const v = view(out);
  v.setUint32(0, MEMBER_MAGIC, true);
  v.setFloat64(4, holder, true);
  v.setUint32(12, index, true);
  return out;
}

/**
 * The stills of consecutive chunks (time order) recoded as groups: one still per item, same order.
 * Runs of equal-sized images of up to STILL_GROUP_FRAMES become one H.264 stream held by the run's
 * last chunk; a run of one, an odd-sized frame (4:2:0 needs even sides) or a still that is already
 * part of a group is returned as it is.
 */
export async function packStillGroups(items: readonly StillItem[], options: { crf?: number } = {}): Promise<Uint8Array[]> {
  const out = items.map((i) => i.still);
  let run: Array<{ at: number; rgb: RgbImage }> = [];
  const flush = async () => {
    if (run.length > 1) {
      const coded = await encodeGroup(run.map((r) => r.rgb), options.crf ?? STILL_GROUP_CRF);
      const holderAt = run.at(-1)!.at;
      run.forEach((r, index) => {
        out[r.at] = r.at === holderAt ? coded : memberStill(items[holderAt]!.chunkId, index);
      });
    }
    run = [];
  };
  for (let at = 0; at < items.length; at++) {
    if (stillKind(items[at]!.still).kind !== 'image') {
      await flush();
      continue;
    }
    const rgb = await decodeStill(items[at]!.still);
    const first = run[0]?.rgb;
    if (first !== undefined && (first.width !== rgb.width || first.height !== rgb.height || run.length >= STILL_GROUP_FRAMES)) await flush();
    if (rgb.width % 2 === 0 && rgb.height % 2 === 0) run.push({ at, rgb });
    else await flush();
  }
  await flush();
  return out;
}

async function encodeGroup(frames: readonly RgbImage[], crf: number): Promise<Uint8Array> {
  const { width, height } = frames[0]!;
  const raw = new Uint8Array(frames.length * width * height * 3);
  frames.forEach((f, i) => raw.set(f.data, i * width * height * 3));
  const video = await runFfmpegPipe(raw, {
    input: ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-framerate', '1'],
    // One keyframe per group; one thread, so demotion never takes both cores from the encoder.
    output: ['-c:v', 'libx264', '-preset', STILL_GROUP_PRESET, '-crf', String(crf), '-g', String(frames.length), '-threads', '1', '-pix_fmt', 'yuv420p', '-f', 'h264'],
    label: 'archive still group encode',
    timeoutMs: CODEC_TIMEOUT_MS,
    maxOutputBytes: raw.length,
  });
  return holderStill(frames.length, width, height, video);
}

/** The first `count` frames of a holder's stream, decoded. */
async function decodeGroup(holder: Extract<StillKind, { kind: 'holder' }>, count: number): Promise<RgbImage[]> {
  const frameBytes = holder.width * holder.height * 3;
  const raw = await runFfmpegPipe(holder.video, {
    // A raw H.264 stream has no timestamps: without a stated rate, ffmpeg 4.x guesses one and its
    // constant-rate output drops or repeats frames, so frame k would not be the k-th still.
    input: ['-f', 'h264', '-framerate', '1'],
    output: ['-frames:v', String(count), '-f', 'rawvideo', '-pix_fmt', 'rgb24'],
    label: 'archive still group decode',
    timeoutMs: CODEC_TIMEOUT_MS,
    maxOutputBytes: count * frameBytes,
  });
  if (raw.length !== count * frameBytes) throw new Error(`the group decoded to ${Math.floor(raw.length / frameBytes)} of ${count} frames`);
  return Array.from({ length: count }, (_, i) => ({ data: new Uint8Array(raw.buffer, raw.byteOffset + i * frameBytes, frameBytes), width: holder.width, height: holder.height }));
}

export type ReadStills = (ids: readonly number[]) => Promise<{ stills: Map<number, Uint8Array>; failed: ChunkFailure[] }>;

/**
 * The archived chunks' frames, as the encoder saw them: images decoded, groups decoded once each (up
 * to the furthest frame asked for), holders read from the store when only members were asked for.
 * A member whose holder is gone or whose group does not decode is a failure, never a wrong frame.
 */
export async function readArchivedFrames(readStills: ReadStills, ids: readonly number[]): Promise<{ frames: Map<number, RgbImage>; failed: ChunkFailure[] }> {
  const { stills, failed } = await readStills(ids);
  const frames = new Map<number, RgbImage>();
  const wanted = new Map<number, Map<number, number>>(); // holder -> chunk -> frame index
  const want = (holder: number, chunkId: number, index: number) => {
    const m = wanted.get(holder) ?? new Map<number, number>();
    m.set(chunkId, index);
    wanted.set(holder, m);
  };
  for (const [id, still] of stills) {
    const kind = stillKind(still);
    if (kind.kind === 'image') frames.set(id, await decodeStill(still));
    else if (kind.kind === 'holder') want(id, id, kind.frames - 1);
    else want(kind.holder, id, kind.index);
  }
  const missing = [...wanted.keys()].filter((h) => !stills.has(h));
  const holders = missing.length > 0 ? (await readStills(missing)).stills : new Map<number, Uint8Array>();
  for (const [holderId, members] of wanted) {
    const bytes = stills.get(holderId) ?? holders.get(holderId);
    const holder = bytes === undefined ? null : stillKind(bytes);
    const lost = (message: string) => {
      for (const id of members.keys()) failed.push({ chunkId: id, reason: 'not-found', message: `chunk ${id}'s still: ${message}` });
    };
    if (holder === null || holder.kind !== 'holder') {
      lost(`its group's holder (chunk ${holderId}) is gone or damaged`);
      continue;
    }
    let count = 0;
    for (const index of members.values()) count = Math.max(count, index + 1);
    if (count > holder.frames) {
      lost(`frame ${count - 1} is past the group's ${holder.frames} frames`);
      continue;
    }
    try {
      const decoded = await decodeGroup(holder, count);
      for (const [id, index] of members) frames.set(id, decoded[index]!);
    } catch (error) {
      lost(`the group held by chunk ${holderId} does not decode (${(error as Error).message})`);
    }
  }
  return { frames, failed };
}
