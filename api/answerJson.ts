import type { StreamAnswer } from '../src/engine/streamManager.js';

/** An answer as the API returns it: evidence carries the URL of its thumbnail. */
export function answerJson(answer: StreamAnswer) {
  return {
    ...answer,
    evidence: answer.evidence.map((e) => ({
      ...e,
      thumbnail: e.thumbnail ? `/v1/streams/${encodeURIComponent(answer.streamId)}/frames/${e.chunkId}.jpg` : null,
    })),
  };
}
