/**
 * How far a stream's ingest is behind its source: the age of the oldest frame the source delivered
 * that is not stored yet, whether it waits in the frame queue or was taken by the ingest loop and
 * waits for (or is in) the model. The queue's own lag misses that in-flight frame, which with several
 * streams sharing one model is the one waiting longest (frames go round-robin between streams). The
 * status (`ingest.lagMs`), the metrics and the health watches' `lag` condition all read this.
 */
export function ingestLagMs(queueLagMs: number, inFlightWall: number | null, now: number): number {
  return Math.max(queueLagMs, inFlightWall === null ? 0 : now - inFlightWall);
}
