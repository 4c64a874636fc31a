import type { Alert, StreamManager } from '../src/engine/streamManager.js';

/** The URL of a chunk's thumbnail (GET /v1/streams/{id}/frames/{chunkId}.jpg). */
export function frameUrl(streamId: string, chunkId: number): string {
  return `/v1/streams/${encodeURIComponent(streamId)}/frames/${chunkId}.jpg`;
}

/**
 * An alert as the API shows it: each evidence frame gains `thumbnail`, the URL of the stream's
 * stored JPEG of that frame, or null when it has none (retention removed it, the stream is gone, or
 * a live alert raced ahead of the picture's write). The persisted alert (and a webhook's body) is
 * unchanged.
 */
export function alertJson(manager: StreamManager, alert: Alert) {
  return { ...alert, evidence: alert.evidence.map((e) => ({ ...e, thumbnail: hasThumbnail(manager, alert.stream, e.chunkId) ? frameUrl(alert.stream, e.chunkId) : null })) };
}

function hasThumbnail(manager: StreamManager, streamId: string, chunkId: number): boolean {
  try {
    return manager.thumbnail(streamId, chunkId) !== null;
  } catch {
    // The stream was removed since the alert was raised.
    return false;
  }
}

/** How long a live alert waits for its frames' thumbnails (written right after the frame's encode, beside the check that raised the alert). */
const LIVE_THUMBNAIL_WAIT_MS = 1000;

/** alertJson for an alert just raised: a thumbnail still being written is waited for (at most LIVE_THUMBNAIL_WAIT_MS). */
export async function liveAlertJson(manager: StreamManager, alert: Alert) {
  const deadline = Date.now() + LIVE_THUMBNAIL_WAIT_MS;
  for (;;) {
    const json = alertJson(manager, alert);
    if (json.evidence.every((e) => e.thumbnail !== null) || Date.now() >= deadline) return json;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
