// The memory horizon (issue 15 item 6): how far back a stream's memory reaches, at which fidelity,
// where it has holes, and what retention already forgot. One computation for every surface (stream
// status, `vigil store stats`, answers, metrics, the web page), from the store's per-segment
// summaries and the gaps table: O(segments + listed gaps), never a pass over the chunk rows.
import type { RecordDtype } from '../../memory/frameChunk.js';
import type { StoreStats, StreamGap } from '../../memory/store/types.js';

/**
 * Fidelity tiers, highest first: KV in a storage dtype (kivi4 chunks are 'kv-4bit'), and the
 * archive (representatives plus the frame's still, no KV: re-encoded when a question needs it).
 */
export const MEMORY_TIERS = ['kv-float32', 'kv-float16', 'kv-int8', 'kv-4bit', 'archive'] as const;
export type MemoryTier = (typeof MEMORY_TIERS)[number];

/** The tier of KV stored in each payload dtype (kivi4: 4-bit KIVI). */
const TIER_BY_DTYPE: Readonly<Record<string, MemoryTier>> = { float32: 'kv-float32', float16: 'kv-float16', int8: 'kv-int8', kivi4: 'kv-4bit', archive: 'archive' };

export function kvTier(dtype: RecordDtype): MemoryTier {
  // A dtype this table does not know yet is claimed no better than the lowest KV tier.
  return TIER_BY_DTYPE[dtype] ?? 'kv-4bit';
}

/** A stretch of stream time (s) whose chunks are all held in one tier. */
export interface HorizonSpan {
  tier: MemoryTier;
  from: number;
  to: number;
  chunks: number;
}

/** A recorded outage inside the horizon (stream s): no frames between `from` and `to`. */
export interface HorizonGap {
  from: number;
  to: number;
  reason: string;
}

export interface MemoryHorizon {
  /** Oldest held chunk's tStart; null while the memory is empty. */
  from: number | null;
  /** Newest chunk's tEnd (with frame gating, the span its unchanged frames extended it to); null while empty. */
  to: number | null;
  /** from..to split by fidelity tier, in time order. */
  spans: HorizonSpan[];
  /** Outages overlapping from..to, in time order: at most MAX_HORIZON_GAPS, the oldest (see gapsTruncated). */
  gaps: HorizonGap[];
  /** More outages lie inside the horizon than `gaps` lists. */
  gapsTruncated: boolean;
  /**
   * Stream time up to which retention (the disk budget, maxBytes, age) has deleted history: the
   * newest deleted chunk's end; null when nothing was ever deleted. For a store whose retention
   * ran before this was recorded, `from` (everything before the oldest kept chunk is gone).
   */
  forgottenBefore: number | null;
  /** Chunks retention deleted (for such an older store: at least the ids below the oldest kept). */
  forgottenChunks: number;
}

/** The horizon lists this many outages at most (a flapping camera may record thousands). */
export const MAX_HORIZON_GAPS = 256;

/**
 * Frames the memory holds but the store has not committed yet (still in the RAM window), and the
 * newest tEnd a gated frame extended: the live end of the horizon.
 */
export interface UnstoredTail {
  /** tStart of the oldest chunk not committed yet; null when every chunk is committed. */
  from: number | null;
  /** Newest chunk's tEnd as the memory knows it (may be ahead of its committed row). */
  to: number | null;
  chunks: number;
  tier: MemoryTier;
}

/** The lowest-fidelity tier among a segment's dtypes: a mixed segment is claimed no better than its worst chunk. */
function segmentTier(bytesByDtype: Partial<Record<RecordDtype, number>>, fallback: RecordDtype): MemoryTier {
  let tier: MemoryTier | null = null;
  for (const [dtype, bytes] of Object.entries(bytesByDtype) as Array<[RecordDtype, number | undefined]>) {
    if (bytes === undefined || bytes <= 0) continue;
    const t = kvTier(dtype);
    if (tier === null || MEMORY_TIERS.indexOf(t) > MEMORY_TIERS.indexOf(tier)) tier = t;
  }
  return tier ?? kvTier(fallback);
}

/**
 * The horizon from a store's stats (segment summaries, O(segments)) and its gaps table (one indexed
 * query, at most MAX_HORIZON_GAPS + 1 rows), plus the memory's uncommitted tail when given.
 */
export function memoryHorizon(stats: StoreStats, gapsIn: (from: number, to: number, limit: number) => StreamGap[], tail?: UnstoredTail): MemoryHorizon {
  const spans: HorizonSpan[] = [];
  // In time order, not segment-id order: a demoted segment (rewritten in a lower tier) gets a new,
  // higher id for older chunks.
  const segments = stats.segments.filter((s) => s.chunkCount > 0 && s.tStart !== null && s.tEnd !== null).sort((a, b) => a.tStart! - b.tStart!);
  for (const s of segments) {
    if (s.tStart === null || s.tEnd === null) continue;
    const tier = segmentTier(s.bytesByDtype, stats.dtype);
    const last = spans.at(-1);
    if (last && last.tier === tier) {
      last.to = Math.max(last.to, s.tEnd);
      last.chunks += s.chunkCount;
    } else spans.push({ tier, from: s.tStart, to: s.tEnd, chunks: s.chunkCount });
  }
  if (tail && tail.to !== null) {
    const last = spans.at(-1);
    if (last && (last.tier === tail.tier || tail.chunks === 0)) {
      last.to = Math.max(last.to, tail.to);
      last.chunks += tail.chunks;
    } else if (tail.chunks > 0 && tail.from !== null) spans.push({ tier: tail.tier, from: tail.from, to: tail.to, chunks: tail.chunks });
  }
  const from = spans[0]?.from ?? null;
  const to = spans.at(-1)?.to ?? null;
  let gaps: HorizonGap[] = [];
  let gapsTruncated = false;
  if (from !== null && to !== null) {
    const rows = gapsIn(from, to, MAX_HORIZON_GAPS + 1);
    gapsTruncated = rows.length > MAX_HORIZON_GAPS;
    gaps = rows.slice(0, MAX_HORIZON_GAPS).map((g) => ({ from: g.tStart, to: g.tEnd, reason: g.reason }));
  }
  const legacyForgotten = stats.forgotten === null && (stats.firstChunkId ?? 0) > 0;
  return {
    from,
    to,
    spans,
    gaps,
    gapsTruncated,
    forgottenBefore: stats.forgotten?.tEnd ?? (legacyForgotten ? from : null),
    forgottenChunks: stats.forgotten?.chunks ?? (legacyForgotten ? stats.firstChunkId! : 0),
  };
}

/** Seconds of stream time the horizon reaches back over (to - from); 0 while empty. */
export function horizonSeconds(h: MemoryHorizon): number {
  return h.from === null || h.to === null ? 0 : h.to - h.from;
}

/**
 * Why a stretch of a question's time range is not in memory: before the horizon (forgotten by
 * retention, or before the stream's first frame), inside a recorded outage, or after the newest frame.
 */
export type MissingReason = 'before-horizon' | 'gap' | 'after-horizon';

export interface MissingStretch {
  from: number;
  to: number;
  reason: MissingReason;
  /** The outage's recorded reason (gap only), else null. */
  detail: string | null;
}

/** How much of a question's time range the memory holds. */
export interface MemoryCoverage {
  from: number;
  to: number;
  /** The parts not held, in time order (empty: all of it is held). */
  missing: MissingStretch[];
  /** Nothing in the range is held: the answer is a statement and no model runs. */
  outOfMemory: boolean;
  /** A sentence saying what is not held (the whole answer when outOfMemory); null when all is held. */
  note: string | null;
}

/**
 * Coverage of [from, to] by a horizon. Held: [horizon.from, horizon.to] minus the open interiors of
 * the outages (an outage's ends are the frames before and after it, which are held). `gapsInRange`
 * are the recorded outages overlapping the range (a query of their own, not the horizon's capped list).
 */
export function memoryCoverage(h: MemoryHorizon, range: { start: number; end: number }, gapsInRange: readonly StreamGap[]): MemoryCoverage {
  const { start } = range;
  // A range given only its start runs to "now" (timeRange() ends it at MAX_SAFE_INTEGER): its
  // future is not missing memory, only the part before the horizon or in outages can be.
  const openEnd = range.end >= Number.MAX_SAFE_INTEGER;
  const end = openEnd && h.to !== null && start <= h.to ? h.to : range.end;
  const missing: MissingStretch[] = [];
  let outOfMemory: boolean;
  if (h.from === null || h.to === null) {
    missing.push({ from: start, to: end, reason: 'after-horizon', detail: null });
    outOfMemory = true;
  } else {
    if (start < h.from) missing.push({ from: start, to: Math.min(end, h.from), reason: 'before-horizon', detail: null });
    const sorted = [...gapsInRange].sort((a, b) => a.tStart - b.tStart);
    for (const g of sorted) {
      const a = Math.max(g.tStart, start, h.from);
      const b = Math.min(g.tEnd, end, h.to);
      if (b > a) missing.push({ from: a, to: b, reason: 'gap', detail: g.reason });
    }
    if (end > h.to) missing.push({ from: Math.max(start, h.to), to: end, reason: 'after-horizon', detail: null });
    outOfMemory = end < h.from || start > h.to || insideOutages(Math.max(start, h.from), Math.min(end, h.to), sorted);
  }
  return { from: start, to: range.end, missing, outOfMemory, note: missing.length === 0 ? null : coverageNote(h, { start, end }, missing, outOfMemory) };
}

/** Whether [c, d] lies within the union of the outages' open interiors (gaps sorted by start). */
function insideOutages(c: number, d: number, sorted: readonly StreamGap[]): boolean {
  let cursor = c;
  for (const g of sorted) {
    if (g.tStart >= cursor) break;
    if (g.tEnd > cursor) {
      cursor = g.tEnd;
      if (cursor > d) return true;
    }
  }
  return false;
}

/** Stream time as a clock: m:ss, or h:mm:ss from an hour on. */
export function streamClock(t: number): string {
  const s = Math.max(0, Math.floor(t));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "1:00–2:00"; a range open at its end (only `from` given) runs to "now". */
const clockSpan = (a: number, b: number) => `${streamClock(a)}–${b >= Number.MAX_SAFE_INTEGER ? 'now' : streamClock(b)}`;

function coverageNote(h: MemoryHorizon, range: { start: number; end: number }, missing: readonly MissingStretch[], outOfMemory: boolean): string {
  if (h.from === null || h.to === null) return `I have no memory of ${clockSpan(range.start, range.end)}: nothing has been recorded yet.`;
  const startsAt = `my memory starts at ${streamClock(h.from)}`;
  const endsAt = `my memory ends at ${streamClock(h.to)}`;
  const part = (m: MissingStretch) => {
    switch (m.reason) {
      case 'before-horizon':
        return h.forgottenBefore !== null ? `${clockSpan(m.from, m.to)} (forgotten: ${startsAt})` : `${clockSpan(m.from, m.to)} (before ${startsAt})`;
      case 'gap':
        return `${clockSpan(m.from, m.to)} (not recorded: ${m.detail ?? 'outage'})`;
      case 'after-horizon':
        return `${clockSpan(m.from, m.to)} (not seen yet: ${endsAt})`;
    }
  };
  if (outOfMemory) {
    const only = missing.length === 1 ? missing[0]! : null;
    if (only?.reason === 'before-horizon') {
      return h.forgottenBefore !== null
        ? `I no longer have memory of ${clockSpan(range.start, range.end)}; ${startsAt}.`
        : `I have no memory of ${clockSpan(range.start, range.end)}; ${startsAt}.`;
    }
    if (only?.reason === 'after-horizon') return `I have no memory of ${clockSpan(range.start, range.end)} yet; ${endsAt}.`;
    if (only?.reason === 'gap') return `I have no memory of ${clockSpan(range.start, range.end)}: it was not recorded (${only.detail ?? 'outage'}).`;
    return `I have no memory of ${clockSpan(range.start, range.end)}: ${missing.map(part).join('; ')}.`;
  }
  return `Not in memory: ${missing.map(part).join('; ')}; answered from the rest of ${clockSpan(range.start, range.end)}.`;
}
