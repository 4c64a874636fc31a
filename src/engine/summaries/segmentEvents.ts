/**
 * Cutting a time range into events, from what the memory already holds (no model call):
 *
 * - an **outage** (a recorded gap) always ends an event;
 * - a **scene change**: the representatives (mean pre-RoPE keys) of consecutive chunks moved by more
 *   than a threshold calibrated on the range itself: median + 6 x 1.4826 x MAD of the distances
 *   (a robust 6-sigma: the frame-to-frame noise of this stream over this range), at least
 *   MIN_CHANGE_DISTANCE (int8 representatives round to ~0.5 % of a layer's largest value) and at
 *   most MAX_CHANGE_THRESHOLD (keys moving by half their norm are a new picture for any model; a
 *   range where every chunk is a new scene, as gated chunks of distinct scenes are, has no noise
 *   to calibrate on: its median is the change itself);
 * - with frame gating on, a **gate change**: a chunk that held unchanged frames (its span reaches past
 *   its start) followed by a chunk the gate encoded because the picture changed (sooner than the
 *   gate's maxHoldSec, which re-encodes an unchanged scene). After a first encode (the stream's
 *   first chunk, the first after an outage) the gate's refresh comes maxHoldSec - phase after it
 *   (FrameGate), so from such a chunk only an encode sooner than that is a change.
 *
 * A blip (a change into one chunk shorter than MIN_EVENT_SEC and straight back: the chunk after it is
 * as close to the one before it as the threshold) is no change at all. Then scenes shorter than MIN_EVENT_SEC are merged into the neighbour across their weaker boundary
 * (a flicker is not an event), and while there are more than maxEvents, the weakest boundary is
 * removed (outages last). A boundary's strength is its distance over the threshold (a gate change at
 * least 1; an outage infinite).
 */
import type { GateSetting, GateSettings } from '../frameGate.js';
import type { SceneUnit } from './rangeScan.js';
import type { EventStart } from './types.js';

/** The least distance that counts as a change, whatever the calibration (see the file comment). */
export const MIN_CHANGE_DISTANCE = 0.05;
/** A distance above this is a change whatever the calibration says (see the file comment). */
export const MAX_CHANGE_THRESHOLD = 0.5;
/** Robust sigmas above the median distance that make a change. */
const CHANGE_SIGMAS = 6;
/** Float slack when comparing stream times (s). */
const EPS = 1e-9;

export interface SegmentOptions {
  /** The range (stream s): event spans are clipped to it. */
  from: number;
  to: number;
  maxEvents: number;
  /** Scenes shorter than this are merged into a neighbour. */
  minEventSec: number;
  /** The stream's gate; null when the units are samples (gate spans say nothing between samples). */
  gate: GateSetting | null;
  /** Recorded outages in the range, in time order. */
  gaps: ReadonlyArray<{ from: number; to: number }>;
  /** Where unit i's chunks end (a sampled unit stands for the chunks up to the next sample); default its own tEnd. */
  endOf?: (index: number) => number;
  /** The stream's max-hold phase (FrameGate.phaseSec): the first hold after a first encode is maxHoldSec - this. Default 0. */
  gatePhaseSec?: number;
  /**
   * Start times (stream s) of chunks the gate encoded with nothing to compare them with, besides
   * the first unit after an outage in `gaps`: the stream's first chunk, the end of an outage before
   * the range (its first frame is encoded). Not recorded, so not known here: a frame size change, a
   * restart that left no outage, a disk-full resume (stored unchecked: the gate's first may be a frame later).
   */
  firstEncodeTimes?: readonly number[];
}

/** One event's span over the units. */
export interface EventSpan {
  from: number;
  to: number;
  firstIndex: number;
  lastIndex: number;
  startedBy: EventStart;
}

export interface Segmentation {
  spans: EventSpan[];
  threshold: number;
  /** Scene changes (not outages) found before merging. */
  changes: number;
}

/** The calibrated change threshold of a range's consecutive distances (see the file comment). */
export function changeThreshold(distances: readonly number[]): number {
  if (distances.length === 0) return MIN_CHANGE_DISTANCE;
  const median = medianOf(distances);
  const mad = medianOf(distances.map((d) => Math.abs(d - median)));
  return Math.max(MIN_CHANGE_DISTANCE, Math.min(MAX_CHANGE_THRESHOLD, median + CHANGE_SIGMAS * 1.4826 * mad));
}

interface Scene {
  firstIndex: number;
  lastIndex: number;
  startedBy: EventStart;
  /** Strength of the boundary this scene starts with (unused for the first). */
  strength: number;
}

/** Events over `units` (in time order, each with its distance from the previous one). */
export function segmentEvents(units: readonly SceneUnit[], options: SegmentOptions): Segmentation {
  if (units.length === 0) return { spans: [], threshold: MIN_CHANGE_DISTANCE, changes: 0 };
  const threshold = changeThreshold(units.slice(1).map((u) => u.distance));
  // The boundary before each unit (null: none).
  const kinds: Array<EventStart | null> = [null];
  let gapAt = 0;
  const firstEncodeAt = startsAt(options.firstEncodeTimes ?? []);
  for (let i = 1; i < units.length; i++) {
    const prev = units[i - 1]!;
    const unit = units[i]!;
    // Outages are in time order: skip those ending before this pair, then see if one lies between them.
    while (gapAt < options.gaps.length && options.gaps[gapAt]!.to <= prev.tEnd + EPS) gapAt++;
    const gap = gapAt < options.gaps.length && options.gaps[gapAt]!.from < unit.tStart - EPS;
    const afterFirst = kinds[i - 1] === 'gap' || firstEncodeAt(prev.tStart);
    const gateChange = options.gate !== null && options.gate !== 'off' && prev.tEnd > prev.tStart + EPS && unit.tStart - prev.tStart < maxHold(options.gate, options.gatePhaseSec ?? 0, afterFirst) - EPS;
    kinds.push(gap ? 'gap' : unit.distance > threshold ? 'change' : gateChange ? 'gate' : null);
  }
  const changes = kinds.filter((k) => k !== null && k !== 'gap').length;
  // A blip: a change into a short unit i - 1 and one out of it back to what unit i - 2 showed
  // (a gated chunk holding a scene for seconds is no blip).
  for (let i = 2; i < units.length; i++) {
    const short = units[i]!.tStart - units[i - 1]!.tStart < options.minEventSec - EPS;
    if (short && kinds[i - 1] === 'change' && kinds[i] === 'change' && units[i]!.distance2 <= threshold) kinds[i - 1] = kinds[i] = null;
  }
  const scenes: Scene[] = [{ firstIndex: 0, lastIndex: 0, startedBy: 'range-start', strength: Infinity }];
  for (let i = 1; i < units.length; i++) {
    const kind = kinds[i]!;
    if (kind === null) scenes.at(-1)!.lastIndex = i;
    else scenes.push({ firstIndex: i, lastIndex: i, startedBy: kind, strength: kind === 'gap' ? Infinity : Math.max(units[i]!.distance / threshold, 1) });
  }
  const start = (s: Scene) => Math.max(options.from, units[s.firstIndex]!.tStart);
  const ends = new Map<number, number>();
  const endOf = (i: number) => {
    let t = ends.get(i);
    if (t === undefined) ends.set(i, (t = options.endOf ? options.endOf(i) : units[i]!.tEnd));
    return t;
  };
  const end = (s: Scene) => Math.min(options.to, endOf(s.lastIndex));
  // A scene lasts until the next one starts (the last: until its last chunk ends).
  const duration = (k: number) => (k + 1 < scenes.length ? start(scenes[k + 1]!) : end(scenes[k]!)) - start(scenes[k]!);
  // Merges scene k + 1 into scene k.
  const mergeNext = (k: number) => {
    const next = scenes[k + 1]!;
    scenes[k]!.lastIndex = next.lastIndex;
    scenes.splice(k + 1, 1);
  };

  // Short scenes first, the shortest first, across the weaker of their two boundaries (never an outage).
  for (;;) {
    let pick = -1;
    for (let k = 0; k < scenes.length; k++) {
      if (duration(k) >= options.minEventSec - EPS) continue;
      const left = k > 0 ? scenes[k]!.strength : Infinity;
      const right = k + 1 < scenes.length ? scenes[k + 1]!.strength : Infinity;
      if (left === Infinity && right === Infinity) continue;
      if (pick < 0 || duration(k) < duration(pick)) pick = k;
    }
    if (pick < 0) break;
    const left = pick > 0 ? scenes[pick]!.strength : Infinity;
    const right = pick + 1 < scenes.length ? scenes[pick + 1]!.strength : Infinity;
    mergeNext(left <= right ? pick - 1 : pick);
  }

  // The cap: remove the weakest boundary (outages last; among equals, the pair spanning least time).
  while (scenes.length > Math.max(1, options.maxEvents)) {
    let pick = 1;
    for (let k = 2; k < scenes.length; k++) {
      const s = scenes[k]!.strength;
      const best = scenes[pick]!.strength;
      if (s < best || (s === best && duration(k - 1) + duration(k) < duration(pick - 1) + duration(pick))) pick = k;
    }
    mergeNext(pick - 1);
  }

  return {
    spans: scenes.map((s) => ({ from: start(s), to: end(s), firstIndex: s.firstIndex, lastIndex: s.lastIndex, startedBy: s.startedBy })),
    threshold,
    changes,
  };
}

/** The gate's hold after an encode (FrameGate): shortened by the phase after a first encode. */
function maxHold(gate: GateSettings, phaseSec: number, afterFirst: boolean): number {
  return gate.maxHoldSec - (afterFirst ? phaseSec : 0);
}

/** Whether a time is one of `times` (within float slack). */
function startsAt(times: readonly number[]): (t: number) => boolean {
  return (t) => times.some((x) => Math.abs(x - t) <= EPS);
}

function medianOf(values: readonly number[]): number {
  const sorted = Float64Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
