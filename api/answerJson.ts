import { isGapEvidence, type StreamAnswer } from '../src/engine/streamManager.js';

/**
 * An answer as the API returns it: chunk evidence carries the URL of its thumbnail; outage entries
 * (`{gap: {from, to, reason}}`) and skipped chunks pass through as they are.
 */
export function answerJson(answer: StreamAnswer) {
  return {
    ...answer,
    evidence: answer.evidence.map((e) =>
      isGapEvidence(e) ? { gap: { ...e.gap } } : { ...e, thumbnail: e.thumbnail ? `/v1/streams/${encodeURIComponent(answer.streamId)}/frames/${e.chunkId}.jpg` : null },
    ),
  };
}
