/**
 * Summaries of a time range (issue 17): the range is cut into events (scene changes, see
 * segmentEvents.ts), and each event is described by the model from the frames retrieval finds in its
 * span (the ordinary question path, restricted to the event's time). The text is what the model
 * generated; the evidence is the chunks that answer used.
 */
import type { MemoryCoverage } from '../memoryHorizon.js';
import type { GapEvidence, TimelineGap } from '../manager/types.js';

/** Events per summary when the caller does not say, and at most. */
export const DEFAULT_MAX_EVENTS = 8;
export const MAX_SUMMARY_EVENTS = 32;
/** What each event is asked when the caller gives no question of its own. */
export const DEFAULT_SUMMARY_QUESTION = 'Describe what happens.';
/** A scene shorter than this (stream s, up to the next scene's start) is merged into a neighbour: a flicker is not an event. */
export const MIN_EVENT_SEC = 2;
/**
 * Chunks whose representatives are compared at most per summary: a longer range is sampled evenly
 * (every k-th chunk), so the cost of cutting a range into events never grows with its length.
 */
export const MAX_SCANNED_CHUNKS = 4096;
/** Outage entries listed at most (the oldest in the range; a flapping camera may record thousands). */
export const MAX_SUMMARY_GAPS = 64;

export interface SummaryRequest {
  /** Stream seconds, 0 <= from <= to. */
  from: number;
  to: number;
  /** Events at most, 1..MAX_SUMMARY_EVENTS; default DEFAULT_MAX_EVENTS. */
  maxEvents?: number;
  /** Asked of every event (restricted to its span); default DEFAULT_SUMMARY_QUESTION. */
  question?: string;
  /** Most tokens per event's text; default the question default (64). */
  maxTokens?: number;
}

/** A retrieved chunk an event's text was generated from. */
export interface SummaryEvidence {
  chunkId: number;
  /** The chunk's span in stream seconds (with frame gating, the unchanged frames it covers). */
  t: number;
  tEnd: number;
  /** Mean retrieval score over the layers that retrieved it. */
  score: number;
  /** Whether the stream keeps a thumbnail of the chunk (the API turns it into a URL). */
  thumbnail: boolean;
}

/** Why an event starts where it does. */
export type EventStart = 'range-start' | 'change' | 'gate' | 'gap';

export interface SummaryEvent {
  /** The event's span: its first chunk's start to its last chunk's end, clipped to the range. */
  from: number;
  to: number;
  /** The model's text for this span (trimmed), exactly as generated. */
  text: string;
  stopReason: 'eos' | 'max_new_tokens';
  /** Chunks of memory inside the span (sampled ones only, for a range past MAX_SCANNED_CHUNKS). */
  chunks: number;
  startedBy: EventStart;
  evidence: SummaryEvidence[];
}

/** An outage inside the range, listed among the events in time order (the same entry answers' evidence uses). */
export type SummaryGapEntry = GapEvidence;

export type SummaryEntry = SummaryEvent | SummaryGapEntry;

export function isSummaryGap(entry: SummaryEntry): entry is SummaryGapEntry {
  return 'gap' in entry;
}

/** How the range was cut (for callers tuning maxEvents, and for tests). */
export interface SegmentationReport {
  /** 'gate+keys': frame gating's spans and representative distances; 'keys': distances only (gating off, or a sampled range). */
  method: 'gate+keys' | 'keys';
  /** Chunks compared; `sampled` when the range held more than MAX_SCANNED_CHUNKS and every k-th was taken. */
  chunks: number;
  sampled: boolean;
  /** The calibrated distance above which consecutive chunks count as a scene change. */
  threshold: number;
  /** Scene changes found before short scenes were merged and the maxEvents cap applied. */
  changes: number;
  /** More outages lie in the range than are listed (MAX_SUMMARY_GAPS). */
  gapsTruncated: boolean;
}

export interface SummaryTiming {
  /** Reading the range's chunks and cutting it into events. */
  segmentMs: number;
  /** Waiting for the model, summed over events (other streams' frames and questions). */
  queueMs: number;
  /** The events' answers on the model (retrieval, load, prefill, decode), summed. */
  modelMs: number;
  totalMs: number;
}

export interface StreamSummary {
  streamId: string;
  from: number;
  to: number;
  question: string;
  /** Events and outage entries in time order. */
  events: SummaryEntry[];
  /** Why there are no events (memory holds none of the range, or no frame lies in it); null otherwise. */
  note: string | null;
  /** What of the range memory holds (the question path's coverage). */
  coverage: MemoryCoverage;
  segmentation: SegmentationReport;
  timing: SummaryTiming;
}

/** The events planned before the model runs (sent first on an event stream). */
export interface SummaryPlan {
  events: Array<{ from: number; to: number; chunks: number; startedBy: EventStart }>;
  gaps: TimelineGap[];
  segmentation: SegmentationReport;
}

export interface SummaryHooks {
  /** The events and outages found, before any model call. */
  onPlan?: (plan: SummaryPlan) => void;
  /** Each entry (event or outage) once it is final, in time order. */
  onEntry?: (entry: SummaryEntry) => void;
  /** Cancels the summary: the event being answered stops at its next token, the rest never run (CANCELLED). */
  signal?: AbortSignal;
}
