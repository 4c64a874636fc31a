import { isSummaryGap, type StreamSummary, type SummaryEntry } from '../src/engine/streamManager.js';
import { frameUrl } from './alertJson.js';

/** A summary entry as the API returns it: evidence chunks carry the URL of their thumbnail (null without one). */
export function summaryEntryJson(streamId: string, entry: SummaryEntry) {
  if (isSummaryGap(entry)) return { gap: { ...entry.gap } };
  return { ...entry, evidence: entry.evidence.map((e) => ({ ...e, thumbnail: e.thumbnail ? frameUrl(streamId, e.chunkId) : null })) };
}

export function summaryJson(summary: StreamSummary) {
  return { ...summary, events: summary.events.map((e) => summaryEntryJson(summary.streamId, e)) };
}
