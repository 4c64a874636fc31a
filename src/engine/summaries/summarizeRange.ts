/**
 * A summary of a stream's time range: cut it into events (segmentEvents.ts, no model call), then
 * ask the model about each event, one after another, with the question restricted to the event's
 * span (the ordinary question path: the question queue, the model scheduler, retrieval within the
 * span, the answer decoded from the logits). Each event's text is that answer; its evidence the
 * chunks the answer used. Outages in the range are listed among the events.
 */
import { VigilError } from '../../../common/errors.js';
import { LIMITS, MAX_QUESTION_CHARS } from '../../../common/settings.js';
import type { StreamGap } from '../../../memory/store/types.js';
import { type GateSetting, gatePhaseSec } from '../frameGate.js';
import type { AskHooks, StreamAnswer, StreamQuestion } from '../manager/types.js';
import { memoryCoverage, type MemoryHorizon, streamClock } from '../memoryHorizon.js';
import { type ChunkRows, scanRange, type SceneUnit, unitEnd } from './rangeScan.js';
import { type EventSpan, segmentEvents } from './segmentEvents.js';
import {
  DEFAULT_MAX_EVENTS,
  DEFAULT_SUMMARY_QUESTION,
  MAX_SCANNED_CHUNKS,
  MAX_SUMMARY_EVENTS,
  MAX_SUMMARY_GAPS,
  MIN_EVENT_SEC,
  type SegmentationReport,
  type StreamSummary,
  type SummaryEntry,
  type SummaryEvent,
  type SummaryHooks,
  type SummaryPlan,
  type SummaryRequest,
} from './types.js';

/** What a summary reads from one stream. */
export interface SummarySource {
  streamId: string;
  store: ChunkRows & { gaps(range: { from?: number; to?: number; limit?: number }): StreamGap[] };
  horizon(): MemoryHorizon;
  gate: GateSetting;
}

/** Asks one question of the stream (StreamManager.ask: queue, scheduler, evidence). */
export type AskStream = (question: StreamQuestion, hooks: AskHooks) => Promise<StreamAnswer>;

/** Request fields checked (BAD_INPUT naming the field), defaults filled in. */
export function checkSummaryRequest(request: SummaryRequest): Required<SummaryRequest> {
  const { from, to } = request;
  if (typeof from !== 'number' || typeof to !== 'number' || !Number.isFinite(from) || !Number.isFinite(to) || from < 0 || to < from) {
    throw new VigilError('BAD_INPUT', `a summary needs stream times 0 <= from <= to (got ${String(from)}..${String(to)})`);
  }
  const maxEvents = request.maxEvents ?? DEFAULT_MAX_EVENTS;
  if (!Number.isInteger(maxEvents) || maxEvents < 1 || maxEvents > MAX_SUMMARY_EVENTS) throw new VigilError('BAD_INPUT', `maxEvents must be an integer 1..${MAX_SUMMARY_EVENTS}, got ${String(request.maxEvents)}`);
  const maxTokens = request.maxTokens ?? LIMITS.maxTokens.default;
  if (!Number.isInteger(maxTokens) || maxTokens < LIMITS.maxTokens.min || maxTokens > LIMITS.maxTokens.max) {
    throw new VigilError('BAD_INPUT', `maxTokens must be an integer ${LIMITS.maxTokens.min}..${LIMITS.maxTokens.max}, got ${String(request.maxTokens)}`);
  }
  const question = (request.question ?? DEFAULT_SUMMARY_QUESTION).trim();
  if (question === '') throw new VigilError('BAD_INPUT', 'the question is empty');
  if (question.length > MAX_QUESTION_CHARS) throw new VigilError('BAD_INPUT', `the question has ${question.length} characters; the limit is ${MAX_QUESTION_CHARS}`);
  return { from, to, maxEvents, maxTokens, question };
}

export async function summarizeRange(source: SummarySource, request: SummaryRequest, ask: AskStream, hooks: SummaryHooks = {}): Promise<StreamSummary> {
  const { from, to, maxEvents, maxTokens, question } = checkSummaryRequest(request);
  const started = performance.now();
  const allGaps = source.store.gaps({ from, to });
  const horizon = source.horizon();
  const coverage = memoryCoverage(horizon, { start: from, end: to }, allGaps);
  const gaps = allGaps.slice(0, MAX_SUMMARY_GAPS).map((g) => ({ from: g.tStart, to: g.tEnd, reason: g.reason }));
  const scan = coverage.outOfMemory ? { units: [], sampled: false } : scanRange(source.store, from, to, MAX_SCANNED_CHUNKS);
  const gate = scan.sampled ? null : source.gate;
  const cut = segmentEvents(scan.units, {
    from,
    to,
    maxEvents,
    minEventSec: MIN_EVENT_SEC,
    gate,
    gaps,
    endOf: (i) => unitEnd(source.store, scan.units[i]!),
    // The stream's gate is built with its id (StreamSession.open: the folder's name is the id).
    gatePhaseSec: gate !== null && gate !== 'off' ? gatePhaseSec(source.streamId, gate.maxHoldSec) : 0,
    firstEncodeTimes: firstEncodeTimes(source, horizon, scan.units[0]),
  });
  const segmentation: SegmentationReport = {
    method: gate !== null && gate !== 'off' ? 'gate+keys' : 'keys',
    chunks: scan.units.length,
    sampled: scan.sampled,
    threshold: round(cut.threshold, 4),
    changes: cut.changes,
    gapsTruncated: allGaps.length > gaps.length,
  };
  const chunksIn = (span: EventSpan) => span.lastIndex - span.firstIndex + 1;
  const segmentMs = performance.now() - started;
  hooks.onPlan?.({ events: cut.spans.map((s) => ({ from: s.from, to: s.to, chunks: chunksIn(s), startedBy: s.startedBy })), gaps: gaps.map((g) => ({ ...g })), segmentation });

  const entries: SummaryEntry[] = [];
  let nextGap = 0;
  const add = (entry: SummaryEntry) => {
    entries.push(entry);
    hooks.onEntry?.(entry);
  };
  // Outages starting before `t` go out first, so entries stay in time order.
  const gapsBefore = (t: number) => {
    while (nextGap < gaps.length && gaps[nextGap]!.from < t) add({ gap: { ...gaps[nextGap++]! } });
  };
  let queueMs = 0;
  let modelMs = 0;
  for (const span of cut.spans) {
    gapsBefore(span.from);
    const answer = await ask({ question, from: span.from, to: span.to, maxTokens }, hooks.signal ? { signal: hooks.signal } : {});
    queueMs += answer.timing.queueMs;
    modelMs += answer.timing.totalMs;
    const event: SummaryEvent = {
      from: span.from,
      to: span.to,
      text: answer.text,
      stopReason: answer.stopReason,
      chunks: chunksIn(span),
      startedBy: span.startedBy,
      // Outages are entries of their own; the answer's evidence keeps its chunks.
      evidence: answer.evidence.flatMap((e) => ('gap' in e ? [] : [{ chunkId: e.chunkId, t: e.tStart, tEnd: e.tEnd, score: e.score, thumbnail: e.thumbnail }])),
    };
    add(event);
  }
  gapsBefore(Infinity);
  return {
    streamId: source.streamId,
    from,
    to,
    question,
    events: entries,
    note: coverage.outOfMemory ? coverage.note : cut.spans.length === 0 ? `No frame in memory lies between ${streamClock(from)} and ${streamClock(to)}.` : null,
    coverage,
    segmentation,
    timing: { segmentMs: round(segmentMs, 2), queueMs: round(queueMs, 2), modelMs: round(modelMs, 2), totalMs: round(performance.now() - started, 2) },
  };
}

/**
 * Where the gate encoded with nothing to compare, as far as the range's first unit needs it (the
 * outages inside the range segmentEvents finds itself): the stream's first chunk, unless retention
 * deleted it (the oldest kept one is then an ordinary encode), and the end of an outage just before
 * the first unit (its first frame is encoded there).
 */
function firstEncodeTimes(source: SummarySource, horizon: MemoryHorizon, first: SceneUnit | undefined): number[] {
  if (first === undefined) return [];
  const times = horizon.forgottenChunks === 0 && horizon.from !== null ? [horizon.from] : [];
  for (const g of source.store.gaps({ from: first.tStart, to: first.tStart, limit: 4 })) times.push(g.tEnd);
  return times;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
