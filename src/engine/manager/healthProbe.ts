/**
 * What a stream's ingest knows about its source now, for its health watches (HealthProbe): whether
 * health is judged at all (a live source the stream is meant to be ingesting), when the last frame
 * came, why frames are not coming, and the lag. Read from RAM only (source stats, the ingest, the
 * context window): it runs every health tick for every stream that has a health watch.
 */
import { redactInText } from '../../../ingest/ffmpegErrors.js';
import type { HealthProbe } from '../watches/healthMonitor.js';
import { ingestLagMs } from './ingestLag.js';
import type { ManagedStream } from './managedStream.js';
import { type PathRoots, publicMessage } from './publicMessage.js';

/** Longest `reason` in an alert (a source's error can be long). */
const MAX_REASON_CHARS = 160;

export function healthProbe(stream: ManagedStream, now: number, roots: PathRoots): HealthProbe {
  const { ingest, session, record } = stream;
  const source = ingest?.sourceStats() ?? null;
  const live = source?.live === true || record.kind === 'rtsp';
  // A caller's stop, or a finished file, is not an outage; an ingest that failed or ended on a live source is.
  const monitored = ingest !== null && session !== null && live && record.desired === 'running' && !record.completed;
  const newest = session?.memory.window.windowChunks.at(-1) ?? null;
  const held = ingest?.inFlightWall ?? null;
  return {
    monitored,
    lastFrameWall: source?.lastFrameWall ?? null,
    startedAt: ingest?.startedAt ?? now,
    delivering: source?.state === 'live',
    reason: reasonOf(stream, roots),
    lagMs: ingestLagMs(source?.lagMs ?? 0, held, now),
    lastT: session?.memory.lastFrameTime ?? null,
    latest: newest ? { chunkId: newest.chunkId, t: newest.tStart, tEnd: newest.tEnd, score: 0, change: 0 } : null,
  };
}

/** Why frames are not coming: the source's last error while it is down, else its state. */
function reasonOf(stream: ManagedStream, roots: PathRoots): string | null {
  const source = stream.ingest?.sourceStats() ?? null;
  let reason: string | null;
  if (!source) reason = stream.record.lastError?.message ?? 'the source is not open';
  else if (source.state === 'live') reason = 'no frame from the source';
  else if (source.state === 'ended') reason = `the source ended${source.endReason ? ` (${source.endReason})` : ''}`;
  else reason = source.lastError?.message ?? stream.record.lastError?.message ?? source.state;
  if (reason === null) return null;
  // The source's errors name it by its redacted display form already; a URL's user:password@ is cut again, to be sure.
  const text = redactInText(publicMessage(reason, roots)).replace(/\s+/g, ' ').trim();
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS - 1)}…` : text;
}
