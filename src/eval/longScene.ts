/**
 * Scenes for the long-horizon runs (issue 15: bench/horizon.ts, `vigil eval vniah --days`): what a
 * stream of days at 1 frame/s looks like to the memory, as a list of chunk starts.
 *
 * - busy: every sampled frame differs (a crowd, traffic): every frame is encoded, one chunk a second.
 * - camera: a static textured scene (sensor noise of a few levels) with an event every
 *   `eventEverySec` seconds (a dark object enters and stays `eventSec` seconds). Which frames are
 *   encoded is decided by the REAL frame gate (src/engine/frameGate.ts, kernels/frameDiff.ts) on
 *   real RGB frames of the scene for `gateSeconds` of stream (default one hour); the scene is
 *   periodic, so the gate's decisions over one period after the first repeat for the rest of the
 *   stream (checked: the decisions of the last two periods the gate saw must be equal).
 *
 * Frames are drawn here as raw RGB (640x360, as a camera gives them to the gate and the
 * preprocessor), deterministic for their seed.
 */
import { mulberry32 } from '../../kernels/sampling.js';
import { DEFAULT_GATE, FrameGate, type GateSettings } from '../engine/frameGate.js';
import { NEEDLE_RGB, type NeedleColor } from '../model/probe/needleLayout.js';

export type LongScene = 'busy' | 'camera';
export const LONG_SCENES: readonly LongScene[] = ['busy', 'camera'];

export interface RawRgb {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

export const FRAME_W = 640;
export const FRAME_H = 360;

/** Noisy gray (the probe haystack: mean 128, ~uniform noise of sigma ~30): a different picture for every seed. */
export function noiseFrame(seed: number, width = FRAME_W, height = FRAME_H): RawRgb {
  const random = mulberry32(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, Math.round(128 + (random() * 2 - 1) * 52)));
  return { data, width, height, channels: 3 };
}

/**
 * A busy scene that compresses like footage, not like noise: a smooth gray gradient with three
 * gray objects moving across it and +-3 levels of sensor noise, a different picture every second
 * (the objects move every frame). No palette color anywhere (the needle model sees no screen).
 */
export function movingSceneFrame(t: number, width = FRAME_W, height = FRAME_H): RawRgb {
  const data = new Uint8Array(width * height * 3);
  const table = sensorNoise(data.length, 3);
  const offset = Math.floor(mulberry32(t + 17)() * 65_536);
  const objects = [0, 1, 2].map((k) => {
    const w = Math.round(width * (0.12 + 0.05 * k));
    const h = Math.round(height * (0.2 + 0.08 * k));
    const x = Math.round(((t * (7 + 5 * k) + k * 211) % (width + w)) - w);
    const y = Math.round(((t * (3 + 2 * k) + k * 97) % (height + h)) - h);
    return { x, y, w, h, level: [45, 200, 90][k]! };
  });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 90 + Math.round((70 * x) / width + (40 * y) / height);
      for (const o of objects) if (x >= o.x && x < o.x + o.w && y >= o.y && y < o.y + o.h) v = o.level;
      const i = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        const n = v + table[offset + i + c]!;
        data[i + c] = n < 0 ? 0 : n > 255 ? 255 : n;
      }
    }
  }
  return { data, width, height, channels: 3 };
}

/** A needle frame: solid `background` with a centered square of `square` (side = height / 3). */
export function needleRgb(background: NeedleColor, square: NeedleColor, width = FRAME_W, height = FRAME_H): RawRgb {
  const data = new Uint8Array(width * height * 3);
  const side = Math.round(height / 3);
  const x0 = Math.round((width - side) / 2);
  const y0 = Math.round((height - side) / 2);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
      const [r, g, b] = NEEDLE_RGB[inside ? square : background];
      const i = (y * width + x) * 3;
      data[i] = r;
      data[i + 1] = g;
      data[i + 2] = b;
    }
  }
  return { data, width, height, channels: 3 };
}

/** Sensor noise: one table of small offsets, read from a per-frame random start (cheap, still different every frame). */
let noiseTable: Int8Array | null = null;
function sensorNoise(length: number, noise: number): Int8Array {
  if (!noiseTable || noiseTable.length < length + 65_536 || noiseTable[0] === undefined) {
    const random = mulberry32(99);
    noiseTable = new Int8Array(length + 65_536);
    for (let i = 0; i < noiseTable.length; i++) noiseTable[i] = Math.round((random() * 2 - 1) * noise);
  }
  return noiseTable;
}

/** The camera's static scene at one instant: a fixed texture plus per-frame sensor noise (+-`noise` levels). */
export function cameraFrame(base: RawRgb, seed: number, event: boolean, noise = 3): RawRgb {
  const { width, height } = base;
  const data = new Uint8Array(base.data.length);
  const table = sensorNoise(data.length, noise);
  const offset = Math.floor(mulberry32(seed)() * 65_536);
  // The event: a dark gray object (no palette color) over the left third of the picture.
  const ex0 = Math.round(width * 0.15);
  const ex1 = Math.round(width * 0.45);
  const ey0 = Math.round(height * 0.25);
  const ey1 = Math.round(height * 0.9);
  for (let y = 0; y < height; y++) {
    const rowEvent = event && y >= ey0 && y < ey1;
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inEvent = rowEvent && x >= ex0 && x < ex1;
      for (let c = 0; c < 3; c++) {
        const v = (inEvent ? 40 : base.data[i + c]!) + table[offset + i + c]!;
        data[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return { data, width, height, channels: 3 };
}

export interface CameraSpec {
  /** An event starts every this many seconds (default 240: "every few minutes"). */
  eventEverySec: number;
  /** Seconds an event lasts (default 4). */
  eventSec: number;
  /** Seconds of the event-free offset before the first event (default 30). */
  firstEventAt: number;
  /** Stream seconds the real gate is run over (default 3600, at least 3 periods). */
  gateSeconds: number;
  gate: GateSettings;
}

export const DEFAULT_CAMERA: CameraSpec = { eventEverySec: 240, eventSec: 4, firstEventAt: 30, gateSeconds: 3600, gate: DEFAULT_GATE };

/** The gate's decisions on the camera scene: one period's encode offsets, and what the run saw. */
export interface CameraGatePattern {
  spec: CameraSpec;
  /** Offsets within a period (from an event's start) of the frames the gate encoded, after the first period. */
  periodOffsets: number[];
  /** Encode times in the gate run (stream s) with the gate's reason. */
  encoded: Array<{ t: number; reason: string }>;
  sampled: number;
  events: number;
  /** Events whose first frame the gate encoded. */
  eventsKept: number;
  /** The decisions of the last two whole periods were the same (the pattern repeats). */
  periodic: boolean;
  gateMsPerFrame: number;
}

/** Runs the real frame gate over `spec.gateSeconds` of the camera scene at 1 frame/s. */
export function cameraGatePattern(spec: CameraSpec = DEFAULT_CAMERA, seed = 7): CameraGatePattern {
  const P = spec.eventEverySec;
  if (spec.gateSeconds < spec.firstEventAt + 3 * P) throw new Error(`gateSeconds ${spec.gateSeconds} must cover the offset and 3 event periods (${spec.firstEventAt + 3 * P})`);
  const base = noiseFrame(seed);
  const gate = new FrameGate(spec.gate);
  const encoded: Array<{ t: number; reason: string }> = [];
  const isEvent = (t: number) => t >= spec.firstEventAt && (t - spec.firstEventAt) % P < spec.eventSec;
  let gateMs = 0;
  for (let t = 0; t < spec.gateSeconds; t++) {
    const frame = cameraFrame(base, seed * 1_000_003 + t, isEvent(t));
    const started = performance.now();
    const verdict = gate.check(frame, t);
    gateMs += performance.now() - started;
    if (verdict.encode) {
      gate.accept(t);
      encoded.push({ t, reason: verdict.reason });
    }
  }
  const eventStarts: number[] = [];
  for (let t = spec.firstEventAt; t < spec.gateSeconds; t += P) eventStarts.push(t);
  const encodedSet = new Set(encoded.map((e) => e.t));
  const eventsKept = eventStarts.filter((t) => encodedSet.has(t)).length;
  const periodOf = (k: number) => {
    const start = spec.firstEventAt + k * P;
    return encoded.filter((e) => e.t >= start && e.t < start + P).map((e) => e.t - start);
  };
  const whole = Math.floor((spec.gateSeconds - spec.firstEventAt) / P);
  const last = periodOf(whole - 1);
  const before = periodOf(whole - 2);
  return {
    spec,
    periodOffsets: periodOf(1),
    encoded,
    sampled: spec.gateSeconds,
    events: eventStarts.length,
    eventsKept,
    periodic: JSON.stringify(last) === JSON.stringify(before) && JSON.stringify(last) === JSON.stringify(periodOf(1)),
    gateMsPerFrame: gateMs / spec.gateSeconds,
  };
}

/** A needle scene inside a long stream: `seconds` frames from `t` on. */
export interface LongNeedle {
  t: number;
  seconds: number;
  background: NeedleColor;
  square: NeedleColor;
}

/** One chunk of the planned stream. */
export interface PlannedChunk {
  tStart: number;
  tEnd: number;
  /** 'hay': the scene (busy variant / camera static or event); 'needle': needle index. */
  kind: 'hay' | 'event' | 'needle';
  /** busy: the haystack variant; needle: the needle's index. */
  index: number;
}

/**
 * The stream's chunks in time order, needles included (a needle frame is always encoded: it
 * differs from the scene; the frame after it is the scene again, encoded as a change).
 * Chunk spans follow the gate: a chunk covers its frame up to the next encoded frame's time - 1.
 */
export function planLongStream(scene: LongScene, durationS: number, needles: readonly LongNeedle[], options: { busyVariants: number; camera?: CameraGatePattern; seed?: number }): PlannedChunk[] {
  const starts: PlannedChunk[] = [];
  const random = mulberry32(options.seed ?? 11);
  const sorted = [...needles].map((n, index) => ({ ...n, index })).sort((a, b) => a.t - b.t);
  const needleAt = new Map<number, number>();
  for (const n of sorted) for (let k = 0; k < n.seconds; k++) needleAt.set(n.t + k, n.index);
  const covered = (t: number) => needleAt.has(t);
  if (scene === 'busy') {
    for (let t = 0; t < durationS; t++) {
      const needle = needleAt.get(t);
      starts.push(needle !== undefined ? { tStart: t, tEnd: t, kind: 'needle', index: needle } : { tStart: t, tEnd: t, kind: 'hay', index: Math.floor(random() * options.busyVariants) });
    }
    return starts;
  }
  const pattern = options.camera;
  if (!pattern) throw new Error('camera scene needs its gate pattern');
  const { spec } = pattern;
  const times: Array<{ t: number; kind: PlannedChunk['kind']; index: number }> = [];
  // The gate run itself for its span, then its periodic decisions.
  for (const e of pattern.encoded) if (e.t < durationS) times.push({ t: e.t, kind: isEventTime(spec, e.t) ? 'event' : 'hay', index: 0 });
  const lastGateT = spec.gateSeconds;
  let periodStart = spec.firstEventAt + Math.floor((lastGateT - spec.firstEventAt) / spec.eventEverySec) * spec.eventEverySec;
  while (periodStart < durationS) {
    for (const off of pattern.periodOffsets) {
      const t = periodStart + off;
      if (t >= lastGateT && t < durationS) times.push({ t, kind: off < spec.eventSec ? 'event' : 'hay', index: 0 });
    }
    periodStart += spec.eventEverySec;
  }
  // Needles: encoded on every frame they cover (each differs from the last encoded: the needle's
  // 2nd..nth second would be gated in a real run, which only shortens the planned chunks), and the
  // scene encoded again right after (the gate sees the change back).
  const byT = new Map<number, { t: number; kind: PlannedChunk['kind']; index: number }>();
  for (const x of times) if (!covered(x.t)) byT.set(x.t, x);
  for (const n of sorted) {
    byT.set(n.t, { t: n.t, kind: 'needle', index: n.index });
    const after = n.t + n.seconds;
    if (after < durationS && !byT.has(after) && !covered(after)) byT.set(after, { t: after, kind: isEventTime(spec, after) ? 'event' : 'hay', index: 0 });
  }
  const ordered = [...byT.values()].sort((a, b) => a.t - b.t);
  for (let i = 0; i < ordered.length; i++) {
    const x = ordered[i]!;
    const next = ordered[i + 1]?.t ?? durationS;
    starts.push({ tStart: x.t, tEnd: Math.max(x.t, next - 1), kind: x.kind, index: x.index });
  }
  return starts;
}

function isEventTime(spec: CameraSpec, t: number): boolean {
  return t >= spec.firstEventAt && (t - spec.firstEventAt) % spec.eventEverySec < spec.eventSec;
}
