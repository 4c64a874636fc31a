// A stream's timeline over a range of stream time (issue 17): its scenes (each encoded chunk's span;
// with frame gating a chunk's span reaches over the unchanged frames it stood for), the recorded
// outages, the watches' alerts and the memory tiers. Bounded: at most MAX_TIMELINE_SPANS spans
// (consecutive chunks merged `step` at a time when the range holds more), and the store is read
// by point lookups of the chunks the spans start and end with, never a pass over the history.
import { VigilError } from '../../common/errors.js';
import type { StoreStats, StreamGap } from '../../memory/store/index.js';
import type { MemoryHorizon, MemoryTier } from './memoryHorizon.js';
import type { Alert } from './watches/types.js';

/** Most spans in one timeline: a longer range merges consecutive chunks into one span. */
export const MAX_TIMELINE_SPANS = 500;
/** Most outages and alerts in one timeline (the earliest in the range; the `...Truncated` flags say more exist). */
export const MAX_TIMELINE_GAPS = 500;
export const MAX_TIMELINE_ALERTS = 500;
/** Ids probed past a missing one (a damaged chunk dropped from the store) before a stretch counts as empty. */
const HOLE_PROBES = 16;
/** Chunks of a span checked for a thumbnail (bounds the file checks when thumbnails are missing). */
const THUMBNAIL_TRIES = 3;

/** A scene: one chunk's span, or `chunks` consecutive chunks merged (step > 1). */
export interface TimelineSpan {
  from: number;
  to: number;
  /** First chunk of the span (its id names the thumbnail). */
  chunkId: number;
  chunks: number;
  /** The chunk whose thumbnail shows the span (the first of its chunks that has one); null when none has. */
  thumbnailChunk: number | null;
}

export interface TimelineAlert {
  id: string;
  watchId: string;
  /** The watch's question, or a health watch's condition in words; null when the watch was deleted since. */
  question: string | null;
  t: number;
  wallTime: number;
  answer: string;
}

export interface TimelineTier {
  tier: MemoryTier;
  from: number;
  to: number;
}

export interface StreamTimeline {
  stream: string;
  /** The range the timeline covers (stream s): the one asked, the whole memory by default. */
  from: number;
  to: number;
  /** The whole memory's reach (the horizon), so a client can place the range in it. */
  memory: { from: number | null; to: number | null };
  spans: TimelineSpan[];
  /** Chunks in the range, and how many consecutive chunks each span merges (1: a span per chunk). */
  chunks: number;
  step: number;
  /** Spans were merged (step > 1) to stay within MAX_TIMELINE_SPANS. */
  truncated: boolean;
  gaps: Array<{ from: number; to: number; reason: string }>;
  gapsTruncated: boolean;
  alerts: TimelineAlert[];
  alertsTruncated: boolean;
  tiers: TimelineTier[];
}

/** What a timeline is built from: one open stream's store, horizon, alerts and thumbnails. */
export interface TimelineSource {
  stream: string;
  store: {
    chunkSpan(chunkId: number): { tStart: number; tEnd: number } | null;
    gaps(range: { from: number; to: number; limit: number }): StreamGap[];
  };
  /** The store's stats (segment summaries) and the horizon computed from them. */
  stats: Pick<StoreStats, 'segments' | 'lastChunkId'>;
  horizon: MemoryHorizon;
  alerts: readonly Alert[];
  /** Watch id -> its question (a health watch: its condition in words). */
  questions: ReadonlyMap<string, string>;
  hasThumbnail(chunkId: number): boolean;
}

/** A requested range, stream seconds; either end may be left out (the memory's end). */
export interface TimelineRange {
  from?: number;
  to?: number;
}

export function streamTimeline(source: TimelineSource, range: TimelineRange = {}): StreamTimeline {
  const { horizon } = source;
  for (const [name, v] of [['from', range.from], ['to', range.to]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new VigilError('BAD_INPUT', `${name} must be a number of stream seconds >= 0, got ${String(v)}`);
  }
  const from = range.from ?? horizon.from ?? 0;
  const to = range.to ?? Math.max(from, horizon.to ?? 0);
  if (from > to) throw new VigilError('BAD_INPUT', `from (${from}) is after to (${to})`);

  const { spans, chunks, step } = sceneSpans(source, from, to);
  const gapRows = source.store.gaps({ from, to, limit: MAX_TIMELINE_GAPS + 1 });
  const inRange = source.alerts.filter((a) => a.t >= from && a.t <= to).sort((a, b) => a.t - b.t || a.wallTime - b.wallTime);
  return {
    stream: source.stream,
    from,
    to,
    memory: { from: horizon.from, to: horizon.to },
    spans,
    chunks,
    step,
    truncated: step > 1,
    gaps: gapRows.slice(0, MAX_TIMELINE_GAPS).map((g) => ({ from: g.tStart, to: g.tEnd, reason: g.reason })),
    gapsTruncated: gapRows.length > MAX_TIMELINE_GAPS,
    alerts: inRange.slice(0, MAX_TIMELINE_ALERTS).map((a) => ({
      id: a.id,
      watchId: a.watchId,
      question: source.questions.get(a.watchId) ?? null,
      t: a.t,
      wallTime: a.wallTime,
      answer: a.answer,
    })),
    alertsTruncated: inRange.length > MAX_TIMELINE_ALERTS,
    tiers: horizon.spans.filter((s) => s.to >= from && s.from <= to).map((s) => ({ tier: s.tier, from: Math.max(s.from, from), to: Math.min(s.to, to) })),
  };
}

/** One chunk's id and stream times. */
interface ChunkAt {
  id: number;
  tStart: number;
  tEnd: number;
}

/**
 * The chunks overlapping [from, to] as spans, `step` consecutive chunks to a span. No pass over the
 * chunk rows: the segment summaries (RAM) give each overlapping segment's chunk ids, a binary search
 * of point lookups trims the two edge segments to the range (chunk ids grow with stream time), and
 * each span reads only its first and last chunk. Cost: O(segments + log(chunks) + spans).
 */
function sceneSpans(source: TimelineSource, from: number, to: number): { spans: TimelineSpan[]; chunks: number; step: number } {
  const { store } = source;
  const at = (id: number): ChunkAt | null => {
    const span = store.chunkSpan(id);
    return span ? { id, tStart: span.tStart, tEnd: span.tEnd } : null;
  };
  // The first chunk at or after `id` (up to `last`), the last at or before it (down to `first`):
  // ids of damaged chunks dropped from the store are holes, skipped over a few probes at most.
  const forward = (id: number, last: number): ChunkAt | null => {
    for (let i = id; i <= Math.min(last, id + HOLE_PROBES); i++) {
      const c = at(i);
      if (c) return c;
    }
    return null;
  };
  const backward = (id: number, first: number): ChunkAt | null => {
    for (let i = id; i >= Math.max(first, id - HOLE_PROBES); i--) {
      const c = at(i);
      if (c) return c;
    }
    return null;
  };

  // Chunk id runs in the range, in time order: one per overlapping segment, its edges trimmed.
  const runs: Array<{ first: number; last: number }> = [];
  const segments = source.stats.segments
    .filter((s) => s.chunkCount > 0 && s.tStart !== null && s.tEnd !== null && s.firstChunkId !== null && s.lastChunkId !== null && s.tEnd >= from && s.tStart <= to)
    .sort((a, b) => a.firstChunkId! - b.firstChunkId!);
  for (const s of segments) {
    let first = s.firstChunkId!;
    let last = s.lastChunkId!;
    // The first chunk ending at or after `from`, the last starting at or before `to`.
    if (s.tStart! < from) first = searchIds(first, last, (id) => (forward(id, last)?.tEnd ?? Infinity) >= from);
    if (s.tEnd! > to) last = searchIds(first, last, (id) => (forward(id, last)?.tStart ?? Infinity) > to) - 1;
    if (first <= last) runs.push({ first, last });
  }
  const chunks = runs.reduce((n, r) => n + r.last - r.first + 1, 0);
  const step = Math.max(1, Math.ceil(chunks / MAX_TIMELINE_SPANS));

  const spans: TimelineSpan[] = [];
  let newest = -1;
  // Groups of `step` consecutive ids, which may continue from one segment's run into the next.
  let group: Array<{ first: number; last: number }> = [];
  let size = 0;
  const close = () => {
    const firstRun = group[0];
    const lastRun = group.at(-1);
    const count = size;
    group = [];
    size = 0;
    if (!firstRun || !lastRun) return;
    const head = forward(firstRun.first, firstRun.last);
    // A span of one chunk (step 1) is read once.
    const tail = count === 1 ? head : backward(lastRun.last, lastRun.first);
    if (!head || !tail) return;
    let thumbnailChunk: number | null = null;
    for (let id = head.id; id <= Math.min(firstRun.last, head.id + THUMBNAIL_TRIES - 1) && thumbnailChunk === null; id++) {
      if (source.hasThumbnail(id)) thumbnailChunk = id;
    }
    spans.push({ from: head.tStart, to: Math.max(head.tEnd, tail.tEnd), chunkId: head.id, chunks: count, thumbnailChunk });
    newest = tail.id;
  };
  for (const run of runs) {
    let id = run.first;
    while (id <= run.last) {
      const take = Math.min(step - size, run.last - id + 1);
      group.push({ first: id, last: id + take - 1 });
      size += take;
      id += take;
      if (size === step) close();
    }
  }
  close();
  // The newest chunk's committed span may trail the memory's end (a gated frame extends it in RAM first).
  const last = spans.at(-1);
  const end = source.horizon.to;
  if (last && end !== null && newest === source.stats.lastChunkId && end > last.to) last.to = end;
  return { spans, chunks, step };
}

/** The smallest id in [first, last] for which `past` holds (it holds for every larger id), or last + 1 when none. */
function searchIds(first: number, last: number, past: (id: number) => boolean): number {
  let lo = first;
  let hi = last + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (past(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
